"""/metrics (bot/metrics.py, bot/metrics_endpoint.py): counters that move with real signed
webhooks, consent changes, timers, sends and reloads; who may read them (a token, or the console's
login; nobody when neither is set); an exposition Prometheus' own parser reads; labels that never
carry what a person texted, however they try; and several workers adding up in one scrape."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from bot import cli, metrics
from bot.app import create_app
from bot.broadcast import Broadcast, BroadcastProgress, Recipient
from bot.engine import Engine
from bot.fake_twilio import FakeTwilio
from bot.flows.loader import load_flows
from bot.metrics import WebhookOutcome, prepare_worker_files
from bot.metrics_endpoint import BROADCAST_STATES
from bot.settings import Settings, SettingsError
from bot.store import open_store
from bot.types import ConsentMethod
from tests.conftest import SHIPPED_FLOWS, ServerProcess, SignedClient, demo_fetcher, write_flows
from tests.signed_webhooks import ACCOUNT_SID, AUTH_TOKEN, new_message_sid, sign, signed_request, twilio_form

TOKEN = "metrics-token-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
PASSWORD = "correct horse battery staple"
SENDER = "+15557654321"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def settings_for(tmp_path: Path, flows_dir: Path = SHIPPED_FLOWS, **changes: object) -> Settings:
    options: dict[str, object] = {"metrics_token": TOKEN, **changes}
    return Settings.model_validate({"twilio_auth_token": AUTH_TOKEN, "store_url": f"sqlite:///{tmp_path / 'bot.db'}",
                                    "flows_dir": str(flows_dir), "reload_flows": False, **options})


@contextmanager
def running(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings, load_flows(settings.flows_dir), fetcher=demo_fetcher())
    with TestClient(app, follow_redirects=False) as client:
        yield client


def scrape(client: TestClient, path: str = "/metrics", headers: dict[str, str] | None = None) -> Samples:
    answer = client.get(path, headers=BEARER if headers is None else headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return samples_of(answer.text)


def samples_of(text: str) -> Samples:
    """Every sample, read by prometheus-client's own parser (which raises on a malformed line)."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """What changed between two scrapes (the counters are per process: other tests count too)."""
    return {key: after[key] - before.get(key, 0.0) for key in after
            if after[key] != before.get(key, 0.0) and not key[0].startswith("process_")}


def webhooks(samples: Samples, outcome: str, endpoint: str = "sms") -> float:
    return value(samples, "textflow_webhooks_total", endpoint=endpoint, outcome=outcome)


# -- who may read it ----------------------------------------------------------------------------------

def test_off_without_token_or_console(tmp_path: Path) -> None:
    with running(settings_for(tmp_path, metrics_token="")) as client:
        for path in ("/metrics", "/console/metrics"):
            assert client.get(path).status_code == 404
            assert client.get(path, headers=BEARER).status_code == 404


def test_the_token_opens_it_and_nothing_else_does(tmp_path: Path) -> None:
    with running(settings_for(tmp_path)) as client:
        refusals = [{}, {"Authorization": "Bearer wrong-token-0123456789abcdef"}, {"Authorization": f"Basic {TOKEN}"},
                    {"Authorization": f"Bearer {TOKEN[:-1]}"}, {"Authorization": f"Bearer {TOKEN}x"},
                    {"Authorization": "Bearer "}, {"Authorization": TOKEN}]
        for headers in refusals:
            answer = client.get("/metrics", headers=headers)
            assert answer.status_code == 401, headers
            assert answer.headers["www-authenticate"].startswith("Bearer")
            assert "textflow_" not in answer.text
        assert client.get("/metrics", headers={"authorization": f"bearer {TOKEN}"}).status_code == 200
        assert client.post("/metrics", headers=BEARER).status_code == 405
        assert client.get("/console/metrics", headers=BEARER).status_code == 404  # no console configured


def test_a_console_login_opens_it(tmp_path: Path) -> None:
    with running(settings_for(tmp_path, metrics_token="", admin_password=PASSWORD)) as client:
        # a browser without a session is sent to the console, which asks for the login first
        answer = client.get("/metrics")
        assert answer.status_code == 303 and answer.headers["location"] == "/console/metrics"
        answer = client.get("/console/metrics")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login")
        assert client.get("/metrics", headers=BEARER).status_code == 401  # no token is configured
        page = client.get("/console/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        client.post("/console/login", data={"csrf": csrf.group(1), "password": PASSWORD, "next": "/console/"})
        samples = scrape(client, "/console/metrics", headers={})
        assert ("textflow_flows_info", frozenset({("version", load_flows(SHIPPED_FLOWS).version)})) in samples
        # a client that sends the session cookie to /metrics itself is let in there too
        cookie = client.cookies.get("textflow_console")
        assert cookie is not None
        client.cookies.clear()
        assert client.get("/metrics").status_code == 303
        assert client.get("/metrics", headers={"cookie": f"textflow_console={cookie}"}).status_code == 200
        assert client.get("/metrics", headers={"cookie": "textflow_console=forged"}).status_code == 303


def test_a_short_token_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="METRICS_TOKEN is too short"):
        settings_for(tmp_path, metrics_token="short").validate()
    with pytest.raises(SettingsError, match="METRICS_TOKEN is blank"):
        settings_for(tmp_path, metrics_token="    ").validate()
    assert "metrics-token" not in repr(settings_for(tmp_path))


def test_the_webhook_does_not_need_it(tmp_path: Path) -> None:
    """/sms answers the same with metrics served or not; /metrics is never on the signed path."""
    for token in ("", TOKEN):
        with running(settings_for(tmp_path, metrics_token=token)) as client:
            bot = SignedClient(client)
            assert bot.text("HELP").status_code == 200
            assert client.post("/metrics", content=b"", headers={"X-Twilio-Signature": "x"}).status_code in (404, 405)


# -- counters move with what really happens ----------------------------------------------------------------

def test_webhooks_by_outcome_and_their_latency(tmp_path: Path) -> None:
    with running(settings_for(tmp_path)) as client:
        bot = SignedClient(client)
        before = scrape(client)
        assert bot.text("HELP").status_code == 200
        sid = new_message_sid()
        assert bot.text("STATUS", message_sid=sid).status_code == 200
        assert bot.text("STATUS", message_sid=sid).status_code == 200  # Twilio's retry
        form = twilio_form("HELP")
        body = urlencode(form).encode()
        assert client.post("/sms", content=body, headers={"Content-Type": "application/x-www-form-urlencoded",
                                                          "X-Twilio-Signature": "forged"}).status_code == 403
        assert client.post("/sms", content=body, headers={"Content-Type": "text/plain"}).status_code == 415
        assert client.get("/sms").status_code == 405
        unsigned_fields = {"Body": "hi"}
        assert client.post("/sms", content=urlencode(unsigned_fields).encode(), headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": sign("http://testserver/sms", unsigned_fields)}).status_code == 400
        huge = b"Body=" + b"x" * (70 * 1024)
        assert client.post("/sms", content=huge, headers={"Content-Type": "application/x-www-form-urlencoded",
                                                          "X-Twilio-Signature": "x"}).status_code == 413
        after = scrape(client)
    assert webhooks(after, "answered") - webhooks(before, "answered") == 2
    assert webhooks(after, "duplicate") - webhooks(before, "duplicate") == 1
    for outcome in ("rejected_signature", "rejected_media_type", "rejected_method", "rejected_bad_request",
                    "rejected_too_large"):
        assert webhooks(after, outcome) - webhooks(before, outcome) == 1, outcome
    count = "textflow_webhook_duration_seconds_count"
    assert value(after, count, endpoint="sms") - value(before, count, endpoint="sms") == 8
    buckets = sorted((float(dict(labels)["le"]), samples) for (name, labels), samples in after.items()
                     if name == "textflow_webhook_duration_seconds_bucket" and dict(labels)["endpoint"] == "sms")
    assert buckets[0][0] == 0.00025 and buckets[-1][0] == math.inf  # sub-millisecond to seconds
    assert [samples for _, samples in buckets] == sorted(samples for _, samples in buckets)  # cumulative


class SlowFetcher:
    """A lookup that takes longer than the webhook's patience."""

    async def get_json(self, url: str, timeout: float, **request: object) -> object:
        await asyncio.sleep(0.8)
        return {"value": 42}


SLOW_FLOW = """\
flow: slow
triggers: [SLOW]
start: lookup
states:
  lookup:
    fetch: {url: "/answer", save: result, timeout: 10s}
    say: "The answer is {{ result.value }}."
"""


def test_a_deferred_answer_is_counted_as_such(tmp_path: Path, fake_twilio: FakeTwilio) -> None:
    flows = write_flows(tmp_path / "flows", {"slow.yaml": SLOW_FLOW})
    settings = settings_for(tmp_path, flows, slow_reply_seconds=0.2, twilio_account_sid=ACCOUNT_SID,
                            twilio_from="+15550007777", twilio_api_base_url=fake_twilio.url)
    with TestClient(create_app(settings, load_flows(flows), fetcher=SlowFetcher())) as client:
        before = scrape(client)
        assert SignedClient(client).replies("SLOW", SENDER) == ["One moment, I'm looking that up…"]
        deadline = time.monotonic() + 10
        while not fake_twilio.created and time.monotonic() < deadline:
            time.sleep(0.05)
        after = scrape(client)
    assert [attempt.body for attempt in fake_twilio.created] == ["The answer is 42."]
    assert webhooks(after, "deferred") - webhooks(before, "deferred") == 1
    assert webhooks(after, "answered") == webhooks(before, "answered")
    assert value(after, "textflow_outbound_messages_total", result="accepted") - value(
        before, "textflow_outbound_messages_total", result="accepted") == 1


def test_busy_store_is_counted_as_503(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    with running(settings) as client:
        before = scrape(client)
        store = client.app_state["store"]

        async def unavailable(*args: object, **kwargs: object) -> None:
            from bot.store.base import StoreUnavailable

            raise StoreUnavailable("the store is gone (test)")

        original = store.snapshot
        store.snapshot = unavailable
        try:
            assert SignedClient(client).text("HELP").status_code == 503
        finally:
            store.snapshot = original
        after = scrape(client)
    assert webhooks(after, "unavailable") - webhooks(before, "unavailable") == 1


def test_opt_outs_and_opt_ins_by_method(tmp_path: Path) -> None:
    with running(settings_for(tmp_path)) as client:
        bot = SignedClient(client)
        before = scrape(client)
        assert bot.text("STOP", "+15550000001").status_code == 200
        assert bot.text("STOP", "+15550000001").status_code == 200  # already out: no change, not counted
        assert bot.text("START", "+15550000001").status_code == 200
        assert bot.text("please stop texting me", "+15550000002").status_code == 200
        assert bot.text("stop", "+15550000003", OptOutType="STOP").status_code == 200
        # Twilio reports 21610 for a message we sent: that number is opted out at Twilio
        report = {"MessageSid": new_message_sid(), "MessageStatus": "failed", "ErrorCode": "21610",
                  "To": "+15550000004", "AccountSid": ACCOUNT_SID}
        content, headers = signed_request("http://testserver/sms/status", report)
        assert client.post("/sms/status", content=content, headers=headers).status_code == 204
        after = scrape(client)
    changes = moved(before, after)
    assert changes[("textflow_opt_outs_total", frozenset({("method", "keyword")}))] == 1
    assert changes[("textflow_opt_ins_total", frozenset({("method", "keyword")}))] == 1
    assert changes[("textflow_opt_outs_total", frozenset({("method", "phrase")}))] == 1
    assert changes[("textflow_opt_outs_total", frozenset({("method", "twilio_opt_out_type")}))] == 1
    assert changes[("textflow_opt_outs_total", frozenset({("method", "delivery_error_21610")}))] == 1
    assert webhooks(after, "delivery_report", "status") - webhooks(before, "delivery_report", "status") == 1
    assert {name for name, _ in changes} <= {"textflow_opt_outs_total", "textflow_opt_ins_total",
                                              "textflow_webhooks_total", "textflow_webhook_duration_seconds_bucket",
                                              "textflow_webhook_duration_seconds_count",
                                              "textflow_webhook_duration_seconds_sum"}


def test_the_simulators_numbers_are_not_people(tmp_path: Path) -> None:
    """The console simulator texts from numbers no phone has (+1 999 555 XXXX, bot/simulated_numbers.py)
    through the same inbox: its STOP is no opt-out anyone made."""
    with running(settings_for(tmp_path)) as client:
        before = scrape(client)
        assert SignedClient(client).text("STOP", "+19995550142").status_code == 200
        after = scrape(client)
    assert not [key for key in moved(before, after) if key[0] in ("textflow_opt_outs_total", "textflow_opt_ins_total")]


def test_operator_changes_count_by_method(tmp_path: Path) -> None:
    """The operators' entry (python -m bot consent opt-out/opt-in) counts in the process it runs in."""
    store = f"sqlite:///{tmp_path / 'bot.db'}"

    def count(name: str) -> float:
        return metrics.REGISTRY.get_sample_value(name, {"method": "operator"}) or 0.0

    outs, ins = count("textflow_opt_outs_total"), count("textflow_opt_ins_total")
    assert cli.main(["consent", "opt-out", SENDER, "--store", store]) == 0
    assert cli.main(["consent", "opt-out", SENDER, "--store", store]) == 0  # already out: nothing recorded
    assert cli.main(["consent", "opt-in", SENDER, "--store", store]) == 0
    assert (count("textflow_opt_outs_total") - outs, count("textflow_opt_ins_total") - ins) == (1, 1)


LOOKUP_FLOW = """\
flow: lookup
triggers: [LOOKUP]
start: find
states:
  find:
    fetch:
      url: /demo/nowhere
      save: found
      fallback: "The lookup failed."
    say: "Found it."
"""


def test_failed_lookups_by_flow_and_reloads(tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", {"lookup.yaml": LOOKUP_FLOW})
    with running(settings_for(tmp_path, flows)) as client:
        bot = SignedClient(client)
        before = scrape(client)
        assert value(before, "textflow_failed_lookups_total", flow="lookup") == value(
            before, "textflow_failed_lookups_total", flow="lookup")  # the series exists from the start
        assert ("textflow_failed_lookups_total", frozenset({("flow", "lookup")})) in before
        assert bot.replies("LOOKUP", SENDER) == ["The lookup failed."]
        reloader = client.app_state["reloader"]
        (flows / "broken.yaml").write_text("flow: broken\nstart: nowhere\nstates: {}\n", encoding="utf-8")
        assert reloader.reload() is False
        (flows / "broken.yaml").unlink()
        (flows / "lookup.yaml").write_text(LOOKUP_FLOW.replace("Found it.", "Found it!"), encoding="utf-8")
        assert reloader.reload() is True
        after = scrape(client)
    changes = moved(before, after)
    assert changes[("textflow_failed_lookups_total", frozenset({("flow", "lookup")}))] == 1
    assert changes[("textflow_flows_reloads_total", frozenset({("result", "rejected")}))] == 1
    assert changes[("textflow_flows_reloads_total", frozenset({("result", "ok")}))] == 1
    versions = [dict(labels)["version"] for name, labels in after if name == "textflow_flows_info"]
    assert versions == [load_flows(flows).version]  # the running flows, after the reload
    loaded = "textflow_flows_loaded_timestamp_seconds"
    assert value(after, loaded) > value(before, loaded)


TIMED_FLOW = """\
flow: survey
triggers: [SURVEY]
start: ask
states:
  ask:
    say: "Rate us 1-5."
    replies:
      - number: {min: 1, max: 5}
        go: thanks
    otherwise: "1 to 5, please."
    remind: {after: 1s, say: "Still there? 1-5, please."}
    timeout: {after: 1s, go: bye}
  thanks: {say: "Thanks!"}
  bye: {say: "Maybe next time."}
"""


@pytest.mark.slow  # real timers, waited for in real time
def test_a_reminder_and_a_timeout_fired_and_sent(tmp_path: Path, fake_twilio: FakeTwilio) -> None:
    flows = write_flows(tmp_path / "flows", {"survey.yaml": TIMED_FLOW})
    settings = settings_for(tmp_path, flows, twilio_account_sid=ACCOUNT_SID, twilio_from="+15550007777",
                            twilio_api_base_url=fake_twilio.url)
    with running(settings) as client:
        before = scrape(client)
        assert SignedClient(client).replies("SURVEY", SENDER) == ["Rate us 1-5."]
        deadline = time.monotonic() + 15
        while len(fake_twilio.created) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [attempt.body for attempt in fake_twilio.created] == ["Still there? 1-5, please.", "Maybe next time."]
        after = scrape(client)
    changes = moved(before, after)
    assert changes[("textflow_timers_fired_total", frozenset({("kind", "reminder")}))] == 1
    assert changes[("textflow_timers_fired_total", frozenset({("kind", "timeout")}))] == 1
    assert changes[("textflow_outbound_messages_total", frozenset({("result", "accepted")}))] == 2


def test_broadcast_progress_is_told_and_read_when_scraped(tmp_path: Path) -> None:
    """A broadcast tells its counts after each recipient (``Broadcast.progress``); a scrape reports
    the ones under way as its source says now, by flow, never by the broadcast's name (a CSV path)."""
    told: list[BroadcastProgress] = []
    recipients = [Recipient(2, "+14155550101", {}), Recipient(3, "not a number", {}),
                  Recipient(4, "+14155550102", {}), Recipient(5, "+14155550101", {})]

    async def dry_run() -> None:
        store = open_store("memory://")
        flows = load_flows(SHIPPED_FLOWS)
        run = Broadcast(f"reminder:{tmp_path}/numbers.csv", "reminder", store, Engine(flows, demo_fetcher()), None,
                        progress=told.append)
        await run.run(recipients)
        await store.close()

    asyncio.run(dry_run())
    assert [(p.sent, p.skipped, p.waiting, p.finished) for p in told] == [
        (0, 1, 3, False), (0, 2, 2, False), (1, 2, 1, False), (2, 2, 0, False), (2, 2, 0, True)]
    with running(settings_for(tmp_path)) as client:
        samples = scrape(client)  # the app's source is the store (bot/broadcast_progress.py): none recorded
        assert [name for name, _ in samples if "broadcast" in name] == ["textflow_broadcasts_running"]
        assert value(samples, "textflow_broadcasts_running") == 0
        del client.app_state["broadcast_progress"]
        assert not [name for name, _ in scrape(client) if "broadcast" in name]  # no source: nothing claimed

        async def under_way() -> list[BroadcastProgress]:
            return [told[2], told[-1], dataclasses.replace(told[2], flow="not_a_flow_here")]

        client.app_state["broadcast_progress"] = under_way
        exposition = client.get("/metrics", headers=BEARER).text
        samples = samples_of(exposition)
    assert value(samples, "textflow_broadcasts_running") == 2  # the finished one is not under way
    flows = {dict(labels)["flow"] for name, labels in samples if name == "textflow_broadcast_recipients"}
    assert flows == {"reminder", metrics.FLOW_UNKNOWN}
    for state, count in zip(BROADCAST_STATES, (1, 2, 0, 1, 0), strict=True):
        assert value(samples, "textflow_broadcast_recipients", flow="reminder", state=state) == count
    assert "numbers.csv" not in exposition and "4155550101" not in exposition


def test_a_broken_or_slow_broadcast_source_leaves_only_the_broadcasts_out(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bot.metrics_endpoint.SOURCE_SECONDS", 0.2)

    async def broken() -> list[BroadcastProgress]:
        raise ConnectionError("the store is down (test)")

    async def slow() -> list[BroadcastProgress]:
        await asyncio.sleep(5)
        return []

    with running(settings_for(tmp_path)) as client:
        for source in (broken, slow):
            client.app_state["broadcast_progress"] = source
            samples = scrape(client)
            assert ("textflow_webhooks_total", frozenset({("endpoint", "sms"), ("outcome", "answered")})) in samples
            assert not [name for name, _ in samples if "broadcast" in name]


# -- what labels may say ---------------------------------------------------------------------------------

ATTACKS = ["+15559876543", "call me at 415 555 0199", "http://evil.example/x?a=1", '"} 1\nfake_metric{a="b',
           "stop texting me +15559876543", "STOP", "<script>alert(1)</script>", "../../etc/passwd",
           "\u202eSTOP", "ALTO", "x" * 2000, "STATUS", "123456", "YES", "START", "HELP"]


def allowed_label_values(flows_dir: Path) -> set[str]:
    loaded = load_flows(flows_dir)
    return {*(outcome.value for outcome in WebhookOutcome), *metrics.ENDPOINTS, *(m.value for m in ConsentMethod),
            *metrics.TIMER_KINDS, *metrics.SEND_RESULTS, *metrics.RELOAD_RESULTS, *BROADCAST_STATES,
            metrics.FLOW_UNKNOWN, *loaded.flows, loaded.version}


def test_no_label_carries_what_was_texted(tmp_path: Path) -> None:
    """Senders text numbers, URLs, exposition syntax and 2,000 characters, from odd numbers and with
    an odd OptOutType; every label value is still from the fixed vocabularies or the flow files."""
    flows = write_flows(tmp_path / "flows", {"lookup.yaml": LOOKUP_FLOW})
    senders = ["+15559876543", "+447700900123", "whatsapp:+15550001234"]
    with running(settings_for(tmp_path, flows)) as client:
        bot = SignedClient(client)
        # Flows other tests loaded in this process have their series too: values from files all the same.
        earlier = {label for _, labels in scrape(client) for name, label in labels if name == "flow"}
        for index, text in enumerate(ATTACKS):
            bot.text(text, senders[index % len(senders)])
            bot.text(text, senders[index % len(senders)], OptOutType=text[:50])
        bot.text("LOOKUP", "+15559876543")
        report = {"MessageSid": new_message_sid(), "MessageStatus": "failed", "ErrorCode": "21610",
                  "To": "+15559876543", "AccountSid": ACCOUNT_SID}
        content, headers = signed_request("http://testserver/sms/status", report)
        client.post("/sms/status", content=content, headers=headers)
        exposition = client.get("/metrics", headers=BEARER).text
    allowed = allowed_label_values(flows) | earlier
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            for name, label in sample.labels.items():
                if name == "le":
                    float(label)  # a bucket's bound
                else:
                    assert label in allowed, (sample.name, name, label)
    for secret in ("5559876543", "7700900123", "5550001234", "evil.example", "fake_metric", "<script>", "passwd",
                   "texting"):
        assert secret not in exposition


# -- several workers: one scrape adds them all up --------------------------------------------------------

def test_prepare_worker_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")  # so whatever the code sets is undone after the test
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    assert prepare_worker_files(1, True) is None and "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    assert prepare_worker_files(4, False) is None and "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    folder = prepare_worker_files(2, True)
    assert folder is not None and folder.is_dir() and os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(folder)
    folder.rmdir()
    named = tmp_path / "metrics"
    named.mkdir()
    stale = [named / "counter_123.db", named / "histogram_99.db", named / "gauge_livesum_7.db"]
    kept = [named / "bot.db", named / "counter_notes.txt", named / "mine.db"]
    for path in stale + kept:
        path.write_bytes(b"x")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(named))
    assert prepare_worker_files(2, True) is None  # the operator's folder: kept, emptied of old counts only
    assert sorted(path.name for path in named.iterdir()) == sorted(path.name for path in kept)


@pytest.mark.slow  # two real worker processes
def test_two_workers_add_up_in_every_scrape(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"an earlier run's counts")
    env = {"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "STORE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
           "FLOWS_DIR": str(SHIPPED_FLOWS), "RELOAD_FLOWS": "0", "DEV_MODE": "0", "PUBLIC_URL": "", "WORKERS": "2",
           "METRICS_TOKEN": TOKEN, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    server = ServerProcess(env, cwd=tmp_path).start()
    try:
        url = server.url + "/sms"
        for index in range(20):  # a new connection each: the workers share them
            content, headers = signed_request(url, twilio_form("HELP", f"+1555000{index:04d}"))
            assert httpx.post(url, content=content, headers=headers).status_code == 200
        for _ in range(6):  # whichever worker answers
            samples = samples_of(httpx.get(server.url + "/metrics", headers=BEARER).text)
            assert webhooks(samples, "answered") == 20
            assert not [name for name, _ in samples if name.startswith("process_")]  # per process: not in the sum
        counters = [path.name for path in folder.iterdir() if path.name.startswith("counter_")]
        assert "counter_1.db" not in counters  # the earlier run's counts were cleared at start
        assert len(counters) >= 2  # each worker counts in a file of its own, and every scrape adds them up
    finally:
        output = server.stop()
    assert "Traceback" not in output, output


@pytest.mark.slow  # two real worker processes
def test_server_gives_its_workers_a_folder_of_their_own_and_removes_it(tmp_path: Path) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {"TWILIO_AUTH_TOKEN": AUTH_TOKEN, "STORE_URL": f"sqlite:///{tmp_path / 'bot.db'}",
           "FLOWS_DIR": str(SHIPPED_FLOWS), "RELOAD_FLOWS": "0", "DEV_MODE": "0", "PUBLIC_URL": "", "WORKERS": "2",
           "METRICS_TOKEN": TOKEN, "TMPDIR": str(temporary)}
    env_without = {name: value for name, value in os.environ.items() if name != "PROMETHEUS_MULTIPROC_DIR"}
    server = ServerProcess(env, cwd=tmp_path)
    server.env = {**env_without, **{name: server.env[name] for name in ("PORT", "HOST")}, **env}
    server.start()
    try:
        url = server.url + "/sms"
        for index in range(6):
            content, headers = signed_request(url, twilio_form("HELP", f"+1555000{index:04d}"))
            assert httpx.post(url, content=content, headers=headers).status_code == 200
        for _ in range(4):
            assert webhooks(samples_of(httpx.get(server.url + "/metrics", headers=BEARER).text), "answered") == 6
        assert [path.name.startswith("textflow-metrics-") for path in temporary.iterdir()] == [True]
    finally:
        output = server.stop()
    assert list(temporary.iterdir()) == [], output  # removed when the server stopped
