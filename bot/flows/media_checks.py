"""What a text sent with pictures costs, for lint.

A text that goes with pictures is one MMS: Twilio bills it as one message whatever its length or
encoding, up to its 1,600 characters per message (beyond them the rest goes as SMS). So the SMS
segment and UCS-2 warnings (``checks._cost_findings``) do not apply to it; only its length does.
Which text carries a state's pictures is the engine's rule: the last message of its ``say`` (menu
included); a ``notify``'s texts are one message, so all of them.
"""

from __future__ import annotations

from collections.abc import Iterator

from bot.flows.problems import Finding, Path
from bot.flows.schema import Flow
from bot.flows.template_checks import measured_text

MAX_MMS_CHARS = 1600  # Twilio's limit on one message's Body, an MMS's too


def mms_paths(flow: Flow) -> set[Path]:
    """Where in the flow file the texts are that go out with pictures."""
    paths: set[Path] = set()
    for name, state in flow.states.items():
        if state.media and state.say:
            paths.add(("states", name, "say", len(state.say) - 1))
        if state.notify is not None and state.notify.media:
            paths.update(("states", name, "notify", "say", index) for index in range(len(state.notify.say)))
    return paths


def mms_cost_findings(path: Path, source: str, assumed_variable_length: int) -> Iterator[Finding]:
    """A text sent with pictures that may not fit one MMS (1,600 characters)."""
    measured = measured_text(source, "x" * assumed_variable_length)
    if len(measured) <= MAX_MMS_CHARS:
        return
    assumption = f" (each {{{{ variable }}}} counted as {assumed_variable_length})" if measured != source else ""
    yield Finding(path, f"this text goes with pictures as one MMS of at most {MAX_MMS_CHARS:,} characters, but it "
                        f"has {len(measured):,}{assumption}: the rest goes as separate SMS",
                  severity="warning", hint="shorten it, or say the rest in the next state")
