"""``python -m bot <command>`` as ops staff run it: real subprocesses, real exit codes, real output.

Every command runs with the bot's settings removed from the inherited environment (so what a
developer exported in their shell cannot change the outcome) and with PYTHONPATH pointing at the
repository, so commands also work from a temporary working directory.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.servers import free_port
from bot.flows.loader import load_flows
from tests.conftest import ROOT, SHIPPED_FLOWS, ServerProcess, write_flows
from tests.signed_webhooks import AUTH_TOKEN

#: Everything bot.settings (and the shipped flows, via ORDERS_API) read from the environment.
SETTING_NAMES = ("TWILIO_AUTH_TOKEN", "PUBLIC_URL", "TRUST_PROXY", "STORE_URL", "FLOWS_DIR", "HOST", "PORT",
                 "DEV_MODE", "MAX_BODY_BYTES", "LOG_LEVEL", "ORDERS_API", "RELOAD_FLOWS")

FINDING_LINE = re.compile(r"^.+:\d+:\d+: (error|warning): .+")
SHIPPED = load_flows(SHIPPED_FLOWS)
ASK_NUMBER = "What's your order number? (6 digits, like 123456)"


def clean_env(**settings: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in SETTING_NAMES}
    env["PYTHONPATH"] = str(ROOT)
    env.update(settings)
    return env


def bot(*args: str | Path, cwd: Path = ROOT, stdin: str = "", timeout: float = 10,
        **settings: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m bot ARGS`` and return what it did (stdin is always given, never a tty)."""
    return subprocess.run([sys.executable, "-m", "bot", *map(str, args)], cwd=cwd, input=stdin,
                          capture_output=True, text=True, encoding="utf-8", timeout=timeout,
                          env=clean_env(**settings))


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}--- stderr\n{result.stderr}"


# -- --help -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("command", "described"), [
    ("lint", "file:line:col: severity: message"),
    ("chat", "segment count and encoding"),
    ("test", "conversation tests"),
    ("graph", "stateDiagram-v2"),
    ("schema", "JSON Schema"),
    ("webhook", "TWILIO_AUTH_TOKEN"),
])
def test_each_command_has_help(command: str, described: str) -> None:
    result = bot(command, "--help")
    assert result.returncode == 0, output_of(result)
    assert result.stdout.startswith(f"usage: python -m bot {command}")
    assert described in " ".join(result.stdout.split()), result.stdout  # argparse wraps lines


def test_top_level_help_lists_every_command() -> None:
    result = bot("--help")
    assert result.returncode == 0, output_of(result)
    for command in ("lint", "chat", "test", "graph", "schema", "webhook"):
        assert re.search(rf"^\s+{command}\s+\S", result.stdout, re.MULTILINE), result.stdout


def test_no_command_is_a_usage_error() -> None:
    result = bot()
    assert result.returncode == 2
    assert "usage: python -m bot" in result.stderr


# -- lint -------------------------------------------------------------------------------------

def test_lint_shipped_flows_is_clean() -> None:
    for args in ((), ("flows",)):  # default FLOWS_DIR (flows/ in the working directory), and named
        result = bot("lint", *args)
        assert result.returncode == 0, output_of(result)
        assert result.stdout == ""
        assert "0 errors, 0 warnings" in result.stderr


BROKEN = """\
flow: broken
triggers: [BROKEN]
expires_after: soon
start: ask
states:
  ask:
    say: "Yes or no?"
    replies:
      - answer: yes
        go: donne
    otherwize: "Please answer yes or no."
"""


def test_lint_broken_file_exits_1_with_located_findings(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN, encoding="utf-8")
    result = bot("lint", path)
    assert result.returncode == 1, output_of(result)
    lines = result.stdout.splitlines()
    assert len(lines) >= 2, output_of(result)
    for line in lines:
        assert FINDING_LINE.match(line), line
    assert f"{path}:3:16: error: 'soon' is not a duration" in result.stdout
    assert f"{path}:11:5: error: unknown field 'otherwize' (did you mean 'otherwise'?)" in result.stdout
    assert re.search(r"\d+ errors?, \d+ warnings?", result.stderr)


def test_lint_missing_path_is_an_error(tmp_path: Path) -> None:
    result = bot("lint", tmp_path / "nope.yaml")
    assert result.returncode == 1, output_of(result)
    assert result.stdout == f"{tmp_path / 'nope.yaml'}:1:1: error: no such file or folder\n"


TWO_SEGMENTS = "Thanks for texting Acme Orders. " * 6  # 192 GSM-7 characters: 2 segments
LONG_SAY = f"""\
flow: wordy
triggers: [WORDY]
start: greet
states:
  greet:
    say: "{TWO_SEGMENTS.strip()}"
"""


def test_lint_max_segments(tmp_path: Path) -> None:
    path = tmp_path / "wordy.yaml"
    path.write_text(LONG_SAY, encoding="utf-8")
    assert bot("lint", path).stdout == ""  # 2 segments are within the default limit of 2
    result = bot("lint", "--max-segments", "1", path)
    assert result.returncode == 0, output_of(result)  # warnings only
    [line] = result.stdout.splitlines()
    assert FINDING_LINE.match(line)
    assert line.startswith(f"{path}:6:10: warning: this text costs 2 SMS segments (GSM-7, 191 units); "
                           "the limit is 1"), line
    assert "0 errors, 1 warning" in result.stderr


# -- chat -------------------------------------------------------------------------------------

def test_chat_walks_status_and_join() -> None:
    result = bot("chat", stdin="STATUS\n123456\nJOIN\nAda\nyes\n")
    assert result.returncode == 0, output_of(result)
    out = result.stdout
    assert f"you> STATUS\nbot> {ASK_NUMBER}   [1 segment, GSM-7]\n" in out
    # the demo order service answers: 1+2+3+4+5+6 = 21 -> "shipped"
    assert "you> 123456\nbot> Order 123456 is shipped. It's on its way and should arrive in 2-3 days." \
           "   [1 segment, GSM-7]\n" in out
    assert "bot> Welcome to Acme Orders updates! What's your first name?   [1 segment, GSM-7]\n" in out
    assert "bot> Thanks, Ada! Sign you up for shipping updates? Reply YES or NO.   [1 segment, GSM-7]\n" in out
    assert "bot> You're signed up, Ada! We'll text you when your orders ship.   [1 segment, GSM-7]\n" in out
    assert "bot> Reply STOP at any time to opt out.   [1 segment, GSM-7]\n" in out
    assert "·" not in out  # no trace without --trace


def test_chat_trace_shows_states_and_rules() -> None:
    result = bot("chat", "--trace", "--from", "+15557654321", stdin="STATUS\n123456\n")
    assert result.returncode == 0, output_of(result)
    out = result.stdout
    assert re.search(r"· idle -> order_status:ask_number  \(trigger STATUS\)$", out, re.MULTILINE), out
    assert "· order_status:ask_number -> order_status:lookup  (/^\\d{6}$/)" in out
    assert "· order_status:lookup -> order_status:end  (next)" in out


def test_chat_stop_then_silence_until_start() -> None:
    result = bot("chat", "--flows", SHIPPED_FLOWS, stdin="JOIN\nSTOP\nSTATUS\nAda\nSTART\nSTATUS\n")
    assert result.returncode == 0, output_of(result)
    replies = [line for line in result.stdout.splitlines() if line.startswith("bot> ")]
    assert replies[1] == f"bot> {SHIPPED.program.opt_out}   [1 segment, GSM-7]"
    assert replies[2:4] == ["bot> (no reply)", "bot> (no reply)"]
    assert replies[4] == f"bot> {SHIPPED.program.opt_in}   [1 segment, GSM-7]"
    assert replies[5] == f"bot> {ASK_NUMBER}   [1 segment, GSM-7]"
    assert len(replies) == 6


NUDGING = """\
flow: feedback
triggers: [RATE]
start: ask
states:
  ask:
    say: "How did we do? Reply 1-5."
    replies:
      - number: {min: 1, max: 5}
        save: rating
        go: thanks
    otherwise: "Please reply with a number from 1 to 5."
    timeout: {after: 1h, go: nudge}
  nudge:
    say: "Still happy to hear from you: reply 1-5 any time."
    notify: {to: "+15550000000", say: "{{ sender }} did not rate us."}
  thanks:
    say: "Thanks for the {{ rating }}!"
"""


def test_chat_wait_fires_the_timeouts_that_come_due(tmp_path: Path) -> None:
    flows = write_flows(tmp_path / "flows", {"feedback.yaml": NUDGING}, program=SHIPPED_FLOWS.joinpath(
        "program.yaml").read_text(encoding="utf-8"))
    result = bot("chat", "--trace", "--flows", flows, stdin="rate\n/wait 59m\n/wait 1h30m\nrate\n")
    assert result.returncode == 0, output_of(result)
    assert result.stdout.splitlines() == [
        "you> rate",
        "bot> How did we do? Reply 1-5.   [1 segment, GSM-7]",
        "     · idle -> feedback:ask  (trigger RATE)",
        "you> /wait 59m",
        "bot> (no reply: nothing came due in 59m)",
        "you> /wait 1h30m",
        "bot> Still happy to hear from you: reply 1-5 any time.   [1 segment, GSM-7]   (after 1m)",
        "notify> +15550000000: +15551234567 did not rate us.",
        "     · feedback:ask -> feedback:nudge  (no reply in time)",
        "you> rate",
        "bot> How did we do? Reply 1-5.   [1 segment, GSM-7]",
        "     · idle -> feedback:ask  (trigger RATE)",
    ]


def test_chat_explains_a_bad_wait_and_lists_its_commands() -> None:
    result = bot("chat", stdin="/wait\n/wait soon\n/help\n/wiat 1h\n//status\n")
    assert result.returncode == 0, output_of(result)
    out = result.stdout
    assert "you> /wait\n/wait needs a duration, e.g. /wait 1h, /wait 90s or /wait 1h30m\n" in out
    assert "you> /wait soon\n/wait: 'soon' is not a duration; write it like 30s, 10m, 2h, 1d or 1h30m\n" in out
    assert "  /wait DURATION  let time pass" in out and "  /help           this list" in out
    assert "you> /wiat 1h\nunknown command /wiat (/help lists the commands; //wiat 1h texts it)\n" in out
    assert f"you> //status\nbot> {ASK_NUMBER}" in out  # "/status" was texted (punctuation aside: STATUS)


def test_chat_with_broken_flows_exits_1(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text(BROKEN, encoding="utf-8")
    result = bot("chat", "--flows", tmp_path, stdin="hi\n")
    assert result.returncode == 1, output_of(result)
    assert "error: the flows cannot run:" in result.stderr
    assert "unknown field 'otherwize'" in result.stderr


# -- test -------------------------------------------------------------------------------------

def test_test_runs_the_shipped_conversation_tests() -> None:
    assert (SHIPPED_FLOWS / "tests").is_dir(), "flows/tests/ (the shipped conversation tests) is missing"
    result = bot("test")
    assert result.returncode == 0, output_of(result)
    assert re.search(r"^(\d+) passed, 0 failed$", result.stderr, re.MULTILINE), output_of(result)
    assert "FAIL" not in result.stdout
    assert result.stdout.count("ok    ") >= 3


WRONG_EXPECTATION = """\
tests:
  - name: asks for the order number
    turns:
      - send: STATUS
        expect: "What is your order number?"
"""


def test_test_failure_shows_a_diff(tmp_path: Path) -> None:
    path = tmp_path / "wrong.yaml"
    path.write_text(WRONG_EXPECTATION, encoding="utf-8")
    result = bot("test", "--flows", SHIPPED_FLOWS, path)
    assert result.returncode == 1, output_of(result)
    out = result.stdout
    assert f"FAIL  {path}: asks for the order number" in out
    assert "turn 1: > STATUS" in out
    assert "--- expected" in out and "+++ actual" in out
    assert "-< What is your order number?" in out
    assert f"+< {ASK_NUMBER}" in out
    assert "0 passed, 1 failed" in result.stderr


STUBBED_FETCH = """\
tests:
  - name: the order service is down
    fetch:
      /demo/orders/123456: fail
    turns:
      - send: STATUS
        expect: "What's your order number? (6 digits, like 123456)"
      - send: "123456"
        expect: "Sorry, our order system isn't answering right now. Please try again in a few minutes."
      - send: "123456"  # the lookup failed, so the conversation ended: this is not an order number
        expect_contains: "Sorry, I didn't understand that."
  - name: the order service answers from the stub
    fetch:
      /demo/orders/123456: {status: lost, detail: We are looking for it.}
    turns:
      - send: STATUS
        expect_contains: order number
      - send: "123456"
        expect: "Order 123456 is lost. We are looking for it."
"""


def test_test_fetch_stub_fail_takes_the_fallback(tmp_path: Path) -> None:
    path = tmp_path / "stubbed.yaml"
    path.write_text(STUBBED_FETCH, encoding="utf-8")
    result = bot("test", "--flows", SHIPPED_FLOWS, path)
    assert result.returncode == 0, output_of(result)
    assert f"ok    {path}: the order service is down" in result.stdout
    assert f"ok    {path}: the order service answers from the stub" in result.stdout
    assert "2 passed, 0 failed" in result.stderr


def test_test_with_no_tests_found_exits_1(tmp_path: Path) -> None:
    result = bot("test", "--flows", SHIPPED_FLOWS, tmp_path)
    assert result.returncode == 1, output_of(result)
    assert f"no conversation tests found in {tmp_path}" in result.stderr


# -- graph ------------------------------------------------------------------------------------

def test_graph_prints_mermaid() -> None:
    result = bot("graph", "order_status")
    assert result.returncode == 0, output_of(result)
    assert "stateDiagram-v2" in result.stdout
    assert "[*] --> n_ask_number" in result.stdout
    assert "n_ask_number --> n_lookup: /^\\d{6}$/" in result.stdout
    assert "```" not in result.stdout


def test_graph_of_a_file_writes_markdown(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    target = tmp_path / "tmp" / "x.md"
    result = bot("graph", "flows/signup.yaml", "-o", target)
    assert result.returncode == 0, output_of(result)
    text = target.read_text(encoding="utf-8")
    assert text.startswith("```mermaid\n")
    assert text.endswith("```\n")
    assert "stateDiagram-v2" in text
    assert "n_confirm --> n_ask_name: CHANGE / RENAME / WRONG NAME" in text
    assert f"wrote {target}" in result.stderr


@pytest.mark.parametrize(("args", "written", "start"), [
    (("graph", SHIPPED_FLOWS / "signup.yaml", "-o", "tmp/x.md"), "tmp/x.md", "```mermaid\n"),
    (("schema", "-o", "tmp/schema.json"), "tmp/schema.json", "{"),
], ids=["graph", "schema"])
def test_output_into_a_missing_folder_is_handled(tmp_path: Path, args: tuple[str | Path, ...], written: str,
                                                 start: str) -> None:
    result = bot(*args, cwd=tmp_path)
    assert "Traceback" not in result.stderr, output_of(result)
    if result.returncode == 0:
        assert (tmp_path / written).read_text(encoding="utf-8").startswith(start)
    else:
        assert result.returncode == 2 and result.stderr.startswith("error:"), output_of(result)


def test_graph_of_an_unknown_flow_lists_the_flows() -> None:
    result = bot("graph", "nosuchflow")
    assert result.returncode == 2, output_of(result)
    assert result.stderr == "error: no flow 'nosuchflow'; flows: agent, order_status, reminder, signup\n"
    assert result.stdout == ""


# -- schema -----------------------------------------------------------------------------------

def _shipped_documents() -> Iterator[tuple[str, Any]]:
    for path in sorted(SHIPPED_FLOWS.glob("*.yaml")):
        yield path.name, yaml.safe_load(path.read_text(encoding="utf-8"))


def _check_keys(schema: dict[str, Any], definition: str, data: dict[str, Any], where: str) -> dict[str, Any]:
    shape = schema["$defs"][definition]
    assert shape.get("additionalProperties") is False, definition
    assert set(data) <= set(shape["properties"]), f"{where}: {set(data) - set(shape['properties'])}"
    assert set(shape.get("required", ())) <= set(data), where
    return shape


def test_schema_is_json_describing_the_shipped_flows(tmp_path: Path) -> None:
    result = bot("schema")
    assert result.returncode == 0, output_of(result)
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {"Flow", "Program", "State", "Rule"} <= set(schema["$defs"])
    assert {"$ref": "#/$defs/Flow"} in schema["anyOf"] and {"$ref": "#/$defs/Program"} in schema["anyOf"]
    assert set(schema["$defs"]["Flow"]["required"]) == {"flow", "start", "states"}

    try:
        import jsonschema
    except ImportError:
        jsonschema = None
    documents = list(_shipped_documents())
    assert len(documents) == 5
    for name, data in documents:
        if jsonschema is not None:
            jsonschema.validate(data, schema)
        elif "program" in data:
            _check_keys(schema, "Program", data, name)
            _check_keys(schema, "ProgramTexts", data["program"], f"{name}: program")
        else:
            _check_keys(schema, "Flow", data, name)
            for state_name, state in data["states"].items():
                _check_keys(schema, "State", state, f"{name}: {state_name}")
                for index, reply in enumerate(state.get("replies", [])):
                    _check_keys(schema, "Rule", reply, f"{name}: {state_name} reply {index}")
                if "fetch" in state:
                    _check_keys(schema, "Fetch", state["fetch"], f"{name}: {state_name} fetch")

    written = tmp_path / "schema.json"
    assert bot("schema", "-o", written).returncode == 0
    assert json.loads(written.read_text(encoding="utf-8")) == schema


# -- webhook ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    """The real server on the shipped flows, checking signatures, in a temporary working directory."""
    cwd = tmp_path_factory.mktemp("server")
    process = ServerProcess({}, cwd=cwd)
    process.env = {name: value for name, value in process.env.items() if name not in SETTING_NAMES}
    process.env.update(TWILIO_AUTH_TOKEN=AUTH_TOKEN, FLOWS_DIR=str(SHIPPED_FLOWS), HOST="127.0.0.1",
                       PORT=str(process.port), STORE_URL=f"sqlite:///{cwd / 'bot.db'}")
    process.start()
    try:
        yield process, cwd
    finally:
        process.stop()


def test_webhook_texts_a_running_server(server: tuple[ServerProcess, Path]) -> None:
    process, cwd = server
    result = bot("webhook", "HELP", cwd=cwd, TWILIO_AUTH_TOKEN=AUTH_TOKEN, PORT=str(process.port))
    assert result.returncode == 0, output_of(result)
    assert result.stdout == f"> HELP\n< {SHIPPED.program.help}\n"
    assert "not set" not in result.stderr


def test_webhook_reads_stdin_and_follows_a_flow(server: tuple[ServerProcess, Path]) -> None:
    process, cwd = server
    result = bot("webhook", "--url", f"{process.url}/sms", "--from", "+15550009999", cwd=cwd,
                 stdin="JOIN\nAda\n", TWILIO_AUTH_TOKEN=AUTH_TOKEN)
    assert result.returncode == 0, output_of(result)
    assert result.stdout == ("> JOIN\n< Welcome to Acme Orders updates! What's your first name?\n"
                             "> Ada\n< Thanks, Ada! Sign you up for shipping updates? Reply YES or NO.\n")


def test_webhook_with_the_wrong_token_is_refused(server: tuple[ServerProcess, Path]) -> None:
    process, cwd = server
    result = bot("webhook", "HELP", cwd=cwd, TWILIO_AUTH_TOKEN="not-the-token", PORT=str(process.port))
    assert result.returncode == 1, output_of(result)
    assert "error: HTTP 403" in result.stderr


def test_webhook_without_a_server(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here
    result = bot("webhook", "HELP", cwd=tmp_path, TWILIO_AUTH_TOKEN=AUTH_TOKEN, PORT=str(port))
    assert result.returncode == 2, output_of(result)
    assert result.stderr.startswith(f"error: cannot reach http://127.0.0.1:{port}/sms"), output_of(result)
    assert "Traceback" not in result.stderr


def test_version_is_the_one_release_number(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m bot --version``, the package and pyproject.toml name the same release, and the
    changelog has a section for it."""
    import tomllib

    import bot
    from bot import cli

    with pytest.raises(SystemExit) as exit_status:
        cli.main(["--version"])
    assert exit_status.value.code == 0
    assert capsys.readouterr().out == f"textflow {bot.__version__}\n"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["version"] == bot.__version__
    headings = [line for line in (ROOT / "CHANGELOG.md").read_text(encoding="utf-8").splitlines()
                if line.startswith("## ")]  # "## 0.2.0", or "## Unreleased (0.2.0.dev0)" before the release
    assert any(bot.__version__ in heading.replace("(", " ").replace(")", " ").split() for heading in headings)
