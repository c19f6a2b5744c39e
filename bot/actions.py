"""What a state does besides talking: look something up over HTTP (``fetch``).

Kept behind a small protocol so the engine stays free of HTTP, and tests and the simulator
can hand it any fetcher.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol

import httpx

log = logging.getLogger(__name__)

MAX_FETCH_BYTES = 256 * 1024


class FetchFailed(Exception):
    """The lookup did not give usable JSON in time; the message says why (for the log)."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.status = status  # the HTTP status when the service answered with an error

    @property
    def not_found(self) -> bool:
        return self.status == 404


class Fetcher(Protocol):
    async def get_json(self, url: str, timeout: float, *, method: str = "GET", params: dict[str, str] | None = None,
                       json_body: str | None = None, form: dict[str, str] | None = None) -> Any:
        """GET ``url`` (or, with ``method``/``params``/``json_body``/``form``, that request);
        the parsed JSON answer, or FetchFailed."""


class HttpFetcher:
    """GET a URL and parse its JSON, within a deadline.

    A URL starting with ``/`` means this bot itself (``local_base_url``), so the shipped demo
    flows work out of the box without knowing the port they run on.
    """

    def __init__(self, client: httpx.AsyncClient, local_base_url: str) -> None:
        self._client = client
        self._local_base_url = local_base_url.rstrip("/")

    def resolve(self, url: str) -> str:
        return self._local_base_url + url if url.startswith("/") else url

    async def get_json(self, url: str, timeout: float, *, method: str = "GET", params: dict[str, str] | None = None,
                       json_body: str | None = None, form: dict[str, str] | None = None) -> Any:
        target = self.resolve(url)
        headers = {"Accept": "application/json"}
        content: bytes | None = None
        if json_body is not None:
            content, headers["Content-Type"] = json_body.encode("utf-8"), "application/json"
        try:
            async with asyncio.timeout(timeout):  # a total deadline; httpx's timeout is per phase
                response = await self._client.request(method, target, timeout=timeout, headers=headers,
                                                      params=params or None, content=content, data=form)
        except (httpx.TimeoutException, TimeoutError):
            raise FetchFailed(f"no answer within {timeout:g}s") from None
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            raise FetchFailed(f"request to {target} failed: {type(error).__name__}: {error}") from None
        if not response.is_success:
            raise FetchFailed(f"HTTP {response.status_code}", status=response.status_code)
        if len(response.content) > MAX_FETCH_BYTES:
            raise FetchFailed(f"answer larger than {MAX_FETCH_BYTES} bytes")
        if method != "GET" and not response.content.strip():
            return {}  # a POST answered with no body (204): a success with nothing to read
        try:
            return json.loads(response.content)
        except ValueError:
            raise FetchFailed("answer is not JSON") from None
