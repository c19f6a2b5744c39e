"""The console's Flows pages and editor (bot/console/flows.py, flow_edit.py), over HTTP against the
real app: a copy of flows/ as FLOWS_DIR, a SQLite store, people put in flows by signed webhooks."""

from __future__ import annotations

import html
import re
import shutil
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from bot.app import create_app
from bot.console.security import CSRF_COOKIE
from bot.flows.loader import load_flows
from bot.settings import Settings
from tests.conftest import SHIPPED_FLOWS
from tests.signed_webhooks import AUTH_TOKEN, signed_request, twilio_form
from tests.test_console_security import PASSWORD, log_in

SIGNUP_RENAMED = (SHIPPED_FLOWS / "signup.yaml").read_text(encoding="utf-8").replace("ask_name", "ask_first_name")


@dataclass
class Console:
    client: TestClient
    flows: Path  # FLOWS_DIR: a copy of flows/

    @property
    def csrf(self) -> str:
        token = self.client.cookies.get(CSRF_COOKIE)
        assert token is not None
        return token

    def text(self, body: str, sender: str) -> None:
        """A person texts the bot, through the signed webhook."""
        content, headers = signed_request("http://testserver/sms", twilio_form(body, sender))
        assert self.client.post("/sms", content=content, headers=headers).status_code == 200

    def lint(self, flow: str, text: str, csrf: bool = True) -> httpx.Response:
        return self.client.post(f"/console/flows/{flow}/lint", json={"text": text},
                                headers={"X-CSRF-Token": self.csrf} if csrf else {})

    def save(self, flow: str, text: str, *, base: str | None = None, confirm: bool = False,
             csrf: bool = True) -> httpx.Response:
        if base is None:  # what the editor page says the edit started from
            base = editor_base(self.client.get(f"/console/flows/{flow}/edit").text)
        form = {"text": text, "base": base, **({"confirm": "yes"} if confirm else {}),
                **({"csrf": self.csrf} if csrf else {})}
        return self.client.post(f"/console/flows/{flow}/save", data=form)


def editor_base(page: str) -> str:
    found = re.search(r'name="base" value="([^"]*)"', page)
    assert found is not None, page
    return found.group(1)


def textarea(page: str) -> str:
    found = re.search(r'<textarea[^>]*>\n(.*?)</textarea>', page, re.DOTALL)
    assert found is not None, page
    return html.unescape(found.group(1))


def visible(page: str) -> str:
    """The page's text as read: tags gone, entities decoded, spaces collapsed."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def open_console(tmp_path: Path, **changes: object) -> Iterator[Console]:
    flows = tmp_path / "flows"
    if not flows.exists():
        shutil.copytree(SHIPPED_FLOWS, flows)
    settings = Settings(twilio_auth_token=AUTH_TOKEN, store_url=f"sqlite:///{tmp_path / 'bot.db'}",
                        flows_dir=str(flows), admin_password=PASSWORD,
                        **{"reload_flows": False, **changes})  # type: ignore[arg-type]
    with TestClient(create_app(settings, load_flows(flows)), base_url="http://testserver",
                    follow_redirects=False) as client:
        assert log_in(client).status_code == 303  # type: ignore[attr-defined]
        yield Console(client, flows)


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    yield from open_console(tmp_path)


# -- the list ------------------------------------------------------------------------------------

def test_the_list_shows_each_flow_with_its_triggers_lint_and_who_is_in_it(console: Console) -> None:
    for sender in ("+15550000001", "+15550000002"):
        console.text("JOIN", sender)
    console.text("STATUS", "+15550000003")
    long_text = "x" * 400  # three segments: lint warns
    signup = console.flows / "signup.yaml"
    signup.write_text(signup.read_text().replace("Reply STOP at any time to opt out.", long_text))
    (console.flows / "broken.yaml").write_text("flow: [oops\n")

    assert console.client.get("/console/").headers["location"] == "/console/flows"  # the first page
    page = console.client.get("/console/flows")
    assert page.status_code == 200
    row = re.search(r'<tr id="flow-signup">(.*?)</tr>', page.text, re.DOTALL)
    assert row is not None
    shown = visible(row.group(1))
    assert 'href="/console/flows/signup"' in row.group(1)
    assert "JOIN" in shown and "SUBSCRIBE ME" in shown
    assert "0 errors, 1 warning" in shown and "flows/signup.yaml:31:" in shown and "3 SMS segments" in shown
    assert re.search(r"<strong>2</strong>", row.group(1)) and "ask_name 2" in shown
    status_row = re.search(r'<tr id="flow-order_status">(.*?)</tr>', page.text, re.DOTALL)
    assert status_row is not None and "flows/status.yaml" in status_row.group(1)  # by name, whatever its file
    assert "ask_number 1" in visible(status_row.group(1))
    assert "none: started by a broadcast" in visible(page.text.split('id="flow-reminder"')[1])
    assert "Other files" in page.text and "flows/broken.yaml:1:" in visible(page.text)


def test_an_unknown_or_path_like_flow_name_is_not_found(console: Console) -> None:
    for path in ("/console/flows/nope", "/console/flows/status",  # a file's name, not a flow's
                 "/console/flows/..%2Fflows%2Fsignup", "/console/flows/signup.yaml", "/console/flows/%2e%2e",
                 "/console/flows/nope/edit/x", "/console/flows/1abc/edit"):
        assert console.client.get(path).status_code == 404, path


def test_a_new_flow_is_started_by_its_name(console: Console) -> None:
    answer = console.client.get("/console/flows", params={"new": "promo"})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/flows/promo/edit"
    refused = console.client.get("/console/flows", params={"new": "../promo"})
    assert refused.status_code == 200 and "is not a flow name" in visible(refused.text)


# -- a flow's page -------------------------------------------------------------------------------

TRICKY_SAY = 'Hi </textarea><script>alert(1)</script> {{ sender }} & {% if sender %}you{% endif %}'


def test_the_flow_page_draws_the_diagram_and_shows_the_yaml_as_text(console: Console) -> None:
    signup = console.flows / "signup.yaml"
    signup.write_text(signup.read_text().replace(  # the state's text, not its translation row's
        '"Welcome to Acme Orders updates! What\'s your first name?"', "'" + TRICKY_SAY + "'", 1))
    page = console.client.get("/console/flows/signup")
    assert page.status_code == 200
    assert '<script src="/console/static/vendor/mermaid/mermaid.min.js"></script>' in page.text
    assert '<script src="/console/static/console/diagram.js"></script>' in page.text
    diagram = re.search(r'<pre class="mermaid" id="diagram">(.*?)</pre>', page.text, re.DOTALL)
    assert diagram is not None and "stateDiagram-v2" in diagram.group(1) and "n_ask_name" in diagram.group(1)
    assert "<script>alert" not in page.text and "</textarea><script>" not in page.text  # only ever text
    assert "&lt;/textarea&gt;&lt;script&gt;alert(1)&lt;/script&gt; {{ sender }} &amp; {% if sender %}" in page.text
    assert re.findall(r"<script[^>]*>", page.text) == [  # our files only: no inline script
        '<script src="/console/static/vendor/mermaid/mermaid.min.js">',
        '<script src="/console/static/console/diagram.js">', '<script src="/console/static/console/flow_page.js">']
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    for path in ("/console/static/vendor/mermaid/mermaid.min.js", "/console/static/console/diagram.js",
                 "/console/static/console/flow_page.js", "/console/static/console/flows.css"):
        assert console.client.get(path).status_code == 200, path
    editor = console.client.get("/console/flows/signup/edit")
    assert "</textarea><script>" not in editor.text and textarea(editor.text) == signup.read_text()


def test_each_message_shows_its_segments_and_what_forces_ucs2(console: Console) -> None:
    signup = console.flows / "signup.yaml"
    text = signup.read_text().replace("Reply STOP at any time to opt out.", "Reply STOP at any time ’cause you can.")
    signup.write_text(text.replace("Please reply with just your first name (letters only).", "a" * 200))
    page = visible(console.client.get("/console/flows/signup").text)
    assert "Reply STOP at any time ’cause you can. [1 segment, UCS-2] UCS-2 because of '’' (U+2019 RIGHT SINGLE " \
           "QUOTATION MARK)" in page
    assert "a" * 200 + " [2 segments, GSM-7]" in page
    assert "Thanks, {{ name }}! Sign you up for shipping updates? Reply YES or NO. [1 segment, GSM-7] each " \
           "{{ value }} counted as 10 characters" in page


def test_the_run_button_runs_the_flows_tests_and_shows_the_report(console: Console) -> None:
    page = console.client.get("/console/flows/signup")
    shown = visible(page.text)
    assert "flows/tests/signup.yaml: signs someone up after confirming their name" in shown
    assert "flows/tests/status.yaml" not in shown  # another flow's tests
    (console.flows / "tests" / "wrong.yaml").write_text(
        "tests:\n  - name: expects the wrong welcome\n    turns:\n      - send: JOIN\n"
        "        expect: \"Hello there\"\n")
    ran = console.client.post("/console/flows/signup/tests", data={"csrf": console.csrf})
    assert ran.status_code == 200
    results = re.search(r'<section id="test-results" class="failed">(.*?)</section>', ran.text, re.DOTALL)
    assert results is not None
    report = visible(results.group(1))
    assert re.search(r"\d+ passed, 1 failed", report)
    assert "ok flows/tests/signup.yaml: signs someone up after confirming their name" in report
    assert "FAIL flows/tests/wrong.yaml: expects the wrong welcome" in report
    assert "-< Hello there +< Welcome to Acme Orders updates! What's your first name?" in report
    assert console.client.post("/console/flows/signup/tests", data={}).status_code == 403  # CSRF


# -- the editor ----------------------------------------------------------------------------------

def test_the_lint_endpoint_answers_findings_with_line_and_col_and_the_diagram(console: Console) -> None:
    good = console.lint("signup", SIGNUP_RENAMED)
    assert good.status_code == 200
    body = good.json()
    assert body["blocking"] == 0 and "n_ask_first_name" in body["mermaid"]
    broken = SIGNUP_RENAMED.replace("go: ask_first_name", "go: ask_nam")
    answer = console.lint("signup", broken).json()
    assert answer["mermaid"] is None and answer["blocking"] == 1
    [problem] = [p for p in answer["problems"] if p["severity"] == "error"]
    line = broken.splitlines().index("        go: ask_nam") + 1
    assert (problem["file"], problem["line"], problem["col"], problem["here"]) == ("flows/signup.yaml", line, 13, True)
    assert "unknown state 'ask_nam'" in problem["message"] and "ask_first_name" in problem["hint"]
    yaml_error = console.lint("signup", "flow: signup\nstates: [\n").json()
    assert yaml_error["blocking"] >= 1 and yaml_error["problems"][0]["line"] >= 2
    assert console.lint("signup", SIGNUP_RENAMED, csrf=False).status_code == 403
    not_json = console.client.post("/console/flows/signup/lint", content=b"text=1",
                                   headers={"X-CSRF-Token": console.csrf})
    assert not_json.status_code == 400
    # Checked with the other flows, as a reload would: a trigger another flow has is an error, found in
    # the other file; an error the edit causes elsewhere blocks saving as one in its own file does.
    clash = console.lint("signup", SIGNUP_RENAMED.replace("triggers: [JOIN,", "triggers: [STATUS, JOIN,")).json()
    [elsewhere] = [p for p in clash["problems"] if p["severity"] == "error"]  # (its Spanish row is stale now)
    assert (elsewhere["file"], elsewhere["line"], elsewhere["here"], elsewhere["blocking"]) == (
        "flows/status.yaml", 3, False, True)
    assert "trigger 'STATUS' is also a trigger of flow 'signup'" in elsewhere["message"] and clash["blocking"] == 1


def test_saving_writes_the_flows_own_file_atomically(console: Console) -> None:
    status = console.flows / "status.yaml"  # flow order_status lives in status.yaml
    status.chmod(0o640)
    before = {path.name: path.read_text() for path in console.flows.glob("*.yaml")}
    edited = before["status.yaml"].replace("What's your order number?", "Your order number, please?")
    answer = console.save("order_status", edited.replace("\n", "\r\n"))  # as a browser sends a textarea
    assert answer.status_code == 303 and answer.headers["location"] == "/console/flows/order_status?saved=1"
    assert status.read_text() == edited  # line ends as git keeps them
    assert stat.S_IMODE(status.stat().st_mode) == 0o640
    assert not (console.flows / "order_status.yaml").exists()
    assert {path.name for path in console.flows.iterdir()} == {*before, "tests"}  # no temporary file left
    assert all((console.flows / name).read_text() == text for name, text in before.items() if name != "status.yaml")
    assert load_flows(console.flows).flows["order_status"].states["ask_number"] is not None
    page = console.client.get(answer.headers["location"])
    assert "Saved flows/status.yaml." in visible(page.text) and 'data-saved="1"' in page.text
    state = console.client.get("/console/flows/order_status/status").json()
    assert state["current"] is False and state["reload"] is False  # RELOAD_FLOWS is off in this test
    assert "RELOAD_FLOWS is off" in visible(page.text)


def test_saving_is_refused_with_errors_and_the_text_is_kept(console: Console) -> None:
    signup = console.flows / "signup.yaml"
    before = signup.read_text()
    broken = before.replace("go: confirm", "go: confrim") + "# </textarea><script>alert(1)</script>\n"
    answer = console.save("signup", broken)
    assert answer.status_code == 422 and signup.read_text() == before
    shown = visible(answer.text)
    assert "Not saved: 1 error to fix first" in shown and "unknown state 'confrim'" in shown
    assert textarea(answer.text) == broken and "<script>alert" not in answer.text


def test_saving_is_refused_when_the_name_changes(console: Console) -> None:
    signup = console.flows / "signup.yaml"
    before = signup.read_text()
    answer = console.save("signup", before.replace("flow: signup", "flow: sign_up"))
    assert answer.status_code == 422 and signup.read_text() == before
    assert "this is flow 'signup', so its flow: must stay 'signup'" in visible(answer.text)
    assert not (console.flows / "sign_up.yaml").exists()


def test_a_path_like_name_never_reaches_the_disk(console: Console, tmp_path: Path) -> None:
    text = SIGNUP_RENAMED.replace("flow: signup", "flow: x")
    for name in ("..%2Fx", "..%2F..%2Fx", "x.yaml", "%2Ftmp%2Fx", "x%00", ".x"):
        answer = console.client.post(f"/console/flows/{name}/save", data={"text": text, "base": "",
                                                                          "csrf": console.csrf})
        assert answer.status_code == 404, name
    assert console.client.post("/console/flows/../x/save", data={"text": text, "csrf": console.csrf}).status_code == 404
    assert sorted(path.name for path in tmp_path.rglob("x*")) == []


def test_saving_needs_the_csrf_token(console: Console) -> None:
    signup = console.flows / "signup.yaml"
    before = signup.read_text()
    assert console.save("signup", SIGNUP_RENAMED, csrf=False).status_code == 403
    assert console.save("signup", SIGNUP_RENAMED, csrf=False, confirm=True).status_code == 403
    assert signup.read_text() == before


def test_a_file_changed_on_disk_meanwhile_is_not_overwritten(console: Console) -> None:
    signup = console.flows / "signup.yaml"
    base = editor_base(console.client.get("/console/flows/signup/edit").text)
    signup.write_text(signup.read_text().replace("Welcome", "Hello"))  # someone's git pull
    answer = console.save("signup", SIGNUP_RENAMED.replace("Welcome", "Hi"), base=base, confirm=True)
    assert answer.status_code == 409 and "changed on disk since you opened it" in visible(answer.text)
    assert "Hello" in signup.read_text()


def test_the_impact_on_people_waiting_is_shown_and_must_be_confirmed(console: Console) -> None:
    for sender in ("+15550000001", "+15550000002", "+15550000003"):
        console.text("JOIN", sender)  # each waits in signup's ask_name
    console.text("STATUS", "+15550000004")
    answer = console.lint("signup", SIGNUP_RENAMED).json()
    [effect] = answer["impact"]
    assert effect["state"] == "ask_name" and effect["people"] == 3
    assert effect["message"].startswith("3 conversations wait in state 'ask_name', which this change removes: at "
                                        "their next message they get the reset text (\"Sorry, this service was "
                                        "just updated")
    editor = console.client.get("/console/flows/signup/edit")
    assert 'id="confirm-box" class="confirm" hidden>' in editor.text  # the file as it is strands no one
    assert "No one waiting in the flow is stranded" in editor.text

    signup = console.flows / "signup.yaml"
    before = signup.read_text()
    refused = console.save("signup", SIGNUP_RENAMED)
    assert refused.status_code == 409 and signup.read_text() == before
    shown = visible(refused.text)
    assert "Not saved yet: this change affects people in the flow now" in shown
    assert 'id="confirm-box" class="confirm">' in refused.text  # the box to tick, shown
    assert "3 conversations wait in state 'ask_name', which this change removes" in shown
    assert textarea(refused.text) == SIGNUP_RENAMED

    saved = console.save("signup", SIGNUP_RENAMED, confirm=True)
    assert saved.status_code == 303 and signup.read_text() == SIGNUP_RENAMED


def test_a_state_that_stops_waiting_is_an_impact_too(console: Console) -> None:
    console.text("JOIN", "+15550000001")
    console.text("Ada", "+15550000001")  # now waits in confirm
    text = (console.flows / "signup.yaml").read_text()
    start = text.index("  confirm:")
    end = text.index("  done:")
    no_wait = text[:start] + "  confirm:\n    say: \"Thanks, {{ name }}!\"\n    go: done\n\n" + text[end:]
    [effect] = console.lint("signup", no_wait).json()["impact"]
    assert effect["message"].startswith("1 conversation waits in state 'confirm', which no longer waits for a "
                                        "reply: every message they send gets its text again until the flow "
                                        "expires (1h after their last message)")


def test_a_new_flow_is_written_to_its_own_file(console: Console) -> None:
    editor = console.client.get("/console/flows/promo/edit")
    assert editor.status_code == 200 and "New flow promo" in visible(editor.text)
    assert editor_base(editor.text) == "" and textarea(editor.text).startswith("flow: promo\n")
    saved = console.save("promo", textarea(editor.text))
    assert saved.status_code == 303, visible(saved.text)
    assert load_flows(console.flows).flows["promo"].file == str(console.flows / "promo.yaml")
    assert 'href="/console/flows/promo"' in console.client.get("/console/flows").text
    assert console.save("promo", textarea(editor.text), base="").status_code == 409  # it exists now


def test_a_name_whose_file_holds_another_flow_or_the_program_cannot_be_edited(console: Console) -> None:
    taken = console.client.get("/console/flows/status/edit")
    assert taken.status_code == 409 and "status.yaml holds flow 'order_status'" in visible(taken.text)
    program = console.client.get("/console/flows/program/edit")
    assert program.status_code == 409 and "program.yaml is the program file" in visible(program.text)
    before = (console.flows / "program.yaml").read_text()
    answer = console.save("program", "flow: program\n", base="")
    assert answer.status_code == 409 and (console.flows / "program.yaml").read_text() == before


def test_a_saved_flow_is_picked_up_by_the_hot_reload(tmp_path: Path) -> None:
    for console in open_console(tmp_path, reload_flows=True):
        running = console.client.get("/console/flows/signup/status").json()
        assert running["current"] is True
        time.sleep(0.5)  # the watcher is up
        assert console.save("signup", SIGNUP_RENAMED.replace("Welcome", "Hi")).status_code == 303
        deadline = time.monotonic() + 10
        while not (state := console.client.get("/console/flows/signup/status").json())["current"]:
            assert time.monotonic() < deadline, state
            time.sleep(0.1)
        assert state["running"] != running["running"]
        content, headers = signed_request("http://testserver/sms", twilio_form("JOIN", "+15550000008"))
        assert "Hi to Acme Orders updates!" in console.client.post("/sms", content=content, headers=headers).text
        (console.flows / "signup.yaml").write_text(SIGNUP_RENAMED.replace("go: confirm", "go: nowhere"))  # by hand
        deadline = time.monotonic() + 10
        while not (state := console.client.get("/console/flows/signup/status").json())["refused"]:
            assert time.monotonic() < deadline, state
            time.sleep(0.1)
        assert any("unknown state 'nowhere'" in line for line in state["refused"])
        shown = visible(console.client.get("/console/flows").text)
        assert "The bot refused to reload these files" in shown and "unknown state 'nowhere'" in shown


def test_a_flow_with_errors_shows_them_instead_of_its_diagram(console: Console) -> None:
    signup = console.flows / "signup.yaml"
    signup.write_text(signup.read_text().replace("go: confirm", "go: confrim"))
    row = visible(console.client.get("/console/flows").text.split('id="flow-signup"')[1].split("</tr>")[0])
    assert "1 error, 0 warnings" in row and "flows/signup.yaml:13:13 error unknown state 'confrim'" in row
    page = console.client.get("/console/flows/signup")
    assert page.status_code == 200 and 'id="diagram"' not in page.text and "mermaid.min.js" not in page.text
    assert "No diagram while the flow has errors." in visible(page.text)
    ran = visible(console.client.post("/console/flows/signup/tests", data={"csrf": console.csrf}).text)
    assert "The tests cannot run: the flow files have errors" in ran and "unknown state 'confrim'" in ran
