"""The outbound side of Twilio: a REST client from the real SDK, pointed where the settings say.

``TWILIO_API_BASE_URL`` (default Twilio's own) is applied through the SDK's extension point, a
custom ``HttpClient``, so tests and demos can aim the unmodified SDK at a fake API on loopback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import aiohttp
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

TWILIO_API = "https://api.twilio.com"


class OutboundNotConfigured(RuntimeError):
    """An outbound feature was used without the settings it needs; the message names them."""


# api.twilio.com, and the regional/edge hosts the SDK builds from TWILIO_REGION / TWILIO_EDGE
_TWILIO_API_HOST = re.compile(r"^https://api(?:\.[a-z0-9-]+)*\.twilio\.com(?=/|$)")
DEFAULT_TIMEOUT = 15.0


def _rebase(url: str, base_url: str) -> str:
    if base_url and base_url != TWILIO_API:
        return _TWILIO_API_HOST.sub(base_url.rstrip("/"), url, count=1)
    return url


class RebasingHttpClient(TwilioHttpClient):
    """The SDK's blocking HTTP client, sending to ``base_url`` instead of api.twilio.com."""

    def __init__(self, base_url: str = TWILIO_API, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        return super().request(method, _rebase(url, self.base_url), *args, **kwargs)


class AsyncRebasingHttpClient(AsyncTwilioHttpClient):
    """The SDK's asyncio HTTP client (used inside the server), sending to ``base_url``."""

    def __init__(self, base_url: str = TWILIO_API, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url

    async def request(self, method: str, url: str, params: dict[str, object] | None = None,
                      data: dict[str, object] | None = None, headers: dict[str, str] | None = None,
                      auth: tuple[str, str] | None = None, timeout: float | None = None,
                      allow_redirects: bool = False) -> Response:
        # aiohttp deprecates the BasicAuth object the SDK passes; send the same header ourselves.
        if auth is not None:
            headers = {**(headers or {}), "Authorization": aiohttp.encode_basic_auth(*auth)}
        return await super().request(method, _rebase(url, self.base_url), params, data, headers, None,
                                     timeout or DEFAULT_TIMEOUT, allow_redirects)


@dataclass(frozen=True)
class OutboundSettings:
    account_sid: str = ""
    auth_token: str = ""
    from_number: str = ""  # TWILIO_FROM
    messaging_service_sid: str = ""  # TWILIO_MESSAGING_SERVICE_SID (instead of a From number)
    api_base_url: str = TWILIO_API
    region: str = "US"  # DEFAULT_REGION: how a number without its country code is read

    def missing(self) -> list[str]:
        """The settings outbound messages still need (empty when ready)."""
        missing = [name for name, value in (("TWILIO_ACCOUNT_SID", self.account_sid),
                                            ("TWILIO_AUTH_TOKEN", self.auth_token)) if not value]
        if not (self.from_number or self.messaging_service_sid):
            missing.append("TWILIO_FROM or TWILIO_MESSAGING_SERVICE_SID")
        return missing

    def require(self, feature: str) -> None:
        missing = self.missing()
        if missing:
            raise OutboundNotConfigured(f"{feature} needs {', '.join(missing)} (set in the environment or .env)")


def rest_client(settings: OutboundSettings, *, asynchronous: bool = False) -> Client:
    http_client: TwilioHttpClient | AsyncTwilioHttpClient
    if asynchronous:
        http_client = AsyncRebasingHttpClient(settings.api_base_url)
    else:
        http_client = RebasingHttpClient(settings.api_base_url, timeout=DEFAULT_TIMEOUT)
    return Client(settings.account_sid, settings.auth_token, settings.account_sid, http_client=http_client)
