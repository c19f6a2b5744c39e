"""The shipped flows answer HELP and walk STATUS through signed in-process requests."""

from tests.conftest import SignedClient


def test_help_and_status(bot: SignedClient) -> None:
    assert "STOP" in bot.replies("help")[0]
    assert bot.replies("STATUS") == ["What's your order number? (6 digits, like 123456)"]
    assert bot.replies("123456")[0].startswith("Order 123456 is shipped.")
