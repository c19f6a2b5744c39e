"""Settings: read from the environment and .env, with clear errors for values that cannot work."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from bot.settings import Settings, SettingsError, is_loopback, load_settings

TOKEN = "a-token-of-16-chars"  # validate() refuses shorter ones (issue 11, finding 3)


def test_defaults() -> None:
    settings = load_settings({})
    assert (settings.store_url, settings.flows_dir, settings.host, settings.port) == (
        "sqlite:///bot.db", "flows", "127.0.0.1", 8000)
    assert settings.workers == 1 and settings.reload_flows and settings.retention_seconds == 30 * 86400


def test_env_file_is_read_and_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("TWILIO_AUTH_TOKEN=from-file\nPORT=9000\n")
    monkeypatch.setenv("PORT", "9100")
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    settings = load_settings(env_file=env_file)
    assert (settings.twilio_auth_token, settings.port) == ("from-file", 9100)


@pytest.mark.parametrize(("raw", "seconds"), [("12h", 43200), ("7d", 604800), ("90m", 5400), ("1h30m", 5400)])
def test_retention(raw: str, seconds: float) -> None:
    assert load_settings({"RETENTION": raw}).retention_seconds == seconds


@pytest.mark.parametrize(("environ", "message"), [
    ({"RETENTION": "soon"}, "RETENTION must be a duration"),
    ({"RETENTION": "0s"}, "RETENTION must be longer than zero"),
    ({"PORT": "eighty"}, "PORT must be a whole number"),
    ({"DEV_MODE": "maybe"}, "DEV_MODE must be 1 or 0"),
])
def test_unreadable_values(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(environ)


@pytest.mark.parametrize(("settings", "message"), [
    (Settings(), "TWILIO_AUTH_TOKEN is not set"),
    (Settings(dev_mode=True, host="0.0.0.0"), "only listens on loopback"),
    (Settings(twilio_auth_token=TOKEN, workers=0), "WORKERS must be 1 or more"),
    (Settings(twilio_auth_token=TOKEN, workers=2, store_url="memory://"), "WORKERS > 1 needs a shared store"),
    (Settings(twilio_auth_token=TOKEN, public_url="abc.ngrok.app"), "PUBLIC_URL must start with https://"),
])
def test_settings_that_cannot_work_are_refused(settings: Settings, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        settings.validate()


def test_settings_that_work() -> None:
    Settings(dev_mode=True).validate()
    Settings(twilio_auth_token=TOKEN, host="0.0.0.0", workers=4, public_url="https://abc.ngrok.app").validate()
    assert Settings(host="0.0.0.0", port=8123).local_base_url == "http://127.0.0.1:8123"
    assert Settings(host="::1").local_base_url == "http://[::1]:8000"


@pytest.mark.parametrize(("raw", "value"), [
    ("1", True), ("TRUE", True), (" yes ", True), ("On", True),
    ("0", False), ("False", False), ("NO", False), ("off", False),
])
def test_flag_words(raw: str, value: bool) -> None:
    settings = load_settings({"DEV_MODE": raw, "TRUST_PROXY": raw, "RELOAD_FLOWS": raw})
    assert settings.dev_mode is settings.trust_proxy is settings.reload_flows is value


def test_empty_values_mean_the_default() -> None:
    empty = {name: "" for name in ("HOST", "PORT", "LOG_LEVEL", "RELOAD_FLOWS", "RETENTION", "TWILIO_API_BASE_URL",
                                   "BROADCAST_TIMEZONE", "STORE_URL", "FLOWS_DIR", "SLOW_REPLY_SECONDS")}
    assert load_settings(empty) == load_settings({}) == Settings()
    assert load_settings({"BROADCAST_TIMEZONE": "  "}).broadcast_timezone == ""  # unset: see bot/quiet_hours.py


def test_values_are_normalised() -> None:
    settings = load_settings({"PUBLIC_URL": "https://abc.ngrok.app/", "TWILIO_API_BASE_URL": "http://fake:9/",
                              "LOG_LEVEL": "DEBUG", "BROADCAST_WINDOW": " 09:00-20:00 ", "SLOW_REPLY_SECONDS": "500ms"})
    assert (settings.public_url, settings.twilio_api_base_url, settings.log_level) == (
        "https://abc.ngrok.app", "http://fake:9", "debug")
    assert (settings.broadcast_window, settings.slow_reply_seconds) == ("09:00-20:00", 0.5)
    assert settings.status_callback_url == "https://abc.ngrok.app/sms/status"


def test_a_mapping_is_read_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("PORT=9000\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOST", "0.0.0.0")
    assert (load_settings({}).port, load_settings({}).host) == (8000, "127.0.0.1")


def test_settings_in_code_ignore_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("TWILIO_AUTH_TOKEN=from-file\nSTORE_URL=memory://\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PORT", "9100")
    monkeypatch.setenv("DEV_MODE", "1")
    settings = Settings(host="0.0.0.0")
    assert (settings.port, settings.dev_mode, settings.twilio_auth_token, settings.store_url) == (
        8000, False, "", "sqlite:///bot.db")
    assert load_settings().port == 9100  # while load_settings does read them


def test_only_exact_variable_names_count(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PORT", raising=False)
    monkeypatch.setenv("port", "9100")
    assert load_settings(env_file=tmp_path / "missing.env").port == 8000
    assert load_settings({"port": "9100", "retention_seconds": "5"}) == Settings()


def test_errors_from_the_environment_name_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WORKERS", "two")
    with pytest.raises(SettingsError, match=r"^WORKERS must be a whole number \(got 'two'\)$"):
        load_settings(env_file=tmp_path / "missing.env")
    with pytest.raises(SettingsError, match=r"^SLOW_REPLY_SECONDS must be longer than zero \(got '0s'\)$"):
        load_settings({"SLOW_REPLY_SECONDS": "0s"})


def test_settings_are_immutable_and_hashable() -> None:
    settings = Settings(twilio_auth_token="t")
    with pytest.raises(ValueError, match="frozen"):
        settings.port = 1  # type: ignore[misc]
    assert hash(settings) == hash(Settings(twilio_auth_token="t"))
    assert settings.model_copy(update={"port": 1}).port == 1


# -- issue 11, finding 3: the auth token and the loopback rule ---------------------------------------

GOOD_TOKEN = "0123456789abcdef"  # 16 characters: the shortest accepted (Twilio's are 32 hex digits)


@pytest.mark.parametrize("token", ["   ", "\t\n", "short-secret", "x" * 15, " " + "x" * 14 + " "])
def test_finding_3_blank_or_short_auth_token_is_refused(token: str) -> None:
    """A token anyone can guess signs requests anyone can forge: refused at start-up, dev mode or not."""
    for settings in (Settings(twilio_auth_token=token), Settings(twilio_auth_token=token, dev_mode=True)):
        with pytest.raises(SettingsError, match=r"TWILIO_AUTH_TOKEN .*16 characters"):
            settings.validate()


def test_finding_3_a_16_character_token_and_the_test_token_are_accepted() -> None:
    from tests.signed_webhooks import AUTH_TOKEN

    Settings(twilio_auth_token=GOOD_TOKEN).validate()
    Settings(twilio_auth_token=AUTH_TOKEN, host="0.0.0.0").validate()
    assert len(AUTH_TOKEN) >= 16


def test_finding_3_localhost_is_resolved_before_it_is_trusted_as_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """``HOST=localhost`` is what the resolver says it is, not what its name suggests."""
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("no-such-host.invalid")
    real = socket.getaddrinfo

    def hostile_hosts_file(host: str, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        if host == "localhost":  # an /etc/hosts that maps localhost to a public interface
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.2", 0))]
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", hostile_hosts_file)
    assert not is_loopback("localhost")
    with pytest.raises(SettingsError, match="only listens on loopback"):
        Settings(dev_mode=True, host="localhost").validate()
