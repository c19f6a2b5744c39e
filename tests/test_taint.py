"""What a person texts is only ever a value in a lookup: never a path segment, a query key, a
host, a JSON field or a form field of its own (security review, issue 11).

Regression tests for each finding, then a property test that drives any texted string through
every route a value can take to a lookup (save, set, branch, dotted and ``flow.*`` paths,
Studio-style variables, an entered flow), once through the real engine with a recording fetcher
and once through the real HttpFetcher against a real local HTTP server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from bot import studio
from bot.actions import HttpFetcher
from bot.engine import Engine
from bot.fake_twilio import LoopbackServer
from bot.flows.consent_source import default_consent_rules
from bot.flows.loader import FlowSet, load_flows
from bot.flows.problems import FlowLoadError
from bot.text.matching import condition, pattern_matcher
from bot.text.normalise import normalise, trim
from bot.types import Conversation, Inbound, Message
from tests.conftest import ROOT, write_flows

SENDER = "+15551234567"
ATTACK = "../../admin/delete?all=1#"
ENCODED_ATTACK = "..%2F..%2Fadmin%2Fdelete%3Fall%3D1%23"
STUDIO_FIXTURES = ROOT / "tests" / "studio"


class RecordingFetcher:
    """The engine's Fetcher: records every request exactly as the engine asks for it."""

    def __init__(self, answer: Any = None) -> None:
        self.answer = {} if answer is None else answer
        self.requests: list[dict[str, Any]] = []

    async def get_json(self, url: str, timeout: float, **request: Any) -> Any:
        self.requests.append({"url": url, **request})
        return self.answer

    @property
    def urls(self) -> list[str]:
        return [request["url"] for request in self.requests]


async def converse(flows: FlowSet, texts: list[str], fetcher: RecordingFetcher,
                   env: dict[str, str] | None = None) -> list[list[str]]:
    """Text ``texts`` one after another from SENDER; the replies to each."""
    engine = Engine(flows, fetcher, env=env or {})
    conversation = Conversation(SENDER)
    replies = []
    for number, text in enumerate(texts):
        inbound = Inbound(message_sid=f"SM{number:032x}", sender=SENDER, body=text, to="+15550009999")
        outcome = await engine.step(conversation, Message(inbound), False)
        conversation = outcome.conversation
        replies.append(outcome.replies)
    return replies


def flows_of(tmp_path: Path, **files: str) -> FlowSet:
    return load_flows(write_flows(tmp_path, {f"{name}.yaml": text for name, text in files.items()}))


# -- 1. texted text reaches fetch URLs through flow.* ---------------------------------------------

STUDIO_ORDER = """\
flow: studio_order
triggers: [ORDER]
start: ask
states:
  ask:
    say: "Order number?"
    replies:
      - pattern: '(?s).*'
        save: widgets.ask.inbound.Body
        go: remember
  remember:
    set:
      flow.variables.order: '{{widgets.ask.inbound.Body}}'
    go: lookup
  lookup:
    fetch:
      url: "https://api.example.com/orders/{{flow.variables.order}}"
      save: widgets.lookup.parsed
      fallback: "Lookup failed."
    say: "Looked up."
"""

NATIVE_FLOW_SAVE = """\
flow: native
triggers: [NATIVE]
start: ask
states:
  ask:
    say: "Order number?"
    replies:
      - pattern: '(?s).*'
        save: flow.x
        go: lookup
  lookup:
    fetch:
      url: "https://api.example.com/orders/{{ flow.x }}"
      save: found
      fallback: "Lookup failed."
    say: "Looked up."
"""


async def test_texted_text_reaches_fetch_urls_unencoded_through_flow_variables(tmp_path: Path) -> None:
    fetcher = RecordingFetcher()
    flows = flows_of(tmp_path, studio=STUDIO_ORDER, native=NATIVE_FLOW_SAVE)
    await converse(flows, ["order", ATTACK], fetcher)
    await converse(flows, ["native", ATTACK], fetcher)
    assert fetcher.urls == [f"https://api.example.com/orders/{ENCODED_ATTACK}"] * 2


async def test_a_texted_dot_dot_stays_one_path_segment(tmp_path: Path) -> None:
    """``..`` needs no encoding by RFC 3986, yet an HTTP client removes it with the segment before."""
    fetcher = RecordingFetcher()
    flows = flows_of(tmp_path, native=NATIVE_FLOW_SAVE.replace("{{ flow.x }}", "{{ message }}/details"))
    await converse(flows, ["native", ".."], fetcher)
    await converse(flows, ["native", "."], fetcher)
    assert fetcher.urls == ["https://api.example.com/orders/%2E%2E/details",
                            "https://api.example.com/orders/%2E/details"]


BASE_IN_A_VARIABLE = """\
flow: base_url
triggers: [BASE]
start: ask
states:
  ask:
    say: "Order number?"
    replies:
      - keywords: [REPLACE]
        save: flow.variables.api
        go: lookup
      - pattern: '(?s).*'
        save: flow.variables.order
        go: setup
  setup:
    set:
      flow.variables.api: "https://api.example.com/v1"
      flow.variables.from_env: "{{ env.ORDERS_API }}"
      flow.variables.order_copy: "{{ flow.variables.order }}"
    go: lookup
  lookup:
    fetch:
      url: "{{ flow.variables.api }}/orders/{{ flow.variables.order }}?again={{ flow.variables.order_copy }}"
      save: found
      fallback: "Lookup failed."
    go: second
  second:
    fetch:
      url: "{{ flow.variables.from_env }}/x"
      save: found2
      fallback: "Lookup failed."
    say: "Looked up."
"""


async def test_a_base_url_the_flow_file_sets_in_a_variable_stays_a_url(tmp_path: Path) -> None:
    """A ``set`` whose template reads no conversation value (only literal text and env) is the
    flow file's own: Studio imports keep their service's address in flow.variables like this."""
    fetcher = RecordingFetcher()
    flows = flows_of(tmp_path, base=BASE_IN_A_VARIABLE)
    await converse(flows, ["base", "a/b"], fetcher, env={"ORDERS_API": "https://orders.example.com/api"})
    assert fetcher.urls == ["https://api.example.com/v1/orders/a%2Fb?again=a%2Fb",
                            "https://orders.example.com/api/x"]


async def test_a_person_cannot_replace_a_base_url_the_flow_sets(tmp_path: Path) -> None:
    """The same variable, saved from a reply instead, is a value: it cannot pick the host."""
    fetcher = RecordingFetcher()
    flows = flows_of(tmp_path, base=BASE_IN_A_VARIABLE.replace("keywords: [REPLACE]", "pattern: '^https?:.*'"))
    replies = await converse(flows, ["base", "https://evil.example/steal"], fetcher,
                             env={"ORDERS_API": "https://orders.example.com/api"})
    assert all("evil.example/" not in url for url in fetcher.urls)
    assert replies[-1][0] == "Lookup failed."  # an address with no host is no lookup


async def test_a_texted_value_never_chooses_the_host(tmp_path: Path) -> None:
    """An empty reply in front of the path would leave "/admin": the bot's own address."""
    fetcher = RecordingFetcher()
    flow = NATIVE_FLOW_SAVE.replace("https://api.example.com/orders/{{ flow.x }}", "{{ flow.x }}/admin")
    replies = await converse(flows_of(tmp_path, native=flow), ["native", "."], fetcher)
    assert fetcher.urls == []
    assert replies[-1] == ["Lookup failed."]


async def test_a_lookups_answer_in_a_url_stays_one_value(tmp_path: Path) -> None:
    """What a service answered may echo what a person texted: a whole answer printed into a URL,
    keys and all, is one value too."""
    chained = """\
flow: chained
triggers: [CHAIN]
start: first
states:
  first:
    fetch: {url: "https://api.example.com/first", save: found}
    go: second
  second:
    fetch: {url: "https://api.example.com/second/{{ found }}/{{ found.list }}/{{ found['a/b'] }}", save: again}
    say: "Done."
"""
    fetcher = RecordingFetcher({"a/b": "../c?d#", "list": ["/", "&"]})
    await converse(flows_of(tmp_path, chained=chained), ["chain"], fetcher)
    path = fetcher.urls[1].removeprefix("https://api.example.com/")
    segments = path.split("/")
    assert segments[0] == "second" and segments[2:] == ["%2F%26", "..%2Fc%3Fd%23"]
    assert all(mark not in path for mark in "?#&")


# -- 2. JSON injection in fetch.json ----------------------------------------------------------------

CALLBACK_REQUEST = """\
flow: callback_request
description: Ask our CRM to call someone back.
triggers: [CALL ME]
start: ask
states:
  ask:
    say: "What's the best time to call you?"
    replies:
      - pattern: '.+'
        save: when
        go: book
    otherwise: "Just tell me a time, like 'tomorrow 10am'."
  book:
    fetch:
      url: "{{ env.CRM_API }}/callbacks"
      method: POST
      json: BODY
      save: booking
      fallback: ""
      on_error: sorry
    say: "Done: we'll call you {{ when }}."
  sorry:
    say: "Sorry, I couldn't book that. Please call us on 555-0100."
"""
INJECTION = '5pm", "phone": "+19998887777", "admin": true, "x": "'


def _sent_json(request: dict[str, Any]) -> Any:
    body = request["json_body"]
    return json.loads(body) if isinstance(body, str) else body


@pytest.mark.parametrize("body", ["""'{"phone": "{{ sender }}", "when": "{{ when }}"}'""",
                                  """{phone: "{{ sender }}", when: "{{ when }}"}"""])
async def test_texted_quotes_cannot_add_fields_to_a_fetch_json_body(tmp_path: Path, body: str) -> None:
    fetcher = RecordingFetcher()
    flows = flows_of(tmp_path, callback=CALLBACK_REQUEST.replace("BODY", body))
    await converse(flows, ["call me", INJECTION], fetcher, env={"CRM_API": "https://crm.example.com"})
    assert [_sent_json(request) for request in fetcher.requests] == [{"phone": SENDER, "when": INJECTION}]


async def test_a_fetch_json_mapping_keeps_its_structure_and_its_non_text_leaves(tmp_path: Path) -> None:
    fetcher = RecordingFetcher()
    body = """
        caller: {phone: "{{ sender }}", tags: ["{{ when }}", vip, 3, true, null]}
        when: "{{ when }}"
        attempts: 2"""
    flows = flows_of(tmp_path, callback=CALLBACK_REQUEST.replace(" BODY", body))
    await converse(flows, ["call me", "}, 7 ] {{ x }}"], fetcher, env={"CRM_API": "https://crm.example.com"})
    assert [_sent_json(request) for request in fetcher.requests] == [
        {"caller": {"phone": SENDER, "tags": ["}, 7 ] {{ x }}", "vip", 3, True, None]},
         "when": "}, 7 ] {{ x }}", "attempts": 2}]


@pytest.mark.parametrize(("body", "says"), [
    ("""'{"phone": "{{ sender }}", "count": {{ when }}}'""", "inside a JSON string"),
    ("""'{"{{ when }}": 1}'""", "name of a JSON field"),
    ("""{"{{ when }}": x}""", "name of a JSON field"),
])
def test_a_json_template_with_a_placeholder_outside_a_string_is_a_load_error(tmp_path: Path, body: str,
                                                                             says: str) -> None:
    with pytest.raises(FlowLoadError) as failed:
        flows_of(tmp_path, callback=CALLBACK_REQUEST.replace("BODY", body))
    listing = failed.value.listing()
    assert "callback.yaml:" in listing and says in listing, listing


def studio_json_export(body: str) -> dict[str, Any]:
    export: dict[str, Any] = json.loads((STUDIO_FIXTURES / "make-http-request-json.json").read_text(encoding="utf-8"))
    for widget in export["states"]:
        if widget["name"] == "save":
            widget["properties"]["body"] = body
    return export


def import_studio(tmp_path: Path, export: dict[str, Any]) -> tuple[FlowSet, list[str]]:
    imported = studio.import_flow(export, studio.Options(name="studio_json", triggers=("GO",)))
    (tmp_path / "studio_json.yaml").write_text(imported.flow_yaml(), encoding="utf-8")
    return load_flows(write_flows(tmp_path, {})), imported.warnings


async def test_a_studio_json_body_keeps_its_structure_whatever_is_texted(tmp_path: Path) -> None:
    fetcher = RecordingFetcher()
    flows, _ = import_studio(tmp_path, studio_json_export(
        '{\n  "name": "{{widgets.ask.inbound.Body}}",\n  "from": "{{contact.channel.address}}"\n}'))
    await converse(flows, ["go", INJECTION], fetcher)
    assert [_sent_json(request) for request in fetcher.requests] == [{"name": INJECTION, "from": SENDER}]


async def test_a_studio_json_body_with_a_bare_placeholder_is_imported_as_a_string(tmp_path: Path) -> None:
    """Studio pastes text into its JSON; here a {{ … }} outside quotes would be structure a person
    could write, so the importer puts it in quotes (one string value) and says so."""
    fetcher = RecordingFetcher()
    flows, warnings = import_studio(tmp_path, studio_json_export(
        '{"name": "{{widgets.ask.inbound.Body}}", "age": {{ widgets.ask.inbound.Body }}, "n": [1, {{flow.x}}]}'))
    assert any("age" not in warning and "{{ widgets.ask.inbound.Body }}" in warning and "string" in warning
               for warning in warnings), warnings
    await converse(flows, ["go", '1, "admin": true'], fetcher)
    assert [_sent_json(request) for request in fetcher.requests] == [
        {"name": '1, "admin": true', "age": '1, "admin": true', "n": [1, ""]}]


def test_a_studio_json_body_with_a_tag_outside_its_strings_is_refused() -> None:
    export = studio_json_export('{"name": "x"{% if flow.x %}, "admin": true{% endif %}}')
    with pytest.raises(studio.UnsupportedWidgets) as refused:
        studio.import_flow(export, studio.Options(name="studio_json", triggers=("GO",)))
    assert "JSON" in str(refused.value)


# -- forms: already one field per template ---------------------------------------------------------

FORM_FLOW = """\
flow: form_post
triggers: [FORM]
start: ask
states:
  ask:
    say: "When?"
    replies:
      - pattern: '(?s).*'
        save: when
        go: post
  post:
    fetch:
      url: "{{ env.API }}/echo"
      method: POST
      form: {when: "{{ when }}", phone: "{{ sender }}"}
      save: echoed
    say: "Sent."
"""


async def test_texted_ampersand_stays_inside_its_form_field(tmp_path: Path) -> None:
    """Through the real HttpFetcher to a real server: the form body on the wire has two fields."""
    received: list[bytes] = []

    async def echo(request: Request) -> JSONResponse:
        received.append(await request.body())
        return JSONResponse({})

    with LoopbackServer(Starlette(routes=[Route("/echo", echo, methods=["POST"])]), name="form") as server:
        async with httpx.AsyncClient() as client:
            engine = Engine(flows_of(tmp_path, form=FORM_FLOW), HttpFetcher(client, server.url),
                            env={"API": server.url})
            conversation = Conversation(SENDER)
            for number, text in enumerate(["form", "5pm&admin=1&phone=+19998887777"]):
                inbound = Inbound(message_sid=f"SM{number:032x}", sender=SENDER, body=text)
                conversation = (await engine.step(conversation, Message(inbound), False)).conversation
    assert [parse_qs(body.decode(), keep_blank_values=True, strict_parsing=True) for body in received] == [
        {"when": ["5pm&admin=1&phone=+19998887777"], "phone": [SENDER]}]


# -- 15. \d in patterns ------------------------------------------------------------------------------

def test_a_digit_pattern_accepts_only_ascii_digits() -> None:
    six_digits = pattern_matcher(r"^\d{6}$")
    assert six_digits("", "١٢٣٤٥٦") is None  # Arabic-Indic digits
    assert six_digits("", "۱۲۳۴۵۶") is None  # Extended Arabic-Indic
    assert six_digits("", "123456") == "123456"
    assert six_digits("", "１２３４５６") == "123456"  # full-width digits are tidied into plain ones first
    assert pattern_matcher(r"^[\d-]+$")("", "12-٣") is None
    assert pattern_matcher(r"^\\d$")("", "\\d") == "\\d"  # an escaped backslash is no \d
    assert pattern_matcher(r"^(\w+)$")("", "Zoë") == "Zoë"  # letters stay Unicode
    assert not condition("regex", r"^\d+$")("٣", "")


# -- the property: whatever is texted, by whatever route, only values change -------------------------

def lookups(value: str, base: str = "{{ env.API }}", then: str | None = None) -> dict[str, Any]:
    """Three lookups reading ``value`` in the URL path and query, a query parameter, and a JSON or
    form body; ``then`` the state after them (none: the flow ends)."""
    url = f"{base}/v1/{value}/items?q={value}&fixed=1"
    last: dict[str, Any] = {"fetch": {"url": url, "save": "r3", "fallback": "FAILED"}}
    last.update({"go": then} if then else {"say": "done"})
    return {
        "json_post": {"fetch": {"url": url, "method": "POST", "params": {"p": value},
                                "json": {"value": value, "nested": {"list": [value, 1, True, None]}, "fixed": "x"},
                                "save": "r1", "fallback": "FAILED"}, "go": "form_put"},
        "form_put": {"fetch": {"url": url, "method": "PUT", "params": {"p": value},
                               "form": {"value": value, "fixed": "x"}, "save": "r2", "fallback": "FAILED"},
                     "go": "get"},
        "get": last,
    }


def ask(save: str | None, go: str) -> dict[str, Any]:
    reply: dict[str, Any] = {"pattern": "(?s).*", "go": go}
    if save is not None:
        reply["save"] = save
    return {"say": "?", "replies": [reply]}


def flow(name: str, trigger: str | None, start: str, states: dict[str, Any]) -> str:
    document: dict[str, Any] = {"flow": name, "start": start, "states": states}
    if trigger is not None:
        document["triggers"] = [trigger]
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


#: route: (the words that start it, whether the lookups see the raw message rather than the tidied reply)
ROUTES = {"route save": False, "route set": False, "route branch": False, "route dotted": False,
          "route flow": False, "route studio": False, "route enter": False, "route back": False,
          "route message": True}

ROUTE_FLOWS = {
    "via_save": flow("via_save", "ROUTE SAVE", "ask", {"ask": ask("answer", "json_post"),
                                                       **lookups("{{ answer }}")}),
    "via_set": flow("via_set", "ROUTE SET", "ask", {
        "ask": ask("answer", "copy"), "copy": {"set": {"copied": "{{ answer }}"}, "go": "json_post"},
        **lookups("{{ copied }}")}),
    "via_branch": flow("via_branch", "ROUTE BRANCH", "ask", {
        "ask": ask("answer", "decide"),
        "decide": {"branch": {"value": "{{ answer }}", "cases": [{"contains": "/", "go": "slashed"},
                                                                 {"is_blank": True, "go": "json_post"}],
                              "otherwise": "json_post"}},
        "slashed": {"set": {"answer": "{{ answer }}"}, "go": "json_post"},
        **lookups("{{ answer }}")}),
    "via_dotted": flow("via_dotted", "ROUTE DOTTED", "ask", {
        "ask": ask("widgets.ask.inbound.Body", "json_post"), **lookups("{{ widgets.ask.inbound.Body }}")}),
    "via_flow": flow("via_flow", "ROUTE FLOW", "ask", {"ask": ask("flow.x", "json_post"),
                                                       **lookups("{{ flow.x }}")}),
    "via_studio": flow("via_studio", "ROUTE STUDIO", "ask", {
        "ask": ask("widgets.ask.inbound.Body", "variables"),
        "variables": {"set": {"flow.variables.api": "{{ env.API }}",
                              "flow.variables.order": "{{widgets.ask.inbound.Body}}"}, "go": "json_post"},
        **lookups("{{flow.variables.order}}", base="{{flow.variables.api}}")}),
    "via_enter": flow("via_enter", "ROUTE ENTER", "ask", {
        "ask": ask("answer", "hand"), "hand": {"enter": {"flow": "child_lookups", "then": "back"}},
        "back": {"say": "back"}}),
    "child_lookups": flow("child_lookups", None, "json_post", lookups("{{ answer }}")),
    "via_back": flow("via_back", "ROUTE BACK", "hand", {
        "hand": {"enter": {"flow": "child_asker", "then": "json_post"}},
        **lookups("{{ flow.variables.answer }}")}),
    "child_asker": flow("child_asker", None, "ask", {"ask": ask("flow.variables.answer", "end")}),
    "via_message": flow("via_message", "ROUTE MESSAGE", "ask", {"ask": ask(None, "json_post"),
                                                                **lookups("{{ message }}")}),
}

SPECIAL = ["../", "..", ".", "/", "?", "#", "%2F", "%", "&", "=", "+", '"', "'", "\\", "\n", "\r\n", "\t", "\x00",
           "\u202e", "\u200f", "\u2066", "🙂", "👩‍👩‍👧", " ", ";", ":", "@", "//evil.example/", "{{ env.API }}",
           "{% raw %}", '", "admin": true, "x": "', "&admin=1", "?x=1#", "http://evil.example"]
TEXTS = st.one_of(
    st.text(max_size=2000),
    st.lists(st.one_of(st.sampled_from(SPECIAL), st.text(max_size=4)), max_size=60).map("".join),
    st.tuples(st.sampled_from(SPECIAL), st.integers(1, 2000)).map(lambda repeated: (repeated[0] * repeated[1])[:2000]),
)


@dataclass
class Seen:
    """One request as it left the engine or arrived on the wire, in the parts the property compares."""

    method: str
    host: str
    path: str  # raw, percent-encoded
    query: str  # raw
    params: dict[str, str] | None = None  # given apart from the URL (the engine's view only)
    json: Any = None
    form: list[tuple[str, str]] | None = None


def assert_only_values_change(seen: list[Seen], host: str, value: str, *, wire: bool) -> None:
    assert [request.method for request in seen] == ["POST", "PUT", "GET"]
    for request in seen:
        assert request.host == host
        segments = request.path.split("/")
        assert [segments[0], segments[1], *segments[3:]] == ["", "v1", "items"], request.path
        assert unquote(segments[2], errors="strict") == value
        keys = ["q", "fixed", "p"] if wire and request.method != "GET" else ["q", "fixed"]
        assert [pair.partition("=")[0] for pair in request.query.split("&")] == keys, request.query
        expected = [("q", value), ("fixed", "1"), ("p", value)][:len(keys)]
        assert parse_qsl(request.query, keep_blank_values=True, errors="strict") == expected
        if not wire and request.method != "GET":
            assert request.params == {"p": value}
    assert seen[0].json == {"value": value, "nested": {"list": [value, 1, True, None]}, "fixed": "x"}
    assert seen[1].form == [("value", value), ("fixed", "x")]


def expected_value(route: str, text: str) -> str:
    return text if ROUTES[route] else trim(text)


def texted(text: str) -> bool:
    """Whether ``text`` reaches the flow as an answer (not a compliance word, a revocation in the
    sender's own words, or a route's trigger)."""
    rules = default_consent_rules()
    revocation = rules.revocation(text)
    return rules.keyword(text) is None and not (revocation and revocation.clear) and normalise(text) not in ROUTES


class Routes:
    """The route flows, loaded once (and short in a failing example's report)."""

    def __init__(self, flows: FlowSet) -> None:
        self.flows = flows

    def __repr__(self) -> str:
        return "Routes(ROUTE_FLOWS)"


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> Routes:
    folder = tmp_path_factory.mktemp("routes")
    return Routes(load_flows(write_flows(folder, {f"{name}.yaml": text for name, text in ROUTE_FLOWS.items()})))


def test_route_flows_load_without_errors(routes: Routes) -> None:
    assert set(routes.flows.flows) == set(ROUTE_FLOWS)


async def drive(flows: FlowSet, fetcher: Any, env: dict[str, str], route: str, text: str) -> list[str]:
    engine = Engine(flows, fetcher, env=env)
    conversation = Conversation(SENDER)
    replies: list[str] = []
    for number, body in enumerate([route, text]):
        inbound = Inbound(message_sid=f"SM{number:032x}", sender=SENDER, body=body, to="+15550009999")
        outcome = await engine.step(conversation, Message(inbound), False)
        conversation = outcome.conversation
        replies += outcome.replies
    return replies


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS)
def test_texted_text_only_ever_changes_values_in_a_lookup(routes: Routes, text: str) -> None:
    """Through the real engine and a recording Fetcher, by every route."""
    assume(texted(text))
    for route in ROUTES:
        fetcher = RecordingFetcher()
        replies = asyncio.run(drive(routes.flows, fetcher, {"API": "https://api.example.com"}, route, text))
        assert "FAILED" not in replies, (route, replies)
        seen = []
        for request in fetcher.requests:
            url = httpx.URL(request["url"])  # as the HTTP client will read it (dot segments removed)
            form = request.get("form")
            seen.append(Seen(request.get("method", "GET"), url.host, url.raw_path.decode("ascii").partition("?")[0],
                             url.query.decode("ascii"), request.get("params"), request.get("json_body"),
                             list(form.items()) if form is not None else None))
        assert_only_values_change(seen, "api.example.com", expected_value(route, text), wire=False)


class Wire:
    """A real HTTP server's view of each request: raw path, raw query, body."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.url = ""

    def __repr__(self) -> str:
        return f"Wire({self.url})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = dict(scope["headers"])
        kind = headers.get(b"content-type", b"").decode()
        self.seen.append(Seen(
            scope["method"], headers[b"host"].decode().partition(":")[0], scope["raw_path"].decode("ascii"),
            scope["query_string"].decode("ascii"),
            json=json.loads(body) if kind == "application/json" else None,
            form=parse_qsl(body.decode("ascii"), keep_blank_values=True, errors="strict")
            if kind == "application/x-www-form-urlencoded" else None))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})


@pytest.fixture(scope="module")
def wire() -> Iterator[Wire]:
    recorder = Wire()
    with LoopbackServer(recorder, name="wire") as server:
        recorder.url = server.url
        yield recorder


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS)
def test_texted_text_only_ever_changes_values_on_the_wire(routes: Routes, wire: Wire, text: str) -> None:
    """The same, through the real HttpFetcher to a real HTTP server on 127.0.0.1."""
    assume(texted(text))

    async def every_route() -> None:
        async with httpx.AsyncClient() as client:
            for route in ROUTES:
                wire.seen.clear()
                replies = await drive(routes.flows, HttpFetcher(client, wire.url), {"API": wire.url}, route, text)
                assert "FAILED" not in replies, (route, replies)
                assert_only_values_change(wire.seen, "127.0.0.1", expected_value(route, text), wire=True)

    asyncio.run(every_route())
