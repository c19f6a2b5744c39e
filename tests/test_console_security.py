"""The console's locks (bot/console/): off without ADMIN_PASSWORD, a login with a rate limit, a
signed HttpOnly SameSite session, CSRF on every POST (the login form's too), a strict CSP, and
never in the webhook's way."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from bot.app import create_app
from bot.console.security import CSRF_COOKIE, SESSION_COOKIE, ConsoleKeys, LoginLimiter
from bot.flows.loader import load_flows
from bot.settings import Settings
from tests.conftest import SHIPPED_FLOWS, replies_of
from tests.signed_webhooks import AUTH_TOKEN, signed_request, twilio_form

PASSWORD = "correct horse battery staple"


def settings_for(tmp_path: Path, **changes: object) -> Settings:
    return Settings(twilio_auth_token=AUTH_TOKEN, store_url=f"sqlite:///{tmp_path / 'bot.db'}",
                    flows_dir=str(SHIPPED_FLOWS), reload_flows=False, **changes)


@contextmanager
def console(tmp_path: Path, password: str = PASSWORD) -> Iterator[TestClient]:
    settings = settings_for(tmp_path, admin_password=password)
    with TestClient(create_app(settings, load_flows(SHIPPED_FLOWS)), base_url="http://testserver",
                    follow_redirects=False) as client:
        yield client


def csrf_of(client: TestClient) -> str:
    page = client.get("/console/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None, page.text
    return token.group(1)


def log_in(client: TestClient, password: str = PASSWORD) -> object:
    return client.post("/console/login", data={"csrf": csrf_of(client), "password": password, "next": "/console/"})


@pytest.mark.parametrize("password", ["", None])
def test_without_admin_password_there_is_no_console(tmp_path: Path, password: str | None) -> None:
    settings = settings_for(tmp_path, **({"admin_password": password} if password is not None else {}))
    with TestClient(create_app(settings, load_flows(SHIPPED_FLOWS))) as client:
        for path in ("/console", "/console/", "/console/login", "/console/static/console/console.css"):
            assert client.get(path).status_code == 404


def test_pages_need_a_login_and_the_login_page_is_strict(tmp_path: Path) -> None:
    with console(tmp_path) as client:
        answer = client.get("/console/")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login")
        page = client.get("/console/login")
        assert page.status_code == 200
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
        assert not re.search(r'(src|href)="(https?:)?//', page.text)  # nothing from another origin
        csrf_cookie = page.headers["set-cookie"]
        assert CSRF_COOKIE in csrf_cookie and "HttpOnly" in csrf_cookie and "SameSite=strict" in csrf_cookie


def test_logging_in_sets_a_signed_httponly_samesite_session(tmp_path: Path) -> None:
    with console(tmp_path) as client:
        answer = log_in(client)
        assert answer.status_code == 303 and answer.headers["location"] == "/console/"
        cookie = next(value for value in answer.headers.get_list("set-cookie") if value.startswith(SESSION_COOKIE))
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
        assert "Secure" not in cookie  # plain http on loopback in this test
        assert client.get("/console/").status_code == 303  # to the first page, not the login


def test_a_session_cookie_is_secure_over_https(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, admin_password=PASSWORD)
    with TestClient(create_app(settings, load_flows(SHIPPED_FLOWS)), base_url="https://testserver",
                    follow_redirects=False) as client:
        answer = log_in(client)
        cookie = next(value for value in answer.headers.get_list("set-cookie") if value.startswith(SESSION_COOKIE))
        assert "Secure" in cookie


def test_a_wrong_password_is_refused_and_the_limit_stops_guessing(tmp_path: Path) -> None:
    with console(tmp_path) as client:
        for _ in range(5):
            assert log_in(client, "guess").status_code == 401
        blocked = log_in(client, PASSWORD)  # even the right one, until the window passes
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
        assert SESSION_COOKIE not in blocked.headers.get("set-cookie", "")


def test_every_post_needs_the_csrf_token_the_login_form_too(tmp_path: Path) -> None:
    with console(tmp_path) as client:
        csrf_of(client)  # the cookie is set…
        no_token = client.post("/console/login", data={"password": PASSWORD})  # …but the form lacks it
        assert no_token.status_code == 403
        forged = client.post("/console/login", data={"password": PASSWORD, "csrf": "forged"})
        assert forged.status_code == 403
        assert log_in(client).status_code == 303
        assert client.post("/console/logout", data={}).status_code == 403
        token = client.cookies.get(CSRF_COOKIE)
        assert client.post("/console/logout", headers={"X-CSRF-Token": token}).status_code == 303
        assert client.get("/console/").headers["location"].startswith("/console/login")  # logged out


def test_after_login_the_next_page_is_always_a_console_page(tmp_path: Path) -> None:
    with console(tmp_path) as client:
        for target in ("https://evil.example/", "//evil.example/", "/console//evil.example", "/\\evil.example"):
            answer = client.post("/console/login", data={"csrf": csrf_of(client), "password": PASSWORD,
                                                          "next": target})
            assert answer.headers["location"] == "/console/", target


def test_a_forged_or_old_session_cookie_is_refused() -> None:
    keys = ConsoleKeys(PASSWORD)
    session = keys.new_session()
    assert keys.session_valid(session)
    assert not ConsoleKeys("another password").session_valid(session)  # a changed password logs everyone out
    assert not keys.session_valid(session[:-2] + "xx")
    assert not keys.password_matches("") and keys.password_matches(PASSWORD)


def test_the_login_limit_counts_per_client_and_in_all() -> None:
    limiter = LoginLimiter(per_client=2, in_all=3, window_seconds=60)
    limiter.failed("a", now=0)
    limiter.failed("a", now=1)
    assert limiter.retry_after("a", now=2) == pytest.approx(58)
    assert limiter.retry_after("b", now=2) == 0
    limiter.failed("b", now=3)
    assert limiter.retry_after("c", now=4) == pytest.approx(56)  # three failures in all
    assert limiter.retry_after("a", now=61) == 0


def test_the_webhook_answers_as_before_with_the_console_on(tmp_path: Path) -> None:
    with console(tmp_path) as client:
        content, headers = signed_request("http://testserver/sms", twilio_form("HELP"))
        answer = client.post("/sms", content=content, headers=headers)
        assert answer.status_code == 200 and "content-security-policy" not in answer.headers
        assert replies_of(answer.text)[0].startswith("Acme Orders")
