"""What a state does besides talking: look something up over HTTP (``fetch``).

Kept behind a small protocol so the engine stays free of HTTP, and tests and the simulator
can hand it any fetcher.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import httpx

log = logging.getLogger(__name__)

MAX_FETCH_BYTES = 256 * 1024
#: Deeper answers fail the lookup: no template reads 64 levels down, and json.loads on a 256 KB
#: answer of nested brackets would otherwise end in a RecursionError in the middle of a turn.
MAX_JSON_DEPTH = 64


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
                       json_body: Any = None, form: dict[str, str] | None = None) -> Any:
        """GET ``url`` (or, with ``method``/``params``/``json_body``/``form``, that request);
        the parsed JSON answer, or FetchFailed.

        ``json_body`` is a JSON value (mappings, lists, strings, numbers), never JSON text: the
        fetcher serialises it, so a value cannot add structure to the document.
        """


class HttpFetcher:
    """GET a URL and parse its JSON, within a deadline and a size limit.

    A URL starting with ``/`` means this bot itself (``local_base_url``), so the shipped demo
    flows work out of the box without knowing the port they run on. Whatever goes wrong while
    asking, reading or parsing is a :class:`FetchFailed`: a lookup can fail a state (its
    fallback), never the turn.
    """

    def __init__(self, client: httpx.AsyncClient, local_base_url: str) -> None:
        self._client = client
        self._local_base_url = local_base_url.rstrip("/")

    def resolve(self, url: str) -> str:
        return self._local_base_url + url if url.startswith("/") else url

    async def get_json(self, url: str, timeout: float, *, method: str = "GET", params: dict[str, str] | None = None,
                       json_body: Any = None, form: dict[str, str] | None = None) -> Any:
        target = self.resolve(url)
        try:
            async with asyncio.timeout(timeout):  # a total deadline; httpx's timeout is per phase
                body = await self._download(method, target, timeout, params, json_body, form)
            if method != "GET" and not body.strip():
                return {}  # a POST answered with no body (204): a success with nothing to read
            return parse_json(body)
        except FetchFailed:
            raise
        except (httpx.TimeoutException, TimeoutError):
            raise FetchFailed(f"no answer within {timeout:g}s") from None
        except Exception as error:  # noqa: BLE001 - any failure of a lookup is a failed lookup
            raise FetchFailed(f"request to {target} failed: {type(error).__name__}: {error}") from None

    async def _download(self, method: str, target: str, timeout: float, params: dict[str, str] | None,
                        json_body: Any, form: dict[str, str] | None) -> bytes:
        """The answer's body, read as it arrives and abandoned past MAX_FETCH_BYTES: a service
        answering 200 MB costs us 256 KB, not 200 MB."""
        async with self._client.stream(method, _with_params(target, params), timeout=timeout, json=json_body,
                                       headers={"Accept": "application/json"}, data=form) as response:
            if not response.is_success:
                raise FetchFailed(f"HTTP {response.status_code}", status=response.status_code)
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_FETCH_BYTES:
                raise FetchFailed(f"answer larger than {MAX_FETCH_BYTES} bytes (Content-Length {declared})")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_FETCH_BYTES:
                    raise FetchFailed(f"answer larger than {MAX_FETCH_BYTES} bytes")
                chunks.append(chunk)
        return b"".join(chunks)


def _with_params(target: str, params: dict[str, str] | None) -> httpx.URL | str:
    """The address with ``params`` added to the query the URL already has (httpx's ``params=``
    would replace it, dropping the flow's own ``?q=…``), each value percent-encoded as one value."""
    if not params:
        return target
    url = httpx.URL(target)
    added = urlencode(params, quote_via=quote).encode("ascii")
    return url.copy_with(query=url.query + b"&" + added if url.query else added)


def parse_json(body: bytes) -> Any:
    """The answer as JSON, at most MAX_JSON_DEPTH levels deep, or FetchFailed."""
    try:
        value = json.loads(body)
    except RecursionError:
        raise FetchFailed(f"answer nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError:
        raise FetchFailed("answer is not JSON") from None
    if _deeper_than(value, MAX_JSON_DEPTH):
        raise FetchFailed(f"answer nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether mappings and lists nest more than ``limit`` levels (walked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False
