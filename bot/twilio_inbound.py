"""Twilio's side of the wire: webhook signatures, the form Twilio posts, TwiML answers, and what one
turn may send on each channel (SMS, or WhatsApp through Twilio)."""

from __future__ import annotations

import base64
import hmac
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes, urlparse

from twilio.request_validator import add_port, remove_port

from bot import segments, twilio_media
from bot.segments import MAX_TURN_SEGMENTS  # what one SMS turn may cost at most, however long the texts render
from bot.twilio_media import MAX_MEDIA, MAX_WHATSAPP_MEDIA  # pictures per message: Twilio's 10, WhatsApp's 1
from bot.types import WHATSAPP, Inbound, MediaText, media_of

MAX_MESSAGE_CHARS = 1600  # Twilio refuses longer message bodies (error 21617), on WhatsApp too
MAX_WHATSAPP_CHARS = 4096  # what a WhatsApp message may hold, so what a WhatsApp user can send us
MAX_FIELD_CHARS = 64  # SIDs and phone numbers are far shorter
#: The only values Twilio's Advanced Opt-Out puts in ``OptOutType``.
OPT_OUT_TYPES = frozenset({"STOP", "START", "HELP"})
CUT_MARK = "..."  # ends a reply cut at the turn's budget (GSM-7, so the cut never switches to UCS-2)

# Characters XML 1.0 cannot carry at all, not even escaped.
_XML_FORBIDDEN = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SPLIT_AT = re.compile(r"\s")


class BadRequest(ValueError):
    """A webhook that is not a usable Twilio message; the text is safe to send back."""


class SignatureChecker:
    """Checks ``X-Twilio-Signature`` against the URL Twilio called.

    Twilio's rule (as ``RequestValidator.compute_signature`` implements it): HMAC-SHA1 with the
    auth token over the URL followed by every field name and value, names sorted, a repeated
    field's distinct values sorted, base64-encoded. Computed here directly because the SDK's
    version costs several times more per request; tests/test_twilio_inbound.py proves by property
    test that both give the same signature for any form. Like ``RequestValidator.validate``, the
    URL is accepted with and without its default port, but the second HMAC is only computed
    when the first does not match.
    """

    def __init__(self, auth_token: str) -> None:
        self._key = auth_token.encode("utf-8")

    def valid(self, url: str, params: Mapping[str, str | Sequence[str]], signature: str | None) -> bool:
        if not signature or not signature.isascii():
            return False  # base64 is ASCII; compare_digest refuses anything else
        if hmac.compare_digest(self.sign(url, params), signature):
            return True
        try:
            parsed = urlparse(url)
            other = remove_port(parsed) if parsed.port else add_port(parsed)
        except ValueError:  # a Host header such as "host:abc" or "[::1": not a URL Twilio signed
            return False
        return other != url and hmac.compare_digest(self.sign(other, params), signature)

    def sign(self, url: str, params: Mapping[str, str | Sequence[str]]) -> str:
        """The signature Twilio sends for this URL and form."""
        parts = [url]
        for name in sorted(params):
            value = params[name]
            if isinstance(value, str):
                parts += (name, value)
            else:
                for item in sorted(set(value)):
                    parts += (name, item)
        digest = hmac.digest(self._key, "".join(parts).encode("utf-8"), "sha1")  # one-shot: no HMAC object
        return base64.b64encode(digest).decode("ascii")


def parse_form(raw: bytes, max_fields: int = 200) -> list[tuple[str, str]]:
    """Decode an ``application/x-www-form-urlencoded`` body, strictly.

    Same result as ``urllib.parse.parse_qsl(..., keep_blank_values=True, strict_parsing=True,
    errors="strict")`` (property-tested), at a third of its cost: values without ``%`` or ``+``
    (most of Twilio's) are taken as they are. Raises BadRequest for non-ASCII bytes, a field
    without ``=``, invalid UTF-8 behind ``%`` escapes, or too many fields.
    """
    if not raw:
        return []
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequest("malformed form body") from None
    fields = text.split("&")
    if len(fields) > max_fields:
        raise BadRequest("malformed form body")
    pairs = []
    try:
        for field in fields:
            name, equals, value = field.partition("=")
            if not equals:
                raise BadRequest("malformed form body")
            # _unquote's test, written out: twenty fields' names and values are forty calls saved
            if "%" in name or "+" in name:
                name = _unquote(name)
            if "%" in value or "+" in value:
                value = _unquote(value)
            pairs.append((name, value))
    except UnicodeDecodeError:
        raise BadRequest("malformed form body") from None
    return pairs


def _unquote(text: str) -> str:
    if "%" not in text and "+" not in text:
        return text
    return unquote_to_bytes(text.replace("+", " ")).decode("utf-8")


def parse_inbound(form: Mapping[str, str]) -> Inbound:
    """Read the fields the bot uses from Twilio's form, or raise BadRequest saying what is wrong."""
    message_sid = form.get("MessageSid") or form.get("SmsMessageSid") or form.get("SmsSid") or ""
    sender = form.get("From", "")
    if not message_sid:
        raise BadRequest("missing MessageSid")
    if not sender:
        raise BadRequest("missing From")
    for name, value in (("MessageSid", message_sid), ("From", sender), ("To", form.get("To", ""))):
        if len(value) > MAX_FIELD_CHARS or not value.isprintable():
            raise BadRequest(f"{name} is not a valid value")
    body = xml_safe(form.get("Body", ""))
    limit = channel_of(sender).max_inbound_chars
    if len(body) > limit:
        raise BadRequest(f"Body longer than {limit} characters")
    return Inbound(
        message_sid=message_sid,
        sender=sender,
        to=form.get("To", ""),
        body=body,
        media=_media_urls(form),
        opt_out_type=_opt_out_type(form.get("OptOutType", "")),
    )


def _opt_out_type(value: str) -> str | None:
    """Twilio's ``OptOutType`` (STOP, START or HELP), or None for anything else.

    An unknown value is treated as absent rather than refused: the message is still a message, and
    a 400 would only make Twilio retry it. It is never kept, so it never reaches the trace or the
    log (a newline in it once forged a log line).
    """
    kind = value.upper()
    return kind if kind in OPT_OUT_TYPES else None


def _media_urls(form: Mapping[str, str]) -> tuple[str, ...]:
    """The pictures of an MMS (``NumMedia``, then ``MediaUrl0``…): Twilio sends at most 10, each an
    https:// address of its own. Anything else is a 400 naming the field, never a 500."""
    try:
        count = int(form.get("NumMedia") or 0)
    except ValueError:
        raise BadRequest("NumMedia is not a number") from None
    if not 0 <= count <= MAX_MEDIA:
        raise BadRequest(f"NumMedia must be between 0 and {MAX_MEDIA}")
    urls = []
    for index in range(count):
        url = form.get(f"MediaUrl{index}")
        if not url:
            continue
        if not twilio_media.is_media_url(url):
            raise BadRequest(f"MediaUrl{index} is not a web address")  # the value is never echoed: it may be anything
        urls.append(url)
    return tuple(urls)


def xml_safe(text: str) -> str:
    """Drop the control characters XML cannot carry (a NUL in a text would break the TwiML)."""
    return _XML_FORBIDDEN.sub("", text)


def split_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> list[str]:
    """Cut a reply into pieces Twilio accepts, at whitespace when there is any near the limit."""
    pieces = []
    while len(text) > limit:
        cut = limit
        for found in _SPLIT_AT.finditer(text, limit // 2, limit + 1):
            cut = found.start()
        head, text = text[:cut].rstrip(), text[cut:].lstrip()
        if head:  # a cut inside leading whitespace leaves nothing worth a message
            pieces.append(head)
    if text:
        pieces.append(text)
    return pieces


@dataclass(frozen=True, slots=True)
class Channel:
    """What Twilio and the network behind it accept on one channel, and what one turn may cost there."""

    name: str
    max_inbound_chars: int  # the longest Body a person can send us
    max_message_chars: int  # the longest Body Twilio takes from us (longer replies are split)
    turn_budget: int  # what all of one turn's messages may cost together, in ``cost`` units
    cost: Callable[[str], int]  # SMS: segments (what the carrier bills); WhatsApp: characters
    media_cost: Callable[[str], int]  # the same for a message with pictures (SMS: one MMS, whatever its text)
    max_media: int  # pictures one message may carry (more go as messages of their own)


def _sms_segments(text: str) -> int:
    return segments.cost(text).segments


def _mms(text: str) -> int:
    """A text with pictures goes as one MMS (billed as one message, not per segment) up to
    Twilio's 1,600 characters; counted as two beyond, so that a cut can search for what fits."""
    return 1 if len(text) <= MAX_MESSAGE_CHARS else 2


SMS = Channel("sms", MAX_MESSAGE_CHARS, MAX_MESSAGE_CHARS, MAX_TURN_SEGMENTS, _sms_segments, _mms, MAX_MEDIA)
# WhatsApp has no segments: a turn may say one full WhatsApp message's worth, in 1,600-character Bodies.
WHATSAPP_CHANNEL = Channel("whatsapp", MAX_WHATSAPP_CHARS, MAX_MESSAGE_CHARS, MAX_WHATSAPP_CHARS, len, len,
                           MAX_WHATSAPP_MEDIA)


def channel_of(address: str) -> Channel:
    """The channel of a Twilio address: ``whatsapp:+15551234567`` is WhatsApp, anything else SMS."""
    return WHATSAPP_CHANNEL if address.startswith(WHATSAPP) else SMS


def outgoing_messages(replies: Iterable[str], channel: Channel = SMS) -> list[str]:
    """The messages one turn's replies go out as, in TwiML and through the REST API alike.

    Each reply is made XML-safe and split at the channel's Body limit; its pictures (a
    :class:`~bot.types.MediaText`'s URLs that Twilio can fetch) go with its first piece, as a
    :class:`~bot.types.MediaText` (on WhatsApp one picture per message, the others following as
    picture-only messages). Then the turn is capped at the channel's budget (10 SMS segments, a
    message with pictures counting as one MMS; 4,096 WhatsApp characters), because a template that
    renders a long lookup answer or an echoed text would otherwise become any number of billed
    messages. The message that crosses the budget is cut, at whitespace when there is some, and
    ends with ``...``; the ones after it are dropped.
    """
    pieces = [piece for reply in replies for piece in _pieces(reply, channel)]
    if _surely_within(pieces, channel):
        return pieces  # the common case: a few short replies, no need to count segments exactly
    sent: list[str] = []
    left = channel.turn_budget
    for piece in pieces:
        cost = _cost(piece, channel)
        if cost <= left:
            sent.append(piece)
            left -= cost
            continue
        cut = _cut_to(piece, left, channel)
        if cut:
            sent.append(cut)
        while not cut and sent:  # no room left even for the mark: the last message sent carries it instead
            last = sent.pop()
            cut = _cut_to(last, _cost(last, channel), channel)  # ("" for whitespace alone: the one before does)
            if cut:
                sent.append(cut)
        break
    return sent


def _pieces(reply: str, channel: Channel) -> list[str]:
    """One reply's messages before the turn's cap: its text split, its pictures attached."""
    pieces = split_message(xml_safe(reply), channel.max_message_chars)
    media = media_of(reply)
    return twilio_media.attach(pieces, twilio_media.sendable(media), channel.max_media) if media else pieces


def _cost(piece: str, channel: Channel) -> int:
    return channel.media_cost(piece) if media_of(piece) else channel.cost(piece)


def _surely_within(pieces: list[str], channel: Channel) -> bool:
    """Whether the pieces fit the budget by an upper bound that needs no exact count: a text of n
    characters is at most 2n UTF-16 units (or GSM-7 septets), so at most 1 segment up to 35
    characters and ceil(2n / 67) beyond."""
    if channel.cost is len:
        return sum(map(len, pieces)) <= channel.turn_budget
    bound = sum(1 if len(piece) <= 35 or media_of(piece) else -(-2 * len(piece) // 67) for piece in pieces)
    return bound <= channel.turn_budget


def _cut_to(text: str, budget: int, channel: Channel) -> str:
    """The longest start of ``text`` that, with the cut mark, costs at most ``budget`` (cut at the
    last whitespace in its second half, if any), keeping its pictures; empty when not even the mark fits."""
    media = media_of(text)
    measure = channel.media_cost if media else channel.cost
    if budget <= 0 or measure(CUT_MARK) > budget:
        return ""
    low, high = 0, len(text)  # the cost only grows with the length: search the longest fitting start
    while low < high:
        middle = (low + high + 1) // 2
        if measure(text[:middle].rstrip() + CUT_MARK) <= budget:
            low = middle
        else:
            high = middle - 1
    head = text[:low]
    space = max(head.rfind(" "), head.rfind("\n"))
    if space >= low // 2:
        head = head[:space]
    head = head.rstrip()
    if media:  # the pictures stay, under whatever of the text fits
        return MediaText(head + CUT_MARK, media)
    return head + CUT_MARK if head else ""


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _message_with_media(text: str, media: Sequence[str]) -> str:
    body = f"<Body>{_escape(text)}</Body>" if text else ""
    return f"<Message>{body}{''.join(f'<Media>{_escape(xml_safe(url))}</Media>' for url in media)}</Message>"


EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response />'


def render_twiml(replies: Iterable[str]) -> str:
    """TwiML with one ``<Message>`` per non-empty reply (long replies split): byte-for-byte what
    ``MessagingResponse`` produces for the same messages, in a fraction of its time (see
    tests/test_twilio_inbound.py and tests/test_media.py). Empty replies are dropped rather than
    sent as empty SMS. A reply with pictures (a :class:`~bot.types.MediaText`) is written with
    Twilio's nouns, ``<Message><Body>text</Body><Media>url</Media>…</Message>``, its pictures (at
    most 10) with its first piece; it may have no text. Which URLs are sent, and how many per
    message on WhatsApp, is ``outgoing_messages``'s to decide."""
    messages = []
    for reply in replies:
        pieces = split_message(xml_safe(reply))
        media = media_of(reply)[:MAX_MEDIA]
        if media:
            messages.append(_message_with_media(pieces[0] if pieces else "", media))
            pieces = pieces[1:]
        messages.extend(f"<Message>{_escape(piece)}</Message>" for piece in pieces)
    if not messages:
        return EMPTY_TWIML
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{"".join(messages)}</Response>'
