"""Settings: read from the environment and .env, with clear errors for values that cannot work."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import Settings, SettingsError, load_settings


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
    (Settings(twilio_auth_token="t", workers=0), "WORKERS must be 1 or more"),
    (Settings(twilio_auth_token="t", workers=2, store_url="memory://"), "WORKERS > 1 needs a shared store"),
    (Settings(twilio_auth_token="t", public_url="abc.ngrok.app"), "PUBLIC_URL must start with https://"),
])
def test_settings_that_cannot_work_are_refused(settings: Settings, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        settings.validate()


def test_settings_that_work() -> None:
    Settings(dev_mode=True).validate()
    Settings(twilio_auth_token="t", host="0.0.0.0", workers=4, public_url="https://abc.ngrok.app").validate()
    assert Settings(host="0.0.0.0", port=8123).local_base_url == "http://127.0.0.1:8123"
    assert Settings(host="::1").local_base_url == "http://[::1]:8000"
