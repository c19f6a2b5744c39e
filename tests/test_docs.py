"""Every example in docs/flows.md loads as the guide says, and every conversation in it happens.

The guide is read as data:

- A fenced ``yaml`` block is a flow file (it starts with ``flow:``), a program file
  (``program:``) or a conversation test file (``tests:``). Each flow is loaded on its own through
  :func:`load_flows`, together with the guide's program file, and must load without errors or
  warnings unless marked. A conversation test file, marked ``<!-- flow: NAME -->``, must pass
  against that example flow, run by ``python -m bot test``'s own runner.
- ``<!-- expect-error: TEXT -->`` right above a yaml block: loading must fail, and the error
  output must contain TEXT. ``<!-- expect-warning: TEXT -->``: it loads, with a warning
  containing TEXT. ``<!-- file: flows/x.yaml -->``: the block is the shipped file, word for word,
  and its conversations run against the whole shipped ``flows/`` folder.
- A fenced ``text`` block after a yaml block is either the printed problems (each line must be
  printed exactly so, with the folder shown as ``flows/``), or a conversation of ``> text`` /
  ``< reply`` / ``(15m later)`` lines replayed through the real engine, from a fresh start.
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
  for that path (a flow example for ``flows/NAME.yaml``, or the yaml block whose first line is the
  comment ``# PATH``). ``<!-- exit-status: N -->`` is its exit status (default 0).
- A fenced ``mermaid`` block marked ``<!-- graph: NAME -->`` is exactly what
  ``python -m bot graph NAME`` prints for that shipped flow, and every shipped flow has one.
- ``docs/flow.schema.json`` is exactly what ``python -m bot schema`` prints, and the editor
  settings the guide shows point at it.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot import cli, demo
from bot.actions import FetchFailed, HttpFetcher
from bot.engine import MAX_REPLIES_PER_TURN, MAX_STEPS_PER_TURN, Engine
from bot.flows import graph
from bot.flows.loader import FlowSet, load_flows
from bot.flows.problems import FlowLoadError
from bot.flows.program import ProgramTexts
from bot.flows.schema import MAX_FETCH_TIMEOUT, Fetch, Flow, parse_duration
from bot.flowtests import run_conversations
from bot.simulator import simulation
from bot.text.wordsets import HELP_WORDS, NO_WORDS, OPT_IN_WORDS, OPT_OUT_WORDS, YES_WORDS
from bot.types import Conversation, Inbound, Message
from tests.conftest import PROGRAM_YAML, ROOT, SHIPPED_FLOWS, write_flows

DOC = ROOT / "docs" / "flows.md"
SENDER = "+15551234567"  # the guide says the person texting has this number

SCHEMA_FILE = ROOT / "docs" / "flow.schema.json"

YAML_MARKERS = {"expect-error", "expect-warning", "file", "flow"}
TEXT_MARKERS = {"env", "fetch", "fetched-url", "flow"}
CONSOLE_MARKERS = {"with-file", "exit-status"}
#: The fenced blocks the guide may hold, and the markers each may carry. A block without a
#: language is a fragment (a line of a file, a format), shown and not run.
BLOCK_MARKERS = {"yaml": YAML_MARKERS, "text": TEXT_MARKERS, "console": CONSOLE_MARKERS,
                 "log": set(), "mermaid": {"graph"}, "json": set(), "": set()}
#: Everything bot.settings (and the shipped flows, via ORDERS_API) read from the environment.
SETTING_NAMES = ("TWILIO_AUTH_TOKEN", "PUBLIC_URL", "TRUST_PROXY", "STORE_URL", "FLOWS_DIR", "HOST", "PORT",
                 "DEV_MODE", "MAX_BODY_BYTES", "LOG_LEVEL", "ORDERS_API", "RELOAD_FLOWS", "FLOW_ENV")

_FENCE = re.compile(r"^```(\S*)\s*$")
_MARKER = re.compile(r"^<!--\s*([a-z-]+):\s*(.*?)\s*-->$")
_WAIT = re.compile(r"^\((.+) later\)$")


@dataclass
class Block:
    lang: str
    text: str
    line: int  # of the opening fence, 1-based
    markers: dict[str, list[str]]

    def marker(self, name: str) -> str | None:
        values = self.markers.get(name, [])
        assert len(values) <= 1, f"docs/flows.md:{self.line}: {name} given twice"
        return values[0] if values else None


@dataclass
class Example:
    block: Block
    followers: list[Block] = field(default_factory=list)  # the text blocks after it

    @property
    def kind(self) -> str:
        first = next((line for line in self.block.text.splitlines()
                      if line.strip() and not line.lstrip().startswith("#")), "")
        return first.split(":", 1)[0].strip()

    @property
    def name(self) -> str:
        found = re.search(r"^flow:\s*(\S+)", self.block.text, re.MULTILINE)
        if found:
            return found.group(1)
        return f"{self.kind}-of-{self.block.marker('flow')}" if self.kind == "tests" else self.kind

    @property
    def file_name(self) -> str:
        shipped = self.block.marker("file")
        if shipped:
            return Path(shipped).name
        return "program.yaml" if self.kind == "program" else f"{self.name}.yaml"

    @property
    def conversations(self) -> list[Block]:
        return [block for block in self.followers if is_conversation(block)]

    @property
    def printed_problems(self) -> list[Block]:
        return [block for block in self.followers if not is_conversation(block)]


def read_blocks(text: str) -> list[Block]:
    """The doc's fenced blocks, each with the ``<!-- key: value -->`` lines right above it."""
    blocks: list[Block] = []
    markers: dict[str, list[str]] = {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        fence = _FENCE.match(line)
        marker = _MARKER.match(line)
        if marker:
            markers.setdefault(marker.group(1), []).append(marker.group(2))
        elif fence:
            end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
            body = "\n".join(lines[index + 1:end]) + "\n"
            blocks.append(Block(fence.group(1), body, index + 1, markers))
            markers = {}
            index = end
        else:
            assert not markers, f"docs/flows.md:{index + 1}: a marker must sit right above a fenced block"
        index += 1
    return blocks


def is_conversation(block: Block) -> bool:
    lines = [line for line in block.text.splitlines() if line.strip()]
    return bool(lines) and all(line[0] in "><(" for line in lines)


def read_examples() -> list[Example]:
    if not DOC.is_file():
        return []
    examples: list[Example] = []
    texts: list[tuple[Block, Example | None]] = []  # each text block, with the yaml block above it
    for block in read_blocks(DOC.read_text(encoding="utf-8")):
        if block.lang == "yaml":
            examples.append(Example(block))
        elif block.lang == "text":
            texts.append((block, examples[-1] if examples else None))
    for block, above in texts:
        owner = find_example(examples, block.marker("flow")) if block.marker("flow") else above
        assert owner is not None, f"docs/flows.md:{block.line}: no yaml example to run this against"
        owner.followers.append(block)
    return examples


def find_example(examples: list[Example], name: str | None) -> Example | None:
    return next((example for example in examples if example.kind == "flow" and example.name == name), None)


EXAMPLES = read_examples()
BLOCKS = read_blocks(DOC.read_text(encoding="utf-8")) if DOC.is_file() else []


def blocks_of(lang: str) -> list[Block]:
    return [block for block in BLOCKS if block.lang == lang]


def doc_program() -> str:
    """The guide's own program file, so fallback and HELP replies read as the guide shows them."""
    for example in EXAMPLES:
        if example.kind == "program" and not example.block.marker("expect-error"):
            return example.block.text
    return PROGRAM_YAML


# -- the guide as a whole -------------------------------------------------------------------


def test_the_guide_has_examples() -> None:
    assert DOC.is_file(), "docs/flows.md is missing"
    kinds = [example.kind for example in EXAMPLES]
    assert kinds.count("flow") >= 10 and "program" in kinds
    assert sum(len(example.conversations) for example in EXAMPLES) >= 10


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"line{e.block.line}-{e.name}")
def test_blocks_are_well_formed(example: Example) -> None:
    where = f"docs/flows.md:{example.block.line}"
    assert example.kind in {"flow", "program", "tests"}, (
        f"{where}: a yaml block must be a whole flow, program or conversation test file")
    if example.kind == "tests":
        assert find_example(EXAMPLES, example.block.marker("flow")), f"{where}: <!-- flow: NAME --> of a test"
    else:
        assert "flow" not in example.block.markers, f"{where}: only conversation tests name a flow"
    assert set(example.block.markers) <= YAML_MARKERS, f"{where}: unknown marker"
    for block in example.followers:
        assert set(block.markers) <= TEXT_MARKERS, f"docs/flows.md:{block.line}: unknown marker"
        if not is_conversation(block):
            assert block.markers == {}, f"docs/flows.md:{block.line}: markers belong above a conversation"
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


def test_links_inside_the_guide_lead_somewhere() -> None:
    doc = DOC.read_text(encoding="utf-8")
    outside_fences = re.sub(r"^```.*?^```", "", doc, flags=re.MULTILINE | re.DOTALL)
    anchors = {_slug(heading) for heading in re.findall(r"^#+ (.+)$", outside_fences, re.MULTILINE)}
    for target in re.findall(r"\]\(#([^)]+)\)", outside_fences):
        assert target in anchors, f"link to #{target}, which no heading has"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


# -- each example -----------------------------------------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"line{e.block.line}-{e.name}")
async def test_example(example: Example, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    block = example.block
    if example.kind == "tests":
        await _run_conversation_tests(example, tmp_path, monkeypatch)
        return
    shipped = block.marker("file")
    if shipped:
        assert (ROOT / shipped).read_text(encoding="utf-8") == block.text, (
            f"docs/flows.md:{block.line} no longer matches {shipped}; copy the file into the guide again")
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
        assert printed == "", f"docs/flows.md:{block.line}: unexpected warnings:\n{printed}"
    _assert_printed(example, printed)
    _assert_printed(example, _lint(folder, capsys, expect_status=0))

    for conversation in example.conversations:
        await _replay(conversation, flowset, block.text, shipped=bool(shipped), monkeypatch=monkeypatch)


def _lint(folder: Path, capsys: pytest.CaptureFixture[str], expect_status: int) -> str:
    """What ``python -m bot lint FOLDER`` prints, the folder shown as ``flows``, as the guide shows it."""
    capsys.readouterr()
    status = cli.main(["lint", str(folder)])
    out, err = capsys.readouterr()
    assert status == expect_status, out + err
    assert re.search(r"^\d+ errors?, \d+ warnings?$", err, re.MULTILINE), err
    return out.replace(str(folder), "flows")


def _example_folder(example: Example, tmp_path: Path) -> Path:
    """The flows folder an example runs in: the shipped one, or a new one holding just it."""
    if example.block.marker("file"):
        return SHIPPED_FLOWS
    folder = tmp_path / "flows"
    if example.kind == "program":
        return write_flows(folder, {}, program=example.block.text)
    return write_flows(folder, {example.file_name: example.block.text}, program=doc_program())


async def _run_conversation_tests(example: Example, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = find_example(EXAMPLES, example.block.marker("flow"))
    assert target is not None
    for name in re.findall(r"env\.([A-Za-z_]\w*)", target.block.text):
        monkeypatch.delenv(name, raising=False)
    flowset = load_flows(_example_folder(target, tmp_path))
    test_file = tmp_path / "conversation_tests.yaml"
    test_file.write_text(example.block.text, encoding="utf-8")
    run = await run_conversations(flowset, [test_file])
    assert not run.problems, "\n".join(map(str, run.problems))
    assert run.results, "no conversation tests ran"
    for result in run.results:
        assert result.passed, f"docs/flows.md:{example.block.line}: {result.name}\n{result.report}"


def _assert_printed(example: Example, printed: str) -> None:
    lines = printed.splitlines()
    for block in example.printed_problems:
        for line in block.text.splitlines():
            if line.strip():
                assert line in lines, f"docs/flows.md:{block.line}: not printed:\n{line}\nprinted:\n{printed}"


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


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def _replay(block: Block, flowset: FlowSet, flow_text: str, *, shipped: bool,
                  monkeypatch: pytest.MonkeyPatch) -> None:
    for name in re.findall(r"env\.([A-Za-z_]\w*)", flow_text):
        monkeypatch.delenv(name, raising=False)  # only what the guide sets
    for setting in block.markers.get("env", []):
        name, _, value = setting.partition("=")
        monkeypatch.setenv(name, value)
    canned = block.marker("fetch")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=demo.app)) as client:
        service = CannedService(canned)
        # The shipped flows look orders up in the demo service the bot serves at /demo.
        fetcher = HttpFetcher(client, "http://bot.invalid") if shipped and canned is None else service
        clock = Clock()
        # env: what the guide sets, as a conversation test's env: (those names count as in FLOW_ENV)
        env = dict(setting.partition("=")[::2] for setting in block.markers.get("env", []))
        engine = Engine(flowset, fetcher, env=env, clock=clock)
        await _run_turns(block, engine, clock)
    expected_urls = block.markers.get("fetched-url", [])
    if expected_urls:
        assert service.urls == expected_urls


async def _run_turns(block: Block, engine: Engine, clock: Clock) -> None:
    conversation = Conversation(sender=SENDER, updated_at=clock())
    opted_out = False
    turns = _turns(block)
    for number, (text, expected, line) in enumerate(turns):
        if text is None:
            clock.now += parse_duration(expected[0])
            continue
        inbound = Inbound(message_sid=f"SM{number:032x}", sender=SENDER, body=text)
        outcome = await engine.step(conversation, Message(inbound), opted_out)
        assert outcome.replies == expected, f"docs/flows.md:{line}: after > {text}"
        conversation = outcome.conversation
        if outcome.opt_out is not None:
            opted_out = outcome.opt_out


def _turns(block: Block) -> list[tuple[str | None, list[str], int]]:
    """(what is texted, the replies, doc line); a wait is (None, [duration], line)."""
    turns: list[tuple[str | None, list[str], int]] = []
    for offset, line in enumerate(block.text.splitlines(), start=block.line + 1):
        if not line.strip():
            continue
        wait = _WAIT.match(line)
        if wait:
            turns.append((None, [wait.group(1)], offset))
        elif line.startswith("> "):
            turns.append((line[2:], [], offset))
        elif line.startswith("< "):
            assert turns and turns[-1][0] is not None, f"docs/flows.md:{offset}: a reply before any text"
            turns[-1][1].append(line[2:])
        else:
            raise AssertionError(f"docs/flows.md:{offset}: not a conversation line: {line!r}")
    return turns


# -- every fenced block -------------------------------------------------------------------------


def test_every_block_is_a_kind_the_guide_knows() -> None:
    for block in BLOCKS:
        assert block.lang in BLOCK_MARKERS, f"docs/flows.md:{block.line}: unknown block language {block.lang!r}"
        assert set(block.markers) <= BLOCK_MARKERS[block.lang], (
            f"docs/flows.md:{block.line}: marker not allowed on a {block.lang or 'plain'} block")
    assert blocks_of("console") and blocks_of("log") and blocks_of("mermaid")


# -- commands (console blocks) --------------------------------------------------------------------


@dataclass
class Command:
    block: Block
    line: str  # as the guide writes it, without the "$ "
    output: list[str]


def read_command(block: Block) -> Command:
    lines = block.text.splitlines()
    where = f"docs/flows.md:{block.line}"
    assert lines and lines[0].startswith("$ "), f"{where}: a console block starts with '$ ' and a command"
    assert not any(line.startswith("$ ") for line in lines[1:]), f"{where}: one command per console block"
    assert ".venv/bin/python -m bot " in lines[0], f"{where}: commands run the bot's own Python"
    return Command(block, lines[0][2:], lines[1:])


def doc_file(path: str) -> str:
    """The guide's example for a path: a yaml block whose first line is ``# PATH``, or the flow
    example named after the file."""
    for example in EXAMPLES:
        if example.block.text.splitlines()[0].strip() == f"# {path}":
            return example.block.text
    name = Path(path)
    if name.parent == Path("flows"):
        for example in EXAMPLES:
            if example.kind == "flow" and not example.block.marker("file") and example.file_name == name.name:
                return example.block.text
    raise AssertionError(f"the guide has no example for {path}")


def _command_env(texts: list[str]) -> dict[str, str]:
    unset = set(SETTING_NAMES) | {name for text in texts for name in re.findall(r"env\.([A-Za-z_]\w*)", text)}
    env = {name: value for name, value in os.environ.items() if name not in unset}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")  # stdout and stderr in the order printed
    return env


@pytest.mark.parametrize("block", blocks_of("console"), ids=lambda b: f"line{b.line}")
def test_command(block: Block, tmp_path: Path) -> None:
    command = read_command(block)
    shutil.copytree(SHIPPED_FLOWS, tmp_path / "flows")
    texts = []
    for path in block.markers.get("with-file", []):
        text = doc_file(path)
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text, encoding="utf-8")
        texts.append(text)
    shell = command.line.replace(".venv/bin/python", shlex.quote(sys.executable))
    result = subprocess.run(["bash", "-c", shell], cwd=tmp_path, env=_command_env(texts), text=True,
                            encoding="utf-8", stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, timeout=60)
    printed = result.stdout.splitlines()
    assert printed == command.output, (
        f"docs/flows.md:{block.line}: $ {command.line}\nprinted:\n{result.stdout}")
    expected_status = int(block.marker("exit-status") or 0)
    assert result.returncode == expected_status, f"docs/flows.md:{block.line}: exit status {result.returncode}"


# -- the log -----------------------------------------------------------------------------------

_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (\S+ \S+: .*)$")


def _comparable(line: str) -> str:
    return re.sub(r"\bms=[\d.]+", "ms=…", re.sub(r"\bsid=\S+", "sid=…", line))


@pytest.mark.parametrize("block", blocks_of("log"), ids=lambda b: f"line{b.line}")
async def test_log(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                   caplog: pytest.LogCaptureFixture) -> None:
    where = f"docs/flows.md:{block.line}"
    before = BLOCKS[BLOCKS.index(block) - 1]
    owner = next((example for example in EXAMPLES if before in example.conversations), None)
    assert owner is not None, f"{where}: a log block comes right after the conversation it logs"
    assert not before.markers.get("fetch") and not before.markers.get("env"), (
        f"{where}: the logged conversation runs as it is, with no made-up lookups or settings")
    turns = _turns(before)
    assert all(text is not None for text, _, _ in turns), f"{where}: no waiting in a logged conversation"
    for name in re.findall(r"env\.([A-Za-z_]\w*)", owner.block.text):
        monkeypatch.delenv(name, raising=False)
    flowset = load_flows(_example_folder(owner, tmp_path))
    caplog.set_level(logging.INFO, logger="bot")
    caplog.clear()
    async with simulation(flowset) as sim:
        for text, expected, line in turns:
            assert text is not None
            received = await sim.text(text, SENDER)
            assert list(received.replies) == expected, f"docs/flows.md:{line}: after > {text}"
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


@pytest.mark.parametrize("block", blocks_of("mermaid"), ids=lambda b: f"line{b.line}-{b.marker('graph')}")
def test_diagram_is_current(block: Block) -> None:
    name = block.marker("graph")
    flows = load_flows(SHIPPED_FLOWS).flows
    assert name in flows, f"docs/flows.md:{block.line}: no shipped flow {name!r}"
    assert block.text == graph.mermaid(flows[name]), (
        f"docs/flows.md:{block.line}: the diagram of {name} is stale; "
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
