"""Pictures (MMS) on Twilio's wire: which media URLs Twilio can fetch, how many one message may
carry on each channel, and how a reply's pictures are spread over the messages it goes out as.

Twilio fetches each picture from its URL when it sends the message, and refuses the whole message
(error 21620) for one URL it cannot use, or more than 10 (21623). A URL a template rendered may be
anything (a saved reply, an empty value), so what is not an ``http(s)://`` address is dropped here,
with a log line that never shows it: a picture's URL identifies a person's picture, and a
non-URL may be what they typed. WhatsApp takes one picture per message and ignores the others, so
there each further picture goes as a message of its own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from urllib.parse import urlsplit

from bot.types import MediaText

log = logging.getLogger(__name__)

MAX_MEDIA = 10  # Twilio's limit per message (error 21623 beyond it), MMS and the REST API alike
MAX_WHATSAPP_MEDIA = 1  # WhatsApp delivers one attachment per message; Twilio ignores the others
MAX_MEDIA_URL_CHARS = 2048  # far beyond any real picture's address (Twilio's own are ~150)
#: What no URL holds: spaces, control characters, and what XML cannot carry (TwiML would drop it).
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def is_media_url(url: str) -> bool:
    """Whether Twilio can fetch a picture from ``url``: an absolute ``http``/``https`` address with
    a host, no spaces or control characters, of a sane length."""
    if not url or len(url) > MAX_MEDIA_URL_CHARS or _SPACE_OR_CONTROL.search(url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError:  # "https://[::1" and the like
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def sendable(urls: Iterable[str]) -> tuple[str, ...]:
    """The URLs Twilio can use, at most :data:`MAX_MEDIA`; the others are dropped and counted in the
    log (never shown: see the module doc)."""
    urls = tuple(urls)
    kept = tuple(url for url in urls if is_media_url(url))
    if len(kept) < len(urls):
        log.warning("dropped %d picture(s) whose media URL is not an http(s) address (a template rendered "
                    "something else); the text was sent without them", len(urls) - len(kept))
    if len(kept) > MAX_MEDIA:
        log.warning("a message may carry at most %d pictures; %d more were dropped", MAX_MEDIA,
                    len(kept) - MAX_MEDIA)
    return kept[:MAX_MEDIA]


def attach(pieces: Sequence[str], media: Sequence[str], per_message: int) -> list[str]:
    """A reply's messages with its pictures: they go with the first piece (the reply's opening, or
    a picture-only message when the reply has no text), ``per_message`` at a time; the pictures
    that do not fit follow it as picture-only messages, before the rest of a long text."""
    if not media:
        return list(pieces)
    groups = [tuple(media[start:start + per_message]) for start in range(0, len(media), per_message)]
    first = MediaText(pieces[0] if pieces else "", groups[0])
    return [first, *(MediaText("", group) for group in groups[1:]), *pieces[1:]]
