"""Every example in the guides loads as they say, and every conversation in them happens: the
reference (docs/flows.md) and the tutorial (docs/tutorial.md), by the same rules.

Each guide is read as data (``tests/docs_reader.py``); "the guide" below is the one a block is in:

- A fenced ``yaml`` block is a flow file (it starts with ``flow:``), a program file
  (``program:``) or a conversation test file (``tests:``). Each flow is loaded on its own through
  :func:`load_flows`, together with the guide's program file, and must load without errors or
  warnings unless marked. A conversation test file, marked ``<!-- flow: NAME -->``, must pass
  against that example flow, run by ``python -m bot test``'s own runner.
- ``<!-- expect-error: TEXT -->`` right above a yaml block: loading must fail, and the error
  output must contain TEXT. ``<!-- expect-warning: TEXT -->``: it loads, with a warning
  containing TEXT. ``<!-- file: flows/x.yaml -->``: the block is that file of the repository, word
  for word, and it loads (and its conversations run) in that file's folder: the whole shipped
  ``flows/``, or ``docs/examples/`` (whose ``program.yaml`` is a link to the shipped one).
- ``<!-- adds-to: NAME -->`` right above a yaml block: a tutorial's step, only what it adds or
  changes, merged into flow NAME as the guide last showed it (mappings key by key; a list or a
  text replaces). The flow that results is what loads, what its conversations and tests run
  against, and what later commands get for ``flows/NAME.yaml``.
- A fenced ``text`` block after a yaml block is either the printed problems (each line must be
  printed exactly so, with the folder shown as ``flows/``), or a conversation of ``> text`` /
  ``< reply`` / ``(15m later)`` lines replayed through the simulator (``bot/simulator.py``: the
  real inbox and engine, as ``python -m bot chat``), from a fresh start. ``(15m later)`` lets the
  time pass as chat's ``/wait`` does; the ``<`` lines after it are what timeouts and reminders sent.
  Above a conversation, ``<!-- env: NAME=value -->`` sets an environment variable,
  ``<!-- fetch: JSON -->`` (or ``fails``, or ``not found`` for a 404 answer) is what a ``fetch``
  gets back, and ``<!-- fetched-url: URL -->`` (one per lookup) the addresses it must have asked,
  and ``<!-- flow: NAME -->`` runs it against that flow example instead of the one just above.
- A fenced ``log`` block right after a conversation is what the bot's log says about it: the
  conversation is replayed through the real inbox and every ``bot`` log line must read so (the
  timestamp, ``sid=`` and ``ms=`` values may differ).
- A fenced ``console`` block is one ``$ .venv/bin/python -m bot ...`` command (maybe fed by a
  pipe) and what it prints, stdout and stderr together. It runs for real, in a fresh folder holding
  a copy of the shipped ``flows/``, plus each ``<!-- with-file: PATH -->``: the guide's example
  for that path as it stands above the command (a flow example for ``flows/NAME.yaml``, or the
  yaml block whose first line is the comment ``# PATH``). ``<!-- exit-status: N -->`` is its exit
  status (default 0).
- A fenced ``mermaid`` block marked ``<!-- graph: NAME -->`` is exactly what
  ``python -m bot graph NAME`` prints for that shipped flow, and every shipped flow has one.
- ``docs/flow.schema.json`` is exactly what ``python -m bot schema`` prints, and the editor
  settings the guide shows point at it.
- The tutorial builds docs/examples/refill.yaml: its steps add up to that file, and its last
  version of the flow is that file, word for word.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot import cli
from bot.actions import FetchFailed
from bot.engine import MAX_REPLIES_PER_TURN, MAX_STEPS_PER_TURN
from bot.flows import graph
from bot.flows.loader import FlowSet, load_flows
from bot.flows.problems import FlowLoadError
from bot.flows.program import ProgramTexts
from bot.flows.schema import MAX_FETCH_TIMEOUT, Fetch, Flow, parse_duration
from bot.flows.yamlsource import read_yaml
from bot.flowtests import run_conversations
from bot.simulator import SimulatedClock, Simulation, simulation
from bot.text.wordsets import HELP_WORDS, NO_WORDS, OPT_IN_WORDS, OPT_OUT_WORDS, YES_WORDS
from tests.conftest import ROOT, SHIPPED_FLOWS, write_flows
from tests.docs_reader import Block, DocTurn, Example, Guide, conversation_turns, is_conversation

GUIDE = Guide(ROOT / "docs" / "flows.md")  # the reference
TUTORIAL = Guide(ROOT / "docs" / "tutorial.md")
GUIDES = (GUIDE, TUTORIAL)
DOC = GUIDE.path
SENDER = "+15551234567"  # the guide says the person texting has this number

SCHEMA_FILE = ROOT / "docs" / "flow.schema.json"

YAML_MARKERS = {"expect-error", "expect-warning", "file", "flow", "adds-to"}
TEXT_MARKERS = {"env", "fetch", "fetched-url", "flow"}
CONSOLE_MARKERS = {"with-file", "exit-status"}
#: The fenced blocks the guide may hold, and the markers each may carry. A block without a
#: language is a fragment (a line of a file, a format), shown and not run.
BLOCK_MARKERS = {"yaml": YAML_MARKERS, "text": TEXT_MARKERS, "console": CONSOLE_MARKERS,
                 "log": set(), "mermaid": {"graph"}, "json": set(), "": set()}
#: Everything bot.settings (and the shipped flows, via ORDERS_API) read from the environment.
SETTING_NAMES = ("TWILIO_AUTH_TOKEN", "PUBLIC_URL", "TRUST_PROXY", "STORE_URL", "FLOWS_DIR", "HOST", "PORT",
                 "DEV_MODE", "MAX_BODY_BYTES", "LOG_LEVEL", "ORDERS_API", "RELOAD_FLOWS", "FLOW_ENV")

EXAMPLES = [example for guide in GUIDES for example in guide.examples]
BLOCKS = [block for guide in GUIDES for block in guide.blocks]


def blocks_of(lang: str) -> list[Block]:
    return [block for block in BLOCKS if block.lang == lang]


def guide_of(block: Block) -> Guide:
    return next(guide for guide in GUIDES if guide.name == block.doc)


def example_id(example: Example) -> str:
    return f"{Path(example.block.doc).stem}-line{example.block.line}-{example.name}"


def block_id(block: Block) -> str:
    return f"{Path(block.doc).stem}-line{block.line}"


# -- the guide as a whole -------------------------------------------------------------------


def test_the_guide_has_examples() -> None:
    assert DOC.is_file(), "docs/flows.md is missing"
    kinds = [example.kind for example in GUIDE.examples]
    assert kinds.count("flow") >= 10 and "program" in kinds
    assert sum(len(example.conversations) for example in GUIDE.examples) >= 10


@pytest.mark.parametrize("example", EXAMPLES, ids=example_id)
def test_blocks_are_well_formed(example: Example) -> None:
    where = example.block.where
    assert example.kind in {"flow", "program", "tests"}, (
        f"{where}: a yaml block must be a whole flow, program or conversation test file")
    if example.kind == "tests":
        assert guide_of(example.block).find_example(example.block.marker("flow")), (
            f"{where}: <!-- flow: NAME --> of a test")
    else:
        assert "flow" not in example.block.markers, f"{where}: only conversation tests name a flow"
    assert set(example.block.markers) <= YAML_MARKERS, f"{where}: unknown marker"
    if example.block.marker("adds-to"):
        assert example.kind == "flow" and not {"file", "expect-error"} & set(example.block.markers), (
            f"{where}: a step adds to a flow that loads; mark the whole file instead")
    for block in example.followers:
        assert set(block.markers) <= TEXT_MARKERS, f"{block.where}: unknown marker"
        if not is_conversation(block):
            assert block.markers == {}, f"{block.where}: markers belong above a conversation"
    expects_problem = example.block.marker("expect-error") or example.block.marker("expect-warning")
    if example.printed_problems:
        assert expects_problem, f"{where}: printed problems after an example marked with no problem"
    if example.block.marker("expect-error"):
        assert not example.conversations, f"{where}: a flow that does not load cannot converse"


def test_words_the_guide_lists_are_the_bots_words() -> None:
    doc = DOC.read_text(encoding="utf-8")
    for word in YES_WORDS | NO_WORDS:
        assert f"`{word}`" in doc, f"answer word {word!r} is not listed in the guide"
    for word in OPT_OUT_WORDS | OPT_IN_WORDS | HELP_WORDS | {"yes"}:
        assert f"`{word.upper()}`" in doc, f"compliance word {word.upper()} is not listed in the guide"


def test_numbers_the_guide_gives_are_the_bots_numbers() -> None:
    doc = DOC.read_text(encoding="utf-8")
    assert f"at most **{MAX_REPLIES_PER_TURN} messages**" in doc
    assert f"through {MAX_STEPS_PER_TURN} states" in doc
    assert f"at most `{MAX_FETCH_TIMEOUT:g}s`" in doc
    assert f"Default `{Fetch.model_fields['timeout'].default:g}s`" in doc
    assert Fetch.model_fields["fallback"].default in doc
    assert ProgramTexts.model_fields["fallback"].default in doc
    assert Flow.model_fields["expires_after"].default == parse_duration("24h")
    assert "Default: `24h`" in doc


@pytest.mark.parametrize("guide", GUIDES, ids=lambda guide: guide.name)
def test_links_inside_the_guides_lead_somewhere(guide: Guide) -> None:
    """``[..](#heading)``, and ``[..](other.md#heading)`` from one guide to another document."""
    for target in re.findall(r"\]\(([^)\s]+)\)", _outside_fences(guide.text)):
        if re.match(r"[a-z]+:", target):  # https: and mailto: are not checked here
            continue
        document, _, anchor = target.partition("#")
        path = (guide.path.parent / document).resolve() if document else guide.path
        assert path.exists(), f"{guide.name}: link to {target}, which is no file"
        if anchor:
            assert anchor in _anchors(path), f"{guide.name}: link to {target}, which no heading has"


def _outside_fences(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)


def _anchors(document: Path) -> set[str]:
    text = _outside_fences(document.read_text(encoding="utf-8"))
    return {_slug(heading) for heading in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_tutorial_builds_the_refill_example() -> None:
    """Its steps add up to docs/examples/refill.yaml, and it ends with that file (test_example
    checks it word for word)."""
    versions = [example for example in TUTORIAL.examples if example.kind == "flow" and example.name == "refill"]
    assert len(versions) >= 5 and versions[-1].block.marker("file") == "docs/examples/refill.yaml"
    assert all(version.block.marker("adds-to") for version in versions[1:-1])
    built, whole = versions[-2], versions[-1]
    assert read_yaml(built.text)[0] == read_yaml(whole.text)[0], (
        f"{built.block.where}: the steps do not add up to docs/examples/refill.yaml")


def test_the_tutorial_shows_the_tools() -> None:
    commands = [read_command(block).line for block in TUTORIAL.blocks_of("console")]
    for tool in ("bot lint", "bot chat", "/wait", "bot test", "bot graph"):
        assert any(tool in command for command in commands), f"docs/tutorial.md runs no {tool}"
    assert any("wait:" in example.text for example in TUTORIAL.examples if example.kind == "tests")
    assert "(tutorial.md)" in DOC.read_text(encoding="utf-8")[:2000], "docs/flows.md links the tutorial at its top"
    assert "(docs/tutorial.md)" in (ROOT / "README.md").read_text(encoding="utf-8"), "the README links the tutorial"


# -- each example -----------------------------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES, ids=example_id)
async def test_example(example: Example, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    block = example.block
    if example.kind == "tests":
        await _run_conversation_tests(example, tmp_path, monkeypatch)
        return
    shipped = block.marker("file")
    if shipped:
        assert (ROOT / shipped).read_text(encoding="utf-8") == block.text, (
            f"{block.where} no longer matches {shipped}; copy the file into the guide again")
    folder = _example_folder(example, tmp_path)

    def as_printed(text: str) -> str:
        return text.replace(str(folder), "flows")

    expected_error = block.marker("expect-error")
    if expected_error:
        with pytest.raises(FlowLoadError) as raised:
            load_flows(folder)
        printed = as_printed(str(raised.value))
        assert expected_error in printed
        _assert_printed(example, printed)
        _assert_printed(example, _lint(folder, capsys, expect_status=1))
        return

    flowset = load_flows(folder)
    printed = "\n".join(as_printed(str(warning)) for warning in flowset.warnings)
    expected_warning = block.marker("expect-warning")
    if expected_warning:
        assert expected_warning in printed
    else:
        assert printed == "", f"{block.where}: unexpected warnings:\n{printed}"
    _assert_printed(example, printed)
    _assert_printed(example, _lint(folder, capsys, expect_status=0))

    for conversation in example.conversations:
        await _replay(conversation, flowset, example.text, shipped=bool(shipped), monkeypatch=monkeypatch)


def _lint(folder: Path, capsys: pytest.CaptureFixture[str], expect_status: int) -> str:
    """What ``python -m bot lint FOLDER`` prints, the folder shown as ``flows``, as the guide shows it."""
    capsys.readouterr()
    status = cli.main(["lint", str(folder)])
    out, err = capsys.readouterr()
    assert status == expect_status, out + err
    assert re.search(r"^\d+ errors?, \d+ warnings?$", err, re.MULTILINE), err
    return out.replace(str(folder), "flows")


def _example_folder(example: Example, tmp_path: Path) -> Path:
    """The flows folder an example runs in: the repository's folder of the file it is (the shipped
    flows/, or docs/examples/), or a new one holding just it and the guide's program file."""
    shipped = example.block.marker("file")
    if shipped:
        return (ROOT / shipped).parent
    folder = tmp_path / "flows"
    if example.kind == "program":
        return write_flows(folder, {}, program=example.text)
    return write_flows(folder, {example.file_name: example.text}, program=guide_of(example.block).program())


async def _run_conversation_tests(example: Example, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = guide_of(example.block).find_example(example.block.marker("flow"), before=example.block.line)
    assert target is not None
    for name in re.findall(r"env\.([A-Za-z_]\w*)", target.text):
        monkeypatch.delenv(name, raising=False)
    flowset = load_flows(_example_folder(target, tmp_path))
    test_file = tmp_path / "conversation_tests.yaml"
    test_file.write_text(example.block.text, encoding="utf-8")
    run = await run_conversations(flowset, [test_file])
    assert not run.problems, "\n".join(map(str, run.problems))
    assert run.results, "no conversation tests ran"
    for result in run.results:
        assert result.passed, f"{example.block.where}: {result.name}\n{result.report}"


def _assert_printed(example: Example, printed: str) -> None:
    lines = printed.splitlines()
    for block in example.printed_problems:
        for line in block.text.splitlines():
            if line.strip():
                assert line in lines, f"{block.where}: not printed:\n{line}\nprinted:\n{printed}"


# -- conversations ------------------------------------------------------------------------------


class CannedService:
    """What the guide says the looked-up service answers; records the addresses asked."""

    def __init__(self, answer: str | None) -> None:
        self.answer = answer
        self.urls: list[str] = []

    async def get_json(self, url: str, timeout: float, **request: Any) -> Any:
        self.urls.append(url)
        assert self.answer is not None, "this conversation fetches, but the guide gives no <!-- fetch: -->"
        if self.answer == "fails":
            raise FetchFailed("the guide says this service is down")
        if self.answer == "not found":
            raise FetchFailed("HTTP 404", status=404)
        return json.loads(self.answer)


async def _replay(block: Block, flowset: FlowSet, flow_text: str, *, shipped: bool,
                  monkeypatch: pytest.MonkeyPatch) -> None:
    for name in re.findall(r"env\.([A-Za-z_]\w*)", flow_text):
        monkeypatch.delenv(name, raising=False)  # only what the guide sets
    for setting in block.markers.get("env", []):
        name, _, value = setting.partition("=")
        monkeypatch.setenv(name, value)
    canned = block.marker("fetch")
    service = CannedService(canned)
    # The shipped flows look orders up in the demo service the bot serves at /demo (as chat does).
    fetcher = None if shipped and canned is None else service
    # env: what the guide sets, as a conversation test's env: (those names count as in FLOW_ENV)
    env = dict(setting.partition("=")[::2] for setting in block.markers.get("env", []))
    async with simulation(flowset, env=env, clock=SimulatedClock(1_700_000_000.0), fetcher=fetcher) as sim:
        await _converse(sim, conversation_turns(block))
    expected_urls = block.markers.get("fetched-url", [])
    if expected_urls:
        assert service.urls == expected_urls


async def _converse(sim: Simulation, turns: list[DocTurn]) -> None:
    """Replay a conversation of the guide through the simulator, as ``python -m bot chat``
    (``/wait`` for the time passing) would show it."""
    for turn in turns:
        if turn.wait is not None:
            replies = [reply for fired in await sim.wait(turn.wait) for reply in fired.replies]
        else:
            replies = list((await sim.text(turn.text or "", SENDER)).replies)
        assert replies == turn.replies, f"{turn.where}: after {turn.label}"


# -- every fenced block -------------------------------------------------------------------------


def test_every_block_is_a_kind_the_guide_knows() -> None:
    for block in BLOCKS:
        assert block.lang in BLOCK_MARKERS, f"{block.where}: unknown block language {block.lang!r}"
        assert set(block.markers) <= BLOCK_MARKERS[block.lang], (
            f"{block.where}: marker not allowed on a {block.lang or 'plain'} block")
    assert blocks_of("console") and blocks_of("log") and blocks_of("mermaid")


# -- commands (console blocks) --------------------------------------------------------------------


@dataclass
class Command:
    block: Block
    line: str  # as the guide writes it, without the "$ "
    output: list[str]


def read_command(block: Block) -> Command:
    lines = block.text.splitlines()
    where = block.where
    assert lines and lines[0].startswith("$ "), f"{where}: a console block starts with '$ ' and a command"
    assert not any(line.startswith("$ ") for line in lines[1:]), f"{where}: one command per console block"
    assert ".venv/bin/python -m bot " in lines[0], f"{where}: commands run the bot's own Python"
    return Command(block, lines[0][2:], lines[1:])


def _command_env(texts: list[str]) -> dict[str, str]:
    unset = set(SETTING_NAMES) | {name for text in texts for name in re.findall(r"env\.([A-Za-z_]\w*)", text)}
    env = {name: value for name, value in os.environ.items() if name not in unset}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")  # stdout and stderr in the order printed
    return env


@pytest.mark.parametrize("block", blocks_of("console"), ids=block_id)
def test_command(block: Block, tmp_path: Path) -> None:
    command = read_command(block)
    shutil.copytree(SHIPPED_FLOWS, tmp_path / "flows")
    texts = []
    for path in block.markers.get("with-file", []):
        text = guide_of(block).file(path, before=block.line)
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text, encoding="utf-8")
        texts.append(text)
    shell = command.line.replace(".venv/bin/python", shlex.quote(sys.executable))
    result = subprocess.run(["bash", "-c", shell], cwd=tmp_path, env=_command_env(texts), text=True,
                            encoding="utf-8", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, timeout=60)
    printed = result.stdout.splitlines()
    assert printed == command.output, (
        f"{block.where}: $ {command.line}\nprinted:\n{result.stdout}")
    expected_status = int(block.marker("exit-status") or 0)
    assert result.returncode == expected_status, f"{block.where}: exit status {result.returncode}"


# -- the log -----------------------------------------------------------------------------------

_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\S+ \S+: .*)$")


def _comparable(line: str) -> str:
    return re.sub(r"\bms=[\d.]+", "ms=…", re.sub(r"\bsid=\S+", "sid=…", line))


@pytest.mark.parametrize("block", blocks_of("log"), ids=block_id)
async def test_log(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   caplog: pytest.LogCaptureFixture) -> None:
    where = block.where
    blocks = guide_of(block).blocks
    before = blocks[blocks.index(block) - 1]
    owner = next((example for example in EXAMPLES if before in example.conversations), None)
    assert owner is not None, f"{where}: a log block comes right after the conversation it logs"
    assert not before.markers.get("fetch") and not before.markers.get("env"), (
        f"{where}: the logged conversation runs as it is, with no made-up lookups or settings")
    for name in re.findall(r"env\.([A-Za-z_]\w*)", owner.text):
        monkeypatch.delenv(name, raising=False)
    flowset = load_flows(_example_folder(owner, tmp_path))
    caplog.set_level(logging.INFO, logger="bot")
    caplog.clear()
    async with simulation(flowset) as sim:
        await _converse(sim, conversation_turns(before))
    logged = [_comparable(f"{record.levelname} {record.name}: {record.getMessage()}")
              for record in caplog.records if record.name.startswith("bot")]
    shown = []
    for line in block.text.splitlines():
        found = _LOG_LINE.match(line)
        assert found, f"{where}: not a log line: {line!r}"
        shown.append(_comparable(found.group(1)))
    assert shown == logged, f"{where}: the log says:\n" + "\n".join(logged)


# -- diagrams -------------------------------------------------------------------------------------


def test_every_shipped_flow_has_its_diagram_in_the_guide() -> None:
    drawn = [block.marker("graph") for block in blocks_of("mermaid")]
    assert all(drawn), "every mermaid block is marked <!-- graph: NAME -->"
    assert sorted(drawn) == sorted(load_flows(SHIPPED_FLOWS).flows), drawn  # type: ignore[type-var]


@pytest.mark.parametrize("block", blocks_of("mermaid"), ids=lambda b: f"{block_id(b)}-{b.marker('graph')}")
def test_diagram_is_current(block: Block) -> None:
    name = block.marker("graph")
    flows = load_flows(SHIPPED_FLOWS).flows
    assert name in flows, f"{block.where}: no shipped flow {name!r}"
    assert block.text == graph.mermaid(flows[name]), (
        f"{block.where}: the diagram of {name} is stale; "
        f"run python -m bot graph {name} and paste it")


# -- the JSON Schema for editors ------------------------------------------------------------------


def test_schema_file_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert cli.main(["schema"]) == 0
    printed = capsys.readouterr().out
    assert SCHEMA_FILE.is_file(), "docs/flow.schema.json is missing; run python -m bot schema -o docs/flow.schema.json"
    assert SCHEMA_FILE.read_text(encoding="utf-8") == printed, (
        "docs/flow.schema.json is stale; run python -m bot schema -o docs/flow.schema.json")


def test_editor_settings_in_the_guide_point_at_the_schema() -> None:
    doc = DOC.read_text(encoding="utf-8")
    modelines = re.findall(r"# yaml-language-server: \$schema=(\S+)", doc)
    assert modelines
    for target in modelines:  # written in a file in flows/, so counted from there
        assert (SHIPPED_FLOWS / target).resolve() == SCHEMA_FILE.resolve(), target
    settings = [json.loads(block.text) for block in blocks_of("json") if "yaml.schemas" in block.text]
    assert settings, "the guide shows the .vscode/settings.json for the schema"
    shipped = sorted(path for path in SHIPPED_FLOWS.iterdir() if path.suffix == ".yaml")
    for setting in settings:
        for schema, patterns in setting["yaml.schemas"].items():
            assert (ROOT / schema).resolve() == SCHEMA_FILE.resolve(), schema
            matched = sorted({path for pattern in patterns for path in ROOT.glob(pattern)})
            assert matched == shipped, f"{patterns} should match the flow files and not the tests: {matched}"
