"""Flow templates read only the environment variables FLOW_ENV names (issue 11, finding 11).

A deny-list of secret-looking names let ``{{ env.MYSQL_PWD }}``, ``MONGODB_URI`` and the like
through; now nothing is readable unless the operator listed it, whatever its name looks like.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from bot.app import create_app
from bot.flows.loader import load_flows
from bot.flowtests import CaseSpec, run_case
from bot.settings import Settings, SettingsError, load_settings
from bot.simulator import simulation
from bot.text import templates
from tests.conftest import SHIPPED_FLOWS, SignedClient, demo_fetcher, write_flows
from tests.signed_webhooks import AUTH_TOKEN

#: What the review read through ``{{ env.NAME }}``: none of these names looked secret to the old check.
LEAKED = {
    "MYSQL_PWD": "hunter2", "MONGODB_URI": "mongodb://admin:pw@db", "HTTPS_PROXY": "http://u:pw@proxy:3128",
    "CELERY_BROKER_URL": "amqp://guest:pw@rabbit", "GITHUB_PAT": "ghp_0123456789",
    "SSH_PRIVATEKEY": "-----BEGIN OPENSSH PRIVATE KEY-----", "SLACK_WEBHOOK_URL": "https://hooks.slack.com/T0/B0/x",
}

SHOW_FLOW = "flow: show\ntriggers: [SHOW]\nstart: s\nstates:\n  s:\n    say: \"{say}\"\n"


def show_flow(names: list[str]) -> str:
    return SHOW_FLOW.format(say=" ".join(f"{name}=[{{{{ env.{name} }}}}]" for name in names))


def expected(names: list[str], values: dict[str, str]) -> str:
    return " ".join(f"{name}=[{values.get(name, '')}]" for name in names)


@pytest.fixture
def leaked_environment(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in LEAKED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SHOP_NAME", "Acme")
    return {**LEAKED, "SHOP_NAME": "Acme"}


def test_flow_env_secrets_the_review_read_are_not_readable(tmp_path: Path, leaked_environment: dict[str, str]) -> None:
    names = [*LEAKED, "SHOP_NAME"]
    flows = write_flows(tmp_path / "flows", {"show.yaml": show_flow(names)})
    settings = Settings(twilio_auth_token=AUTH_TOKEN, store_url=f"sqlite:///{tmp_path / 'bot.db'}",
                        flows_dir=str(flows), reload_flows=False)
    with TestClient(create_app(settings, load_flows(flows))) as client:
        assert SignedClient(client).replies("SHOW") == [expected(names, {})]


def test_flow_env_names_listed_are_readable_and_only_those(tmp_path: Path,
                                                            leaked_environment: dict[str, str]) -> None:
    names = [*LEAKED, "SHOP_NAME"]
    flows = write_flows(tmp_path / "flows", {"show.yaml": show_flow(names)})
    settings = Settings(twilio_auth_token=AUTH_TOKEN, store_url=f"sqlite:///{tmp_path / 'bot.db'}",
                        flows_dir=str(flows), reload_flows=False, flow_env=("SHOP_NAME", "MYSQL_PWD"))
    with TestClient(create_app(settings, load_flows(flows))) as client:
        reply = SignedClient(client).replies("SHOW")
    assert reply == [expected(names, {"SHOP_NAME": "Acme", "MYSQL_PWD": "hunter2"})]  # listed: the operator's call


def test_flow_env_default_is_what_the_shipped_flows_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert Settings().flow_env == ("ORDERS_API", "ONCALL_NUMBER")
    assert load_settings({}).flow_env == ("ORDERS_API", "ONCALL_NUMBER")
    assert load_settings({"FLOW_ENV": ""}).flow_env == ("ORDERS_API", "ONCALL_NUMBER")  # as for every setting
    assert load_settings({"FLOW_ENV": " SHOP_NAME, ORDERS_API ,"}).flow_env == ("SHOP_NAME", "ORDERS_API")
    with pytest.raises(SettingsError, match="^FLOW_ENV .*'MY-NAME'"):
        load_settings({"FLOW_ENV": "SHOP_NAME,MY-NAME"})
    # ... and the shipped AGENT flow finds ONCALL_NUMBER with the default.
    monkeypatch.setenv("ONCALL_NUMBER", "+15550009999")
    settings = Settings(twilio_auth_token=AUTH_TOKEN, store_url=f"sqlite:///{tmp_path / 'bot.db'}",
                        flows_dir=str(SHIPPED_FLOWS), reload_flows=False)
    with TestClient(create_app(settings, load_flows(SHIPPED_FLOWS), fetcher=demo_fetcher())) as client:
        bot = SignedClient(client)
        bot.replies("AGENT")
        assert bot.replies("My parcel is late") == ["Thanks! Someone from our team will text you back shortly."]
        assert "ONCALL_NUMBER" in templates.public_environment(settings.flow_env)


def test_public_environment_is_only_the_listed_names(leaked_environment: dict[str, str]) -> None:
    assert templates.public_environment() == {}
    assert templates.public_environment(["SHOP_NAME", "NOT_SET_ANYWHERE"]) == {"SHOP_NAME": "Acme"}
    assert templates.public_environment(["SHOP_NAME"], {"SHOP_NAME": "Other"}) == {"SHOP_NAME": "Other"}


async def test_flow_env_in_the_simulator_and_conversation_tests(tmp_path: Path,
                                                                 leaked_environment: dict[str, str]) -> None:
    names = ["SHOP_NAME", "MYSQL_PWD", "GREETING"]
    flows = load_flows(write_flows(tmp_path / "flows", {"show.yaml": show_flow(names)}))
    async with simulation(flows) as sim:  # nothing listed: nothing read
        assert (await sim.text("SHOW", "+15551234567")).replies == (expected(names, {}),)
    async with simulation(flows, allowed_env=["SHOP_NAME"]) as sim:  # what `python -m bot chat` passes
        assert (await sim.text("SHOW", "+15551234567")).replies == (expected(names, {"SHOP_NAME": "Acme"}),)
    # A conversation test's env: allows the names it sets, and only those.
    case = CaseSpec.model_validate({"name": "env", "env": {"GREETING": "Hi"},
                                    "turns": [{"send": "SHOW", "expect": expected(names, {"GREETING": "Hi"})}]})
    result = await run_case(flows, "show_test.yaml", case)
    assert result.passed, result.report
