"""Phone numbers are personal data: what of them may appear in logs."""

from bot.types import WHATSAPP


def mask(number: str) -> str:
    """Enough of a number to tell senders apart in a log (``+1555…4567``), not enough to text them.

    A WhatsApp address keeps its channel (``whatsapp:+1555…4567``)."""
    if number.startswith(WHATSAPP):
        return WHATSAPP + mask(number.removeprefix(WHATSAPP))
    return f"{number[:5]}…{number[-4:]}" if len(number) > 10 else "…" + number[-2:]
