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
  ``<!-- fetch: JSON -->`` (or ``fails``) is what a ``fetch`` gets back, and
  ``<!-- fetched-url: URL -->`` (one per lookup) the addresses it must have asked, and
  ``<!-- flow: NAME -->`` runs it against that flow example instead of the one just above.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot import cli, demo
from bot.actions import FetchFailed, HttpFetcher
from bot.engine import MAX_REPLIES_PER_TURN, MAX_STEPS_PER_TURN, Engine
from bot.flows.loader import FlowSet, load_flows
from bot.flows.problems import FlowLoadError
from bot.flows.schema import MAX_FETCH_TIMEOUT, Fetch, Flow, ProgramTexts, parse_duration
from bot.flowtests import run_conversations
from bot.keywords import HELP_WORDS, NO_WORDS, OPT_IN_WORDS, OPT_OUT_WORDS, YES_WORDS
from bot.types import Conversation, Inbound
from tests.conftest import PROGRAM_YAML, ROOT, SHIPPED_FLOWS, write_flows

DOC = ROOT / "docs" / "flows.md"
SENDER = "+15551234567"  # the guide says the person texting has this number

YAML_MARKERS = {"expect-error", "expect-warning", "file", "flow"}
TEXT_MARKERS = {"env", "fetch", "fetched-url", "flow"}

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

    async def get_json(self, url: str, timeout: float) -> Any:
        self.urls.append(url)
        assert self.answer is not None, "this conversation fetches, but the guide gives no <!-- fetch: -->"
        if self.answer == "fails":
            raise FetchFailed("the guide says this service is down")
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
        engine = Engine(flowset, fetcher, clock=clock)  # env: the real (filtered) process environment
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
        outcome = await engine.handle(inbound, conversation, opted_out=opted_out)
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
