"""Sending messages ourselves (not as a webhook answer): notifications, broadcasts, ``send``.

Every send goes through :meth:`Outbox.send`, which checks the opt-out at the moment of sending,
records the attempt before and after the API call (so a crash in between is known to be *in
doubt*, never silently re-sent), and learns opt-outs from Twilio's error 21610.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import aiohttp
from twilio.base.exceptions import TwilioRestException

from bot import metrics
from bot.phones import InvalidNumber, normalise_and_warn, normalise_number
from bot.privacy import mask
from bot.simulated_numbers import is_simulated
from bot.store import Consent, OutboundRecords
from bot.twilio_inbound import channel_of, outgoing_messages
from bot.twilio_outbound import OutboundSettings, rest_client
from bot.types import (
    WHATSAPP,
    ConsentChange,
    ConsentMethod,
    ConsentStatus,
    Inbound,
    OutboundMessage,
    OutboundState,
    media_of,
)

log = logging.getLogger(__name__)

OPTED_OUT_AT_TWILIO = 21610
TOO_MANY_REQUESTS = 20429


class Throttled(Exception):
    """Twilio answered 20429 (too many requests): slow down and try again."""


class TwilioUnreachable(Exception):
    """The API could not be reached, or its answer was lost; the message says which number is
    affected and whether the send is in doubt."""


def _on_channel_of(to: str, from_number: str) -> str:
    """``from_number`` as a sender on ``to``'s channel ("" when it cannot be one).

    Twilio refuses a message whose From and To are on different channels (21910): a WhatsApp
    recipient is written to from the ``whatsapp:`` twin of our number, and a WhatsApp sender is
    no sender for an SMS (a notify from a WhatsApp conversation to staff's phone)."""
    if not from_number:
        return ""
    if to.startswith(WHATSAPP):
        return from_number if from_number.startswith(WHATSAPP) else WHATSAPP + from_number
    return "" if from_number.startswith(WHATSAPP) else from_number


class SendingStore(OutboundRecords, Consent, Protocol):
    """What sending needs of a store: its records, and who opted out (checked at send time)."""


class Outbox:
    def __init__(self, store: SendingStore, settings: OutboundSettings, *, status_callback: str | None = None,
                 client_factory: Callable[[], Any] | None = None) -> None:
        """``status_callback``: the URL Twilio should report delivery to (PUBLIC_URL/sms/status)."""
        self.store = store
        self.settings = settings
        self.status_callback = status_callback
        self._client_factory = client_factory or (lambda: rest_client(settings, asynchronous=True))
        self._client: Any = None

    async def send(self, message: OutboundMessage) -> OutboundMessage:
        """Send one message now (opt-out checked now), recording every step; raises Throttled."""
        self.settings.require("sending messages")
        try:  # stored and sent in E.164: "(415) 555-0123" is +14155550123 (read in settings.region)
            message.to = normalise_number(message.to, self.settings.region)
        except InvalidNumber as error:
            return await self._finish(message, OutboundState.SKIPPED, reason=f"invalid number ({error.reason})")
        if is_simulated(message.to):  # the console simulator's: no phone has it
            return await self._finish(message, OutboundState.SKIPPED, reason="a simulated number: never sent")
        if await self.store.is_opted_out(message.to):
            return await self._finish(message, OutboundState.SKIPPED, reason="opted out")
        message.state, message.updated_at = OutboundState.SENDING, time.time()
        await self.store.save_outbound(message)  # from here until the answer, the outcome is unknown
        try:
            created = await self._create(message)
        except aiohttp.ClientConnectorError as error:  # never reached Twilio: safe to send later
            message.state = OutboundState.PREPARED
            await self.store.save_outbound(message)
            metrics.send_result("unreachable")
            raise TwilioUnreachable(f"cannot reach the Twilio API at {self.settings.api_base_url}: {error}") from None
        except (aiohttp.ClientError, TimeoutError) as error:  # it may have arrived: outcome unknown
            metrics.send_result("in_doubt")
            raise TwilioUnreachable(f"the Twilio API's answer was lost ({type(error).__name__}); the message "
                                    f"to {mask(message.to)} is in doubt and will not be re-sent") from None
        except TwilioRestException as error:
            if error.code == TOO_MANY_REQUESTS or error.status == 429:
                message.state = OutboundState.PREPARED  # Twilio refused it outright: safe to try again
                await self.store.save_outbound(message)
                metrics.send_result("throttled")
                raise Throttled(str(error.msg)) from None
            if error.code == OPTED_OUT_AT_TWILIO:
                # No MessageSid: Twilio created no message. Our record's id says which send it was.
                await _opted_out_at_twilio(self.store, message.to, f"{error.code}: {error.msg} (sending "
                                                                   f"{message.id})", "")
            return await self._finish(message, OutboundState.FAILED, reason=f"{error.code}: {error.msg}",
                                      error_code=str(error.code) if error.code else None)
        message.sid = created.sid
        message.from_number = created.from_ or message.from_number
        await self._finish(message, OutboundState.ACCEPTED)
        # A delivery report may have overtaken Twilio's answer to us. Checked after our record is
        # written (as record_delivery checks after writing its report), so neither side misses it.
        early = await self.store.outbound(_early_report_id(created.sid))
        if early is not None and early.status:
            message.status, message.error_code = early.status, early.error_code or message.error_code
            await self.store.save_outbound(message)
        return message

    async def _create(self, message: OutboundMessage) -> Any:
        if self._client is None:
            self._client = self._client_factory()
        options: dict[str, Any] = {"to": message.to}
        if message.body or not message.media:  # a picture may go without text
            options["body"] = message.body
        if message.media:
            options["media_url"] = list(message.media)  # MediaUrl, once per picture
        from_number = _on_channel_of(message.to, message.from_number)
        if from_number:
            options["from_"] = from_number
        elif self.settings.messaging_service_sid:
            options["messaging_service_sid"] = self.settings.messaging_service_sid
        else:
            options["from_"] = _on_channel_of(message.to, self.settings.from_number)
        if self.status_callback:
            options["status_callback"] = self.status_callback
        return await self._client.messages.create_async(**options)

    async def _finish(self, message: OutboundMessage, state: OutboundState, *, reason: str = "",
                      error_code: str | None = None) -> OutboundMessage:
        message.state, message.reason, message.updated_at = state, reason, time.time()
        if error_code:
            message.error_code = error_code
        await self.store.save_outbound(message)
        metrics.send_result(state.value)
        return message

    async def close(self) -> None:
        if self._client is not None:
            await self._client.http_client.close()
            self._client = None


async def record_delivery(store: SendingStore, sid: str, status: str, error_code: str | None, to: str) -> None:
    """A delivery report (status callback): remember it, and learn an opt-out (21610), even for a
    message we never sent ourselves."""
    if error_code == str(OPTED_OUT_AT_TWILIO):
        try:
            opted_out = normalise_number(to, None)  # Twilio reports numbers in E.164
        except InvalidNumber:
            opted_out = ""
        if opted_out:
            await _opted_out_at_twilio(store, opted_out, f"{error_code} in a status callback ({status})", sid)
    message = await store.outbound_by_sid(sid)
    if message is None:
        # Not (yet) ours: Twilio may report before its answer to our create call has reached us.
        # Keep the report where Outbox.send looks once it has recorded the sid, then look again.
        await store.save_outbound(OutboundMessage(_early_report_id(sid), to, "", state=OutboundState.REPORT,
                                                  status=status, error_code=error_code))
        message = await store.outbound_by_sid(sid)
        if message is None:
            return
    message.status, message.updated_at = status, time.time()
    if error_code:
        message.error_code = error_code
    await store.save_outbound(message)


async def _opted_out_at_twilio(store: SendingStore, number: str, detail: str, message_sid: str) -> None:
    """Twilio refused a send with 21610: the number is opted out there, so here too (and the
    consent ledger says how we learnt it)."""
    change = ConsentChange(number, ConsentStatus.OPTED_OUT, ConsentMethod.DELIVERY_ERROR, detail, message_sid)
    if await store.set_consent(change):
        metrics.consent_changed(True, ConsentMethod.DELIVERY_ERROR)
        log.info("%s is opted out at Twilio (21610): recorded", mask(number))


def _early_report_id(sid: str) -> str:
    return f"report|{sid}"


async def retrying(send: Callable[[], Awaitable[OutboundMessage]], sleep: Callable[[float], Awaitable[None]],
                   attempts: int = 6, first_wait: float = 1.0) -> OutboundMessage:
    """Call ``send`` again after 20429 (too many requests), waiting longer each time."""
    wait = first_wait
    for attempt in range(attempts):
        try:
            return await send()
        except Throttled:
            if attempt == attempts - 1:
                raise
            log.warning("Twilio says too many requests (20429); waiting %.1fs", wait)
            await sleep(wait)
            wait *= 2
    raise AssertionError("unreachable")


async def send_for_turn(outbox: Outbox, inbound: Inbound, kind: str, messages: list[tuple[str, str]]) -> bool:
    """Messages a turn sends after it was saved (its ``notify`` texts, or its answer sent later),
    from the number the person texted; each has a stable id, so a resend is recognised: one whose
    record says it was handed to Twilio (or refused, skipped, in doubt) is never sent again. False
    when some could not be handed to Twilio (unreachable, throttled): sending again sends those only.

    Each recipient's texts are split and capped as a webhook answer would be (``outgoing_messages``):
    one turn never costs one number more than the channel's budget. A text with pictures (a
    ``MediaText``: a ``notify`` or a reply with ``media:``) goes with them, as TwiML would send it.

    Nothing is sent for a simulated sender's turn (``bot/simulated_numbers.py``): the console shows
    its answers from the transcript, and its notifications never page staff."""
    if is_simulated(inbound.sender):
        log.info("%s of simulated sender %s: %d message(s) not sent", kind, mask(inbound.sender), len(messages))
        return True
    by_recipient: dict[str, list[str]] = {}
    for to, text in messages:
        # "+1 415 555 0123" and "(415) 555-0123" are one recipient. A notify target is written by staff:
        # warned about when no one has that number. An impossible one is kept as it is, for Outbox.send
        # to record as skipped, with the reason.
        try:
            to = normalise_and_warn(to, outbox.settings.region, what=f"{kind} recipient") \
                if kind == "notify" else normalise_number(to, outbox.settings.region)
        except InvalidNumber as error:
            log.error("%s recipient %s is not a phone number: %s", kind, mask(to), error.reason)
        by_recipient.setdefault(to, []).append(text)
    pieces = [(to, piece) for to, texts in by_recipient.items() for piece in outgoing_messages(texts, channel_of(to))]
    settled = True
    for index, (to, text) in enumerate(pieces):
        message = OutboundMessage(f"{kind}|{inbound.message_sid}|{index}", to, str(text), from_number=inbound.to,
                                  media=media_of(text))
        try:
            if await _handled_before(outbox, message.id):
                continue
            await retrying(lambda message=message: outbox.send(message), asyncio.sleep)  # type: ignore[misc]
        except Exception:
            log.exception("could not send a %s message to %s", kind, mask(to))
            settled = settled and await _handled_before(outbox, message.id, default=False)
    return settled


async def _handled_before(outbox: Outbox, message_id: str, *, default: bool = False) -> bool:
    """Whether the message with this id was handed to Twilio already, or settled otherwise (refused,
    skipped, in doubt): anything but never-tried or ``prepared``. ``default`` when the store cannot say."""
    try:
        record = await outbox.store.outbound(message_id)
    except Exception:  # noqa: BLE001 - the store is down: the caller decides what not knowing means
        return default
    return record is not None and record.state is not OutboundState.PREPARED
