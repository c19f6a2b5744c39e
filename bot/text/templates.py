"""Message templates: Liquid, as in Twilio Studio, parsed once at load and rendered per turn.

Liquid is made for untrusted templates (no code execution), and what people text is only
ever passed in as a value, never parsed as a template.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from liquid import BoundTemplate, Environment
from liquid.exceptions import LiquidError

_ENVIRONMENT = Environment(autoescape=False)

#: Words that mark an environment variable as secret ("STRIPE_API_KEY", "DB_PASSWORD"); templates
#: never see such variables, nor any TWILIO_ setting. Matched as whole words of the name, so
#: MONKEY_NAME stays readable.
_SECRET_WORDS = frozenset({"TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASS", "KEY", "APIKEY", "AUTH",
                           "CREDENTIAL", "CREDENTIALS", "PRIVATE", "SIGNATURE", "SID", "DSN"})
_SECRET_PARTS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "APIKEY")  # also inside words
_SECRET_NAMES = frozenset({"STORE_URL", "DATABASE_URL", "REDIS_URL"})  # URLs that carry passwords
_NAME_WORDS = re.compile(r"[A-Za-z0-9]+")


class TemplateSyntaxError(ValueError):
    """A template that does not parse; the message says where inside the template."""


def parse(source: str) -> BoundTemplate:
    try:
        return _ENVIRONMENT.from_string(source)
    except LiquidError as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TemplateSyntaxError(f"template error in {source!r}: {first_line}") from None


def variables(template: BoundTemplate) -> set[str]:
    """The root names a template reads (``order`` for ``{{ order.status }}``)."""
    return set(template.variables())


def public_environment() -> dict[str, str]:
    """The environment variables templates may read as ``{{ env.NAME }}``: none that look secret."""
    return {name: value for name, value in os.environ.items() if not looks_secret(name)}


def looks_secret(name: str) -> bool:
    upper = name.upper()
    if upper.startswith("TWILIO_") or upper in _SECRET_NAMES:
        return True
    return any(word in _SECRET_WORDS or any(part in word for part in _SECRET_PARTS)
               for word in _NAME_WORDS.findall(upper))


def render(template: BoundTemplate, context: Mapping[str, Any]) -> str:
    return template.render(**context)


def render_url(template: BoundTemplate, user_values: Mapping[str, Any], trusted: Mapping[str, Any]) -> str:
    """Render a URL template with every value people typed percent-encoded.

    A reply such as ``../admin?x=1`` then stays one path segment instead of steering the request.
    Trusted values (``env``, the bot's own base URL) are inserted as written.
    """
    encoded = {name: _encode(value) for name, value in user_values.items()}
    return template.render(**{**encoded, **trusted})


def _encode(value: Any) -> Any:
    if isinstance(value, str):
        return quote(value, safe="")
    if isinstance(value, Mapping):
        return {key: _encode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    return value
