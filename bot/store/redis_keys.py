"""The Redis store's key names: one place, so tests and operators can find data (``textflow:conv:+1555…``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeyBuilder:
    """Predictable, namespaced key names (one place, so tests and operators can find data)."""

    prefix: str = "textflow"

    def conversation(self, sender: str) -> str:
        return f"{self.prefix}:conv:{sender}"

    def message(self, message_sid: str) -> str:
        """Marks a MessageSid as processed (kept >= 48 h for de-duplication)."""
        return f"{self.prefix}:sid:{message_sid}"

    def reply(self, message_sid: str) -> str:
        """What we answered to it (personal data: kept for the retention period)."""
        return f"{self.prefix}:reply:{message_sid}"

    def sender_messages(self, sender: str) -> str:
        return f"{self.prefix}:sids:{sender}"

    def opt_out(self, sender: str) -> str:
        return f"{self.prefix}:optout:{sender}"

    def transcript(self, sender: str) -> str:
        return f"{self.prefix}:log:{sender}"

    def lock(self, sender: str) -> str:
        return f"{self.prefix}:lock:{sender}"

    def outbound(self, message_id: str) -> str:
        return f"{self.prefix}:out:{message_id}"

    def outbound_sid(self, sid: str) -> str:
        return f"{self.prefix}:outsid:{sid}"

    def broadcast(self, name: str) -> str:
        return f"{self.prefix}:broadcast:{name}"

    def deadlines(self) -> str:
        return f"{self.prefix}:deadlines"

    def consent_history(self, number: str) -> str:
        """A number's consent ledger entries, by time (append-only; no TTL)."""
        return f"{self.prefix}:consent:{number}"

    def consent_ledger(self) -> str:
        """Every number's consent ledger entries, by time: the export, and the retention sweep."""
        return f"{self.prefix}:consents"

    def consent_sequence(self) -> str:
        return f"{self.prefix}:consents:seq"

    def opt_outs(self) -> str:
        """Who is opted out now, by when (the console's list; kept with the opt-out keys, no TTL)."""
        return f"{self.prefix}:optouts"

    def at_state(self, flow: str, state: str) -> str:
        """Who is at a flow's state: senders scored by when they last wrote (the console's counts)."""
        return f"{self.prefix}:at:{flow}:{state}"

    def states_of(self, flow: str) -> str:
        """The states of a flow anyone was ever counted at, so counting needs no SCAN."""
        return f"{self.prefix}:states:{flow}"

    def counted_flows(self) -> str:
        """The flows anyone was ever counted in: what the sweep trims."""
        return f"{self.prefix}:flows"

    def health(self) -> str:
        """Written by each health check (expires in a minute): proof that a write goes through."""
        return f"{self.prefix}:health"

    def process_statuses(self) -> str:
        """Each server process's status (``host:pid`` → JSON): ``python -m bot status``."""
        return f"{self.prefix}:processes"

    def process_written(self) -> str:
        """When each process last wrote its status, by time: the old entries leave by it."""
        return f"{self.prefix}:processes:written"

    def broadcast_progress(self) -> str:
        """Where each broadcast stands (its name → JSON): the console's Operations page, ``/metrics``."""
        return f"{self.prefix}:broadcasts"

    def broadcast_written(self) -> str:
        """When each broadcast's entry was last written, by time: read by it, and the old ones leave by it."""
        return f"{self.prefix}:broadcasts:written"
