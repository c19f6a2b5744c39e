"""The Studio importer (bot/studio/, ``python -m bot import-studio``).

Our own small Studio exports in tests/studio/ (one per widget and split condition) are converted,
then run branch by branch against the real engine; lookups go to a small server on 127.0.0.1.
The real exports of ../shared/studio/ are imported too where that folder exists (a developer's
checkout); a fresh clone (CI) has only tests/studio/. No test reaches beyond 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot import studio
from bot.actions import HttpFetcher
from bot.fake_twilio import LoopbackServer
from bot.flows.loader import lint_paths, load_flows
from bot.flowtests import run_conversations
from bot.simulator import simulation
from bot.studio.examples import MAX_TEXT, regex_example
from bot.types import Inbound
from tests.conftest import PROGRAM_YAML, ROOT

FIXTURES = ROOT / "tests" / "studio"
#: The real exports (issue 7): ../shared/studio next to the repository, or STUDIO_SAMPLES.
SAMPLES = Path(os.environ.get("STUDIO_SAMPLES") or ROOT.parent / "shared" / "studio")
SENDER = "+15551234567"
EXAMPLE_API = "https://api.example.com"  # the fixtures' service; replaced by the loopback server's URL
CHILD_SID = "FW00000000000000000000000000000001"

CONDITION_INPUTS = {  # condition: (a reply that matches, one that does not)
    "equal_to": ("YES", "yes please"),
    "not_equal_to": ("maybe", "NO"),
    "matches_any_of": ("Sure", "nah"),
    "does_not_match_any_of": ("maybe", "nope"),
    "contains": ("I want PIZZA now", "pasta"),
    "does_not_contain": ("pasta", "pizza again"),
    "starts_with": ("Order 123", "my order"),
    "does_not_start_with": ("my order", "ORDER 5"),
    "regex": ("12345", "1234"),
    "is_blank": ("", "x"),
    "is_not_blank": ("x", ""),
    "less_than": ("9", "10"),
    "greater_than": ("11", "eleven"),
}


def export(name: str, api: str | None = None) -> dict[str, Any]:
    text = (FIXTURES / f"{name}.json").read_text(encoding="utf-8")
    if api is not None:
        text = text.replace(EXAMPLE_API, api)
    data: dict[str, Any] = json.loads(text)
    return data


def convert(name: str, *, api: str | None = None, **options: Any) -> studio.Imported:
    options.setdefault("name", studio.flow_name_from(name))
    if "triggers" not in options and not options.get("default"):
        options["triggers"] = ("GO",)
    return studio.import_flow(export(name, api), studio.Options(**options))


def install(folder: Path, *imported: studio.Imported) -> Path:
    """A flows folder: the program file, the flows, and their generated tests."""
    (folder / "tests").mkdir(parents=True, exist_ok=True)
    (folder / "program.yaml").write_text(PROGRAM_YAML, encoding="utf-8")
    for item in imported:
        (folder / f"{item.name}.yaml").write_text(item.flow_yaml(), encoding="utf-8")
        tests = item.tests_yaml()
        if tests is not None:
            (folder / "tests" / f"{item.name}.yaml").write_text(tests, encoding="utf-8")
    return folder


async def chat(folder: Path, *messages: str, sender: str = SENDER) -> list[list[str]]:
    """The bot's replies to each message, one conversation, real engine."""
    async with simulation(load_flows(folder)) as sim:
        return [list((await sim.text(message, sender)).replies) for message in messages]


def errors(folder: Path) -> list[str]:
    return [str(problem) for problem in lint_paths([folder]) if problem.severity == "error"]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Generated conversation tests must not fetch anything real (they stub what they reach)."""
    async def refuse(self: HttpFetcher, url: str, timeout: float, **request: Any) -> Any:
        raise AssertionError(f"a generated test fetched {url} for real")
    monkeypatch.setattr(HttpFetcher, "get_json", refuse)


# -- a small web service on 127.0.0.1 ------------------------------------------------------------

class Service:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.server = LoopbackServer(Starlette(routes=[
            Route("/orders", self.orders, methods=["GET"]),
            Route("/echo", self.echo, methods=["POST"]),
            Route("/form", self.form, methods=["POST"]),
            Route("/fn", self.function, methods=["POST"]),
        ]), name="studio-service")

    async def _record(self, request: Request) -> dict[str, Any]:
        seen = {"method": request.method, "path": request.url.path, "query": dict(request.query_params),
                "content_type": request.headers.get("content-type", ""), "body": (await request.body()).decode()}
        self.requests.append(seen)
        return seen

    async def orders(self, request: Request) -> Response:
        seen = await self._record(request)
        number = seen["query"].get("id", "")
        if number == "999999":
            return Response("down", status_code=500)
        return JSONResponse({"id": number, "status": "shipped" if number == "123456" else "packing"})

    async def echo(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse(await request.json())

    async def form(self, request: Request) -> Response:
        await self._record(request)
        form = dict(await request.form())
        return JSONResponse(form, status_code=403 if form.get("who") == "+15550000000" else 200)

    async def function(self, request: Request) -> Response:
        await self._record(request)
        form = dict(await request.form())
        if form.get("who") == "+15550000000":
            return Response("crashed", status_code=500)
        return JSONResponse({"answer": f"{form.get('word')} from {form.get('who')}"})


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    running = Service()
    running.server.start()
    try:
        yield running
    finally:
        running.server.stop()


@pytest.fixture
def api(service: Service) -> str:
    service.requests.clear()
    return service.server.url


# -- the YAML each widget becomes ----------------------------------------------------------------

def test_send_message_says_its_body_and_follows_sent() -> None:
    flow = convert("send-message").flow
    assert flow["flow"] == "send_message" and flow["triggers"] == ["GO"] and flow["start"] == "greet"
    assert flow["states"] == {"greet": {"say": "Hello from Studio!", "go": "second"},
                              "second": {"say": "Second message, then the end.", "go": "end"}}


def test_send_message_to_another_number_is_a_notify() -> None:
    imported = convert("send-message-notify")
    assert imported.flow["states"]["tell_staff"] == {
        "notify": {"to": "+15557654321", "say": "{{contact.channel.address}} asked for a call back."},
        "go": "confirm"}
    assert any("+15557654321" in warning for warning in imported.warnings)


def test_send_and_wait_saves_the_reply_where_studio_keeps_it_and_has_its_timeout() -> None:
    state = convert("send-and-wait-for-reply").flow["states"]["ask"]
    assert state == {"say": "What's your name?",
                     "replies": [{"pattern": "(?s).*", "save": "widgets.ask.inbound.Body", "go": "thanks"}],
                     "timeout": {"after": "300s", "go": "nudge"}}


def test_set_variables_sets_dotted_flow_variables() -> None:
    states = convert("set-variables").flow["states"]
    assert states["remember"] == {"set": {"flow.variables.greeting": "Hello",
                                          "flow.variables.first": "{{trigger.message.Body}}",
                                          "flow.variables.who": "{{contact.channel.address}}"},
                                  "go": "show"}
    assert states["check"]["branch"] == {"value": "{{flow.variables.greeting}}",
                                         "cases": [{"equal_to": "hello", "go": "polite"}], "otherwise": "rude"}


@pytest.mark.parametrize("condition", list(CONDITION_INPUTS))
def test_each_split_condition_becomes_the_case_of_the_same_name(condition: str) -> None:
    branch = convert(f"split-{condition.replace('_', '-')}").flow["states"]["check"]["branch"]
    value = export(f"split-{condition.replace('_', '-')}")["states"][2]["transitions"][1]["conditions"][0]["value"]
    expected = True if condition in ("is_blank", "is_not_blank") else value
    assert branch == {"value": "{{widgets.ask.inbound.Body}}", "cases": [{condition: expected, "go": "matched"}],
                      "otherwise": "no_match"}


def test_media_url_becomes_the_states_media() -> None:
    data = export("send-and-wait-for-reply")
    for widget in data["states"][1:3]:  # ask (send-and-wait-for-reply), thanks (send-message)
        widget["properties"]["media_url"] = "https://example.com/pizza.png"
    imported = studio.import_flow(data, studio.Options(name="t", triggers=("GO",)))
    assert [imported.flow["states"][name]["media"] for name in ("ask", "thanks")] == [
        ["https://example.com/pizza.png"]] * 2
    assert not [warning for warning in imported.warnings if "media" in warning]


def test_a_media_url_that_is_no_web_address_is_reported_and_left_out() -> None:
    data = export("send-and-wait-for-reply")
    data["states"][1]["properties"]["media_url"] = "pizza.png"
    imported = studio.import_flow(data, studio.Options(name="t", triggers=("GO",)))
    assert "media" not in imported.flow["states"]["ask"]
    assert "widget 'ask': its media URL 'pizza.png' is not a web address (https://…), so its picture is not " \
           "imported; only the text is sent" in imported.warnings


def test_a_state_added_for_a_subflow_gets_a_numbered_name_when_its_name_is_taken() -> None:
    data = export("run-subflow")
    data["states"].append({"name": "ask_more-return", "type": "send-message", "transitions": [],
                           "properties": {"body": "A widget that happens to have the added state's name."}})
    states = studio.import_flow(data, studio.Options(name="t", triggers=("GO",),
                                                     subflows={CHILD_SID: "run_subflow_child"})).flow["states"]
    assert states["ask_more"]["enter"] == {"flow": "run_subflow_child", "then": "ask_more-return_2"}
    assert states["ask_more-return_2"]["go"] == "done" and "say" in states["ask_more-return"]


def test_a_condition_on_another_value_than_the_input_is_reported() -> None:
    data = export("split-equal-to")
    data["states"][2]["transitions"][1]["conditions"][0]["arguments"] = ["{{flow.variables.other}}"]
    imported = studio.import_flow(data, studio.Options(name="split", triggers=("GO",)))
    assert any("tests '{{flow.variables.other}}', not the split's input" in warning for warning in imported.warnings)


def test_http_requests_become_fetches_with_method_params_json_or_form() -> None:
    get = convert("make-http-request-get").flow["states"]["lookup"]
    assert get == {"fetch": {"url": "https://api.example.com/orders", "method": "GET",
                             "params": {"id": "{{widgets.ask.inbound.Body}}"}, "save": "widgets.lookup.parsed",
                             "timeout": "10s", "fallback": "", "on_error": "oops"},
                   "go": "status"}
    post = convert("make-http-request-json").flow["states"]["save"]["fetch"]
    assert post["method"] == "POST" and post["json"].startswith('{\n  "name": "{{widgets.ask.inbound.Body}}"')
    form = convert("make-http-request-form").flow["states"]["post"]["fetch"]
    assert form["form"] == {"word": "{{trigger.message.Body}}", "who": "{{contact.channel.address}}"}


def test_run_function_is_a_post_of_its_parameters() -> None:
    state = convert("run-function").flow["states"]["fn"]
    assert state == {"fetch": {"url": "https://api.example.com/fn", "method": "POST",
                               "form": {"word": "{{trigger.message.Body}}", "who": "{{contact.channel.address}}"},
                               "save": "widgets.fn.parsed", "timeout": "10s", "fallback": "", "on_error": "failed"},
                     "go": "answer"}


def test_run_subflow_enters_the_mapped_flow_and_copies_back_what_it_returns() -> None:
    states = convert("run-subflow", subflows={CHILD_SID: "run_subflow_child"}).flow["states"]
    assert states["ask_more"] == {"set": {"trigger.parent.parameters.topic": "pizza"},
                                  "enter": {"flow": "run_subflow_child", "then": "ask_more-return"}}
    assert states["ask_more-return"] == {"set": {"widgets.ask_more.opinion": "{{flow.variables.opinion}}"},
                                         "go": "done"}
    child = convert("run-subflow-child", triggers=()).flow
    assert child["start"] == "question" and "triggers" not in child


def test_an_unmapped_subflow_is_unsupported() -> None:
    with pytest.raises(studio.UnsupportedWidgets) as refused:
        convert("run-subflow")
    assert [str(item) for item in refused.value.items] == [
        f"ask_more (run-subflow): its subflow {CHILD_SID} is not imported: import that flow too, and add "
        f"--subflow {CHILD_SID}=ITS_FLOW_NAME"]


def test_widget_names_stay_state_names_except_end() -> None:
    imported = convert("names")
    assert list(imported.flow["states"]) == ["save-booked", "end_widget", "press", "details"]
    assert imported.flow["states"]["end_widget"]["replies"][0]["save"] == "widgets.end.inbound.Body"
    assert imported.flow["states"]["save-booked"]["go"] == "end_widget"
    assert any("'end' is imported as state 'end_widget'" in warning for warning in imported.warnings)


def test_unsupported_widgets_are_listed_by_name_and_type_or_stubbed() -> None:
    with pytest.raises(studio.UnsupportedWidgets) as refused:
        convert("unsupported")
    assert [(item.widget, item.type) for item in refused.value.items] == [("flex", "send-to-flex"),
                                                                          ("play", "say-play")]
    stubbed = convert("unsupported", stub=True)
    assert stubbed.flow["states"]["flex"] == {"say": "[Not supported here: Studio widget flex (send-to-flex)]",
                                              "go": "end"}
    assert stubbed.flow["states"]["play"] == {"say": "[Not supported here: Studio widget play (say-play)]",
                                              "go": "hello"}
    assert "#   flex (send-to-flex)" in stubbed.flow_yaml()


def test_triggers_default_and_entry() -> None:
    flow = convert("send-message", triggers=("GO", "START OVER"), default=True).flow
    assert list(flow)[:5] == ["flow", "description", "triggers", "start_on_any_message", "start"]
    assert flow["start_on_any_message"] is True
    with pytest.raises(studio.StudioError, match="compliance keyword"):
        convert("send-message", triggers=("STOP",))
    rest = convert("rest-api", triggers=())
    assert rest.flow["start"] == "remind"
    assert rest.flow["states"]["remind"]["set"] == {"flow.data.day": "{{ day | default: '' }}",
                                                    "flow.data.name": "{{ name | default: '' }}"}
    assert any("the REST API" in warning for warning in rest.warnings)


def test_templates_the_engine_does_not_fill_are_reported() -> None:
    data = export("send-message")
    data["states"][1]["properties"]["body"] = "{{flow.flow_sid}} {{widgets.greet.sid}} {{widgets.nope.x}}"
    warnings = studio.import_flow(data, studio.Options(name="t", triggers=("GO",))).warnings
    assert any(warning.startswith("{{flow.flow_sid}} is not filled in here") for warning in warnings)
    assert any(warning.startswith("{{widgets.greet.sid}} is empty here") for warning in warnings)
    assert any("'nope' that is not in this flow" in warning for warning in warnings)


def test_not_a_studio_export(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"flow": "x"}', encoding="utf-8")
    with pytest.raises(studio.StudioError, match="not a Twilio Studio flow export"):
        studio.read_export(tmp_path / "x.json")
    only_trigger = {"states": [export("send-message")["states"][0]], "initial_state": "Trigger"}
    with pytest.raises(studio.StudioError, match="no widgets besides its Trigger"):
        studio.import_flow(only_trigger, studio.Options(name="x"))


@pytest.mark.parametrize("fixture", sorted(path.stem for path in FIXTURES.glob("*.json")))
def test_importing_twice_gives_the_same_bytes_that_read_back_as_written(fixture: str) -> None:
    options = {"stub": True, "subflows": {CHILD_SID: "run_subflow_child"}}
    first, second = convert(fixture, **options), convert(fixture, **options)
    assert first.flow_yaml() == second.flow_yaml() and first.tests_yaml() == second.tests_yaml()
    body = first.flow_yaml()
    assert yaml.safe_load(body) == first.flow  # plain YAML reads it the same way too


# -- running the imports: the real engine, branch by branch ---------------------------------------

async def test_send_message_runs(tmp_path: Path) -> None:
    folder = install(tmp_path, convert("send-message"))
    assert await chat(folder, "go", "go!") == [["Hello from Studio!", "Second message, then the end."]] * 2


async def test_start_on_any_message(tmp_path: Path) -> None:
    folder = install(tmp_path, convert("send-message", default=True))
    assert await chat(folder, "what's this?") == [["Hello from Studio!", "Second message, then the end."]]


async def test_notify_goes_to_the_other_number(tmp_path: Path) -> None:
    folder = install(tmp_path, convert("send-message-notify"))
    async with simulation(load_flows(folder)) as sim:
        received = await sim.text("GO", SENDER)
    assert received.replies == ("Thanks, someone will call you back today.",)
    assert sim.notified == [("+15557654321", f"{SENDER} asked for a call back.")]


async def test_wait_for_reply_and_studio_templates(tmp_path: Path) -> None:
    folder = install(tmp_path, convert("send-and-wait-for-reply"))
    assert await chat(folder, "go", "Ann") == [["What's your name?"], ["Thanks, Ann! You first texted go."]]


async def test_the_timeout_branch_fires_after_a_restart(tmp_path: Path) -> None:
    flows = load_flows(install(tmp_path / "flows", convert("send-and-wait-for-reply")))
    store_url = f"sqlite:///{tmp_path / 'bot.db'}"
    async with simulation(flows, store_url=store_url) as sim:
        assert (await sim.text("GO", SENDER)).replies == ("What's your name?",)
        assert await sim.inbox.store.due(time.time() + 290) == []
    sent: list[tuple[Inbound, tuple[str, ...]]] = []

    async def deliver(inbound: Inbound, replies: tuple[str, ...]) -> None:
        sent.append((inbound, replies))

    async with simulation(flows, store_url=store_url) as sim:  # a new process, the same store
        due = await sim.inbox.store.due(time.time() + 301)
        assert [sender for sender, _ in due] == [SENDER]
        fired = await sim.inbox.time_out(SENDER, due[0][1], deliver)
        assert fired is not None and fired.replies == ("Still there? Text GO to start again.",)
        assert [replies for _, replies in sent] == [("Still there? Text GO to start again.",)]
        # (a fresh MessageSid: the simulator numbers its messages from 1 again, which this store has seen)
        late = await sim.inbox.receive(Inbound("SMafter0restart", SENDER, to="+15550001111", body="Ann"))
        assert late.replies[0].startswith("Sorry, I didn't get that")  # the flow ended with the nudge


async def test_set_variables_and_a_branch_on_a_variable(tmp_path: Path) -> None:
    folder = install(tmp_path, convert("set-variables"))
    assert await chat(folder, "GO") == [[f"Hello {SENDER}, you texted GO to +15550001111.",
                                         "The greeting was polite."]]


@pytest.mark.parametrize(("condition", "inputs"), list(CONDITION_INPUTS.items()))
async def test_each_split_condition_branch_by_branch(tmp_path: Path, condition: str, inputs: tuple[str, str]) -> None:
    folder = install(tmp_path, convert(f"split-{condition.replace('_', '-')}"))
    matching, other = inputs
    assert await chat(folder, "GO", matching, "GO", other) == [
        ["Send me something."], ["matched"], ["Send me something."], ["no match"]]


async def test_http_get_with_query_parameters_and_a_branch_on_the_answer(tmp_path: Path, api: str,
                                                                        service: Service) -> None:
    folder = install(tmp_path, convert("make-http-request-get", api=api))
    assert await chat(folder, "GO", "123456", "GO", "555", "GO", "999999") == [
        ["Order number?"], ["Order 123456 has shipped."], ["Order number?"], ["Order 555 is packing."],
        ["Order number?"], ["Sorry, the order service is down."]]
    assert [(seen["method"], seen["query"]) for seen in service.requests] == [
        ("GET", {"id": "123456"}), ("GET", {"id": "555"}), ("GET", {"id": "999999"})]


async def test_http_post_json(tmp_path: Path, api: str, service: Service) -> None:
    folder = install(tmp_path, convert("make-http-request-json", api=api))
    assert await chat(folder, "GO", "Ann") == [["Your name?"], [f"Saved Ann for {SENDER}."]]
    assert service.requests[0]["content_type"].startswith("application/json")
    assert json.loads(service.requests[0]["body"]) == {"name": "Ann", "from": SENDER}


async def test_http_post_form_succeeds_or_fails(tmp_path: Path, api: str, service: Service) -> None:
    folder = install(tmp_path, convert("make-http-request-form", api=api))
    assert await chat(folder, "GO") == [[f"The form got GO from {SENDER}."]]
    assert await chat(folder, "GO", sender="+15550000000") == [["The form was refused."]]
    assert service.requests[0]["content_type"].startswith("application/x-www-form-urlencoded")


async def test_run_function_succeeds_or_fails(tmp_path: Path, api: str, service: Service) -> None:
    folder = install(tmp_path, convert("run-function", api=api))
    assert await chat(folder, "GO") == [[f"The function says GO from {SENDER}."]]
    assert await chat(folder, "GO", sender="+15550000000") == [["The function failed."]]
    assert [(seen["method"], seen["path"]) for seen in service.requests] == [("POST", "/fn")] * 2


async def test_run_subflow_enters_the_child_and_comes_back(tmp_path: Path) -> None:
    folder = install(tmp_path, convert("run-subflow", subflows={CHILD_SID: "run_subflow_child"}),
                     convert("run-subflow-child", triggers=()))
    assert await chat(folder, "GO", "Delicious") == [
        ["Let's talk about pizza.", "What do you think of pizza?"],
        ["Noted.", "Back in the parent: you think Delicious."]]


async def test_a_rest_api_flow_runs_as_a_broadcast_with_flow_data(tmp_path: Path) -> None:
    flows = load_flows(install(tmp_path, convert("rest-api", triggers=())))
    async with simulation(flows) as sim:
        started = await sim.start("rest_api", SENDER, {"name": "Ada", "day": "Monday"})
        assert started.replies == ("Hi Ada, see you on Monday? Reply YES or NO.",)
        assert (await sim.text("yep", SENDER)).replies == ("See you on Monday!",)


async def test_renamed_and_dashed_states_run(tmp_path: Path) -> None:
    folder = install(tmp_path, convert("names"))
    assert await chat(folder, "GO", "1") == [["Booked: yes. Reply 1 for details."],
                                              ["Details: a table for two at 7pm."]]


async def test_stubs_say_what_is_not_supported(tmp_path: Path) -> None:
    folder = install(tmp_path, convert("unsupported", stub=True))
    assert await chat(folder, "GO") == [["Hi! Connecting you to an agent.",
                                         "[Not supported here: Studio widget flex (send-to-flex)]"]]


async def test_a_url_kept_in_a_flow_variable(tmp_path: Path, api: str) -> None:
    data = export("make-http-request-form", api=api)
    data["states"].insert(1, {"name": "config", "type": "set-variables",
                              "transitions": [{"event": "next", "next": "post"}],
                              "properties": {"variables": [{"key": "api", "value": f"{api}/form"}]}})
    data["states"][0]["transitions"][0]["next"] = "config"
    data["states"][2]["properties"]["url"] = "{{flow.variables.api}}"
    folder = install(tmp_path, studio.import_flow(data, studio.Options(name="cfg", triggers=("GO",))))
    assert await chat(folder, "GO") == [[f"The form got GO from {SENDER}."]]


# -- every fixture together: lint and the generated conversation tests ----------------------------

@pytest.fixture(scope="module")
def all_fixtures(tmp_path_factory: pytest.TempPathFactory) -> Path:
    imported = []
    for path in sorted(FIXTURES.glob("*.json")):
        name = studio.flow_name_from(path.stem)
        entered = path.stem in ("run-subflow-child", "rest-api")
        imported.append(studio.import_flow(
            json.loads(path.read_text(encoding="utf-8")),
            studio.Options(name=name, triggers=() if entered else (name.upper().replace("_", " "),), stub=True,
                           subflows={CHILD_SID: "run_subflow_child"})))
    return install(tmp_path_factory.mktemp("fixtures"), *imported)


def test_every_import_passes_lint(all_fixtures: Path) -> None:
    assert errors(all_fixtures) == []


async def test_the_generated_conversation_tests_pass_without_network(all_fixtures: Path, no_network: None) -> None:
    run = await run_conversations(load_flows(all_fixtures), [all_fixtures / "tests"])
    assert run.problems == []
    failed = [f"{result.file}: {result.name}\n{result.report}" for result in run.results if not result.passed]
    assert failed == []
    walked = {Path(result.file).stem for result in run.results}
    assert walked >= {studio.flow_name_from(path.stem) for path in FIXTURES.glob("split-*.json")}
    # both ways out of every split on a reply are walked
    for path in FIXTURES.glob("split-*.json"):
        names = [result.name for result in run.results if Path(result.file).stem == studio.flow_name_from(path.stem)]
        assert any(name.endswith("otherwise") for name in names) and len(names) == 2, names


def test_a_generated_test_chooses_replies_for_each_way_out() -> None:
    tests = convert("split-less-than").tests
    assert tests is not None
    assert [[turn.get("send") for turn in test["turns"]] for test in tests["tests"]] == [["GO", "9"],
                                                                                        ["GO", "something else"]]
    assert tests["tests"][0]["turns"][1] == {"send": "9", "expect": "matched"}


def test_a_generated_test_stubs_fixed_addresses_and_stops_where_it_cannot_know() -> None:
    imported = convert("make-http-request-get")
    assert imported.tests is not None
    assert [test["name"] for test in imported.tests["tests"]] == ["GO -> lookup fails"]
    assert imported.tests["tests"][0]["fetch"] == {"https://api.example.com/orders": "fail"}
    assert any("The walk stops before 'status'" in note for note in imported.test_notes)
    form = convert("make-http-request-form").tests
    assert form is not None and [test["name"] for test in form["tests"]] == ["GO -> post succeeds",
                                                                            "GO -> post fails"]


# -- the reply a generated test sends for a regex case --------------------------------------------

@pytest.mark.parametrize(("pattern", "example"), [
    (r"^\d{5}$", "11111"), (r"^(yes|y)$", "yes"), (r"order\s*#?\d+", "order1"), (r"[^a]", "b"),
    (r"^[A-Z]{2}\d{4}$", "AA1111"), (r"(?i:abc)(?=x)x", "abcx"), (r"\$\d+(\.\d\d)?", "$1"), (r"\W", "-")])
def test_a_regex_example_is_the_shortest_plain_text_it_finds(pattern: str, example: str) -> None:
    assert regex_example(pattern) == example


@pytest.mark.parametrize("pattern", [
    r"(a)\1",  # a back-reference: beyond the small subset read
    r"(?x) a b",  # verbose: spaces mean nothing
    r"(?!a)a",  # what it writes does not match: checked, so no example
    "x" * 201,  # too long to guess at
])
def test_a_regex_beyond_the_subset_has_no_example(pattern: str) -> None:
    assert regex_example(pattern) is None


@pytest.mark.parametrize("pattern", ["((a{1000}){1000}){1000}", "a{65535}" * 20, r"(\d{3}){54}", "(?:ab){999999999}",
                                     "(" * 30 + "a" + "){2}" * 30])  # 2**30 letters, in 151 characters
def test_a_hostile_regex_gets_no_example_at_once(pattern: str) -> None:
    started = time.perf_counter()
    assert regex_example(pattern) is None
    assert time.perf_counter() - started < 0.1


@settings(max_examples=500, deadline=None, database=None)
@given(st.text(alphabet=list("ab1^$.|()[]{}?*+-\\,:=!<>#PdwsWDSbBAZxu029"), max_size=16))
def test_a_regex_example_always_matches_and_fits_a_text(pattern: str) -> None:
    with warnings.catch_warnings():  # the fuzz writes patterns Python warns about ("possible nested set")
        warnings.simplefilter("ignore")
        example = regex_example(pattern)
        if example is not None:
            assert re.search(pattern, example, re.IGNORECASE) and len(example) <= MAX_TEXT


# -- the command ----------------------------------------------------------------------------------

def bot(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if name not in ("FLOWS_DIR", "STORE_URL")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "bot", *map(str, args)], cwd=cwd, input="", capture_output=True,
                          text=True, encoding="utf-8", timeout=20, env=env)


def test_cli_imports_writes_the_test_and_the_result_lints_and_passes(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "program.yaml").write_text(PROGRAM_YAML, encoding="utf-8")
    source = FIXTURES / "split-matches-any-of.json"
    result = bot("import-studio", source, "-o", flows / "yes.yaml", "--trigger", "ASK", "--trigger", "ASK ME")
    assert result.returncode == 0, result.stderr
    assert f"wrote {flows / 'yes.yaml'}" in result.stderr and f"wrote {flows / 'tests' / 'yes.yaml'}" in result.stderr
    first = (flows / "yes.yaml").read_bytes()
    assert b"flow: 'yes'\n" in first and b"  - ASK ME\n" in first  # quoted: YAML 1.1 tools read yes as true
    assert bot("import-studio", source, "-o", flows / "yes.yaml", "--trigger", "ASK", "ASK ME").returncode == 0
    assert (flows / "yes.yaml").read_bytes() == first  # byte-identical on a second import
    assert bot("lint", flows).returncode == 0
    tested = bot("test", "--flows", flows)
    assert tested.returncode == 0 and "2 passed, 0 failed" in tested.stderr, tested.stdout + tested.stderr


def test_cli_prints_without_output_file() -> None:
    result = bot("import-studio", FIXTURES / "send-message.json", "--trigger", "HI")
    assert result.returncode == 0
    assert result.stdout == studio.import_flow(export("send-message"), studio.Options(
        name="send_message", triggers=("HI",))).flow_yaml()


def test_cli_refuses_unsupported_widgets_and_writes_nothing(tmp_path: Path) -> None:
    result = bot("import-studio", FIXTURES / "unsupported.json", "-o", tmp_path / "u.yaml", "--trigger", "HI")
    assert result.returncode == 1
    assert "flex (send-to-flex)" in result.stderr and "play (say-play)" in result.stderr
    assert "--stub" in result.stderr and "nothing written" in result.stderr
    assert list(tmp_path.iterdir()) == []
    stubbed = bot("import-studio", FIXTURES / "unsupported.json", "-o", tmp_path / "u.yaml", "--trigger", "HI",
                  "--stub")
    assert stubbed.returncode == 0 and "warning: stubbed flex (send-to-flex)" in stubbed.stderr


def test_cli_errors(tmp_path: Path) -> None:
    stop = bot("import-studio", FIXTURES / "send-message.json", "--trigger", "STOP")
    assert stop.returncode == 2 and "compliance keyword" in stop.stderr
    missing = bot("import-studio", tmp_path / "missing.json")
    assert missing.returncode == 2 and "no such file" in missing.stderr
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    broken = bot("import-studio", tmp_path / "broken.json")
    assert broken.returncode == 1 and "not JSON" in broken.stderr
    bad_subflow = bot("import-studio", FIXTURES / "run-subflow.json", "--subflow", "FW123")
    assert bad_subflow.returncode == 2 and "FWSID=FLOW" in bad_subflow.stderr


# -- docs/studio.md ----------------------------------------------------------------------------------

def _doc_blocks() -> dict[str, str]:
    """The fenced blocks of docs/studio.md marked ``<!-- studio: KIND -->``."""
    lines = (ROOT / "docs" / "studio.md").read_text(encoding="utf-8").splitlines()
    blocks: dict[str, str] = {}
    for index, line in enumerate(lines):
        if line.startswith("<!-- studio: "):
            kind = line.removeprefix("<!-- studio: ").removesuffix(" -->")
            end = lines.index("```", index + 2)
            blocks[kind] = "\n".join(lines[index + 2:end]) + "\n"
    return blocks


def test_the_guide_shows_what_the_import_writes_and_the_chat_says(tmp_path: Path) -> None:
    blocks = _doc_blocks()
    imported = studio.import_flow(json.loads(blocks["export"]), studio.Options(name="pizza", triggers=("PIZZA",)))
    assert imported.flow_yaml() == blocks["flow"]
    assert imported.tests_yaml() == blocks["test"]
    folder = tmp_path / "flows"
    install(folder, imported)
    (folder / "program.yaml").write_text((ROOT / "flows" / "program.yaml").read_text(encoding="utf-8"),
                                         encoding="utf-8")
    command, *expected = blocks["chat"].splitlines()
    assert command == "$ printf 'pizza\\nmedium\\nLarge\\n' | .venv/bin/python -m bot chat --trace"
    result = subprocess.run([sys.executable, "-m", "bot", "chat", "--trace", "--flows", str(folder)], cwd=ROOT,
                            input="pizza\nmedium\nLarge\n", capture_output=True, text=True, encoding="utf-8",
                            timeout=20, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.stdout.splitlines() == expected, result.stdout + result.stderr


# -- the real exports in ../shared/studio ---------------------------------------------------------

def _samples() -> Path:
    if not SAMPLES.is_dir():
        if os.environ.get("STUDIO_SAMPLES"):
            pytest.fail(f"STUDIO_SAMPLES={SAMPLES} is not a folder of Studio exports")
        pytest.skip(f"the real Studio exports are not here ({SAMPLES}); a fresh clone tests tests/studio/ only")
    return SAMPLES


@pytest.fixture(scope="module")
def samples() -> Path:
    return _samples()


def test_the_voice_sample_is_refused_by_name_and_type(samples: Path) -> None:
    with pytest.raises(studio.UnsupportedWidgets) as refused:
        studio.import_flow(studio.read_export(samples / "gitops-order-bot-voice.json"),
                           studio.Options(name="voice", triggers=("ORDERBOT",)))
    assert sorted((item.widget, item.type) for item in refused.value.items) == [
        ("boasvindas", "say-play"), ("matricula", "gather-input-on-call"), ("send_to_flex_1", "send-to-flex"),
        ("usuario_nao_encontrado", "say-play")]


async def test_the_samples_import_lint_and_pass_their_generated_tests(samples: Path, tmp_path: Path,
                                                                      no_network: None) -> None:
    child_sid = "FW50120385f4d1e8dcf30c0bcd83695969"
    plan = {  # file: (flow name, triggers)
        "daily-sit-down-parent.json": ("daily_sit_down", ("SITDOWN",)),
        "daily-sit-down-child.json": ("daily_sit_down_questions", ()),
        "patient-appointment-management.json": ("patient_appointments", ()),
        "gitops-order-bot-voice.json": ("order_bot_voice", ("ORDERBOT",)),
    }
    imported = []
    for file, (name, triggers) in plan.items():
        options = studio.Options(name=name, triggers=triggers, stub=True,
                                 subflows={child_sid: "daily_sit_down_questions"})
        first = studio.import_flow(studio.read_export(samples / file), options)
        again = studio.import_flow(studio.read_export(samples / file), options)
        assert first.flow_yaml() == again.flow_yaml() and first.tests_yaml() == again.tests_yaml()
        imported.append(first)
    folder = install(tmp_path, *imported)
    assert errors(folder) == []
    run = await run_conversations(load_flows(folder), [folder / "tests"])
    assert run.ok and len(run.results) >= 10, [result.report for result in run.results if not result.passed]
    states = imported[0].flow["states"]
    assert states["ask_questions"]["enter"] == {"flow": "daily_sit_down_questions", "then": "ask_questions-return"}
    assert "end_widget" in states and "end" not in states


async def test_the_sit_down_samples_chat_as_in_studio(samples: Path, tmp_path: Path) -> None:
    """The parent asks a service (here: stubbed) who texts, then hands over to the child flow."""
    child_sid = "FW50120385f4d1e8dcf30c0bcd83695969"
    parent = studio.import_flow(studio.read_export(samples / "daily-sit-down-parent.json"), studio.Options(
        name="daily_sit_down", triggers=("SITDOWN",), subflows={child_sid: "daily_sit_down_questions"}))
    child = studio.import_flow(studio.read_export(samples / "daily-sit-down-child.json"),
                               studio.Options(name="daily_sit_down_questions"))
    flows = load_flows(install(tmp_path, parent, child))
    base = "https://ngrok.anthonydellavecchia.com/v1"
    async with simulation(flows) as sim:
        sim.stub({f"{base}/users/validate": {}, f"{base}/users/names": {"name": "ada"},
                  "https://daily-sit-down-4177.twil.io/write-to-airtable": {}})
        texts = ["SITDOWN", "wrote tests", "more tests", "none", "1"]
        replies = [list((await sim.text(text, SENDER)).replies) for text in texts]
    assert replies == [["ADA what did you do yesterday?"], ["ADA what will you do today?"],
                       ["ADA what impediments do you have?"],
                       ["Thanks, ada now get back to work.\n\nReply with 1 to view the Daily Sit-Down."],
                       ["https://airtable.com/shrgxvKyKIJ9pJItw"]]
