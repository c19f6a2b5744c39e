"""Reading the guides (docs/flows.md, docs/tutorial.md) as data for tests/test_docs.py: their fenced
blocks with the ``<!-- marker: value -->`` lines above them, the yaml examples with the text blocks
that follow them, and the versions of a flow that a tutorial builds one step at a time.

A step is a yaml block marked ``<!-- adds-to: NAME -->``: it holds only what the step adds or
changes, laid out as in the file, and is merged into flow NAME as the guide last showed it (a
mapping key by key; a list or a text replaces what was there). The flow that results is what the
step loads, converses with and hands to later commands, so a tutorial can show each step's few
lines and still have every step run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from bot.flows.schema import parse_duration
from bot.flows.yamlsource import read_yaml
from bot.simulator import format_duration
from tests.conftest import ROOT, SHIPPED_FLOWS

_FENCE = re.compile(r"^```(\S*)\s*$")
_MARKER = re.compile(r"^<!--\s*([a-z-]+):\s*(.*?)\s*-->$")
_WAIT = re.compile(r"^\((.+) later\)$")


@dataclass
class Block:
    doc: str  # the guide, as a path from the repository root: docs/flows.md
    lang: str
    text: str
    line: int  # of the opening fence, 1-based
    markers: dict[str, list[str]]

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    def marker(self, name: str) -> str | None:
        values = self.markers.get(name, [])
        assert len(values) <= 1, f"{self.where}: {name} given twice"
        return values[0] if values else None


@dataclass
class Example:
    block: Block
    text: str  # the file it stands for: the block itself, or for a step the flow as built so far
    previous: Example | None = None  # for a step: the version of the flow it adds to
    followers: list[Block] = field(default_factory=list)  # the text blocks after it

    @property
    def kind(self) -> str:
        first = next((line for line in self.text.splitlines()
                      if line.strip() and not line.lstrip().startswith("#")), "")
        return first.split(":", 1)[0].strip()

    @property
    def name(self) -> str:
        found = re.search(r"^flow:\s*(\S+)", self.text, re.MULTILINE)
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


@dataclass
class Guide:
    path: Path

    @property
    def name(self) -> str:
        return self.path.relative_to(ROOT).as_posix()

    @cached_property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8") if self.path.is_file() else ""

    @cached_property
    def blocks(self) -> list[Block]:
        return read_blocks(self.text, self.name)

    @cached_property
    def examples(self) -> list[Example]:
        return read_examples(self)

    def blocks_of(self, lang: str) -> list[Block]:
        return [block for block in self.blocks if block.lang == lang]

    def find_example(self, name: str | None, before: int | None = None) -> Example | None:
        """The flow example ``name`` as the guide stands at line ``before``: the last version
        above it, else (or with no line) the first one in the guide."""
        return _as_of([example for example in self.examples
                       if example.kind == "flow" and example.name == name], before)

    def program(self) -> str:
        """The guide's own program file, so fallback and HELP replies read as the guide shows
        them; a guide with none (the tutorial) runs with the shipped one, as its reader does."""
        for example in self.examples:
            if example.kind == "program" and not example.block.marker("expect-error"):
                return example.text
        return (SHIPPED_FLOWS / "program.yaml").read_text(encoding="utf-8")

    def file(self, path: str, before: int) -> str:
        """The guide's example for a path, as it stands at line ``before``: a yaml block whose
        first line is ``# PATH``, or the flow example named after the file."""
        commented = _as_of([example for example in self.examples
                            if example.text.splitlines()[0].strip() == f"# {path}"], before)
        if commented:
            return commented.text
        name = Path(path)
        if name.parent == Path("flows"):
            flow = _as_of([example for example in self.examples
                           if example.kind == "flow" and not example.block.marker("file")
                           and example.file_name == name.name],
                          before)
            if flow:
                return flow.text
        raise AssertionError(f"{self.name}: no example for {path}")


def _as_of(examples: list[Example], before: int | None) -> Example | None:
    above = [example for example in examples if before is not None and example.block.line < before]
    return above[-1] if above else next(iter(examples), None)


def read_blocks(text: str, doc: str) -> list[Block]:
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
            blocks.append(Block(doc, fence.group(1), body, index + 1, markers))
            markers = {}
            index = end
        else:
            assert not markers, f"{doc}:{index + 1}: a marker must sit right above a fenced block"
        index += 1
    return blocks


def is_conversation(block: Block) -> bool:
    lines = [line for line in block.text.splitlines() if line.strip()]
    return bool(lines) and lines[0][0] in "><(" and all(line[0] in "><(" or line.startswith("  ") for line in lines)


def read_examples(guide: Guide) -> list[Example]:
    examples: list[Example] = []
    texts: list[tuple[Block, Example | None]] = []  # each text block, with the yaml block above it
    for block in guide.blocks:
        if block.lang == "yaml":
            examples.append(_example(block, examples))
        elif block.lang == "text":
            texts.append((block, examples[-1] if examples else None))
    for block, above in texts:
        name = block.marker("flow")
        owner = _as_of([example for example in examples if example.kind == "flow" and example.name == name],
                       block.line) if name else above
        assert owner is not None, f"{block.where}: no yaml example to run this against"
        owner.followers.append(block)
    return examples


def _example(block: Block, earlier: list[Example]) -> Example:
    name = block.marker("adds-to")
    if name is None:
        return Example(block, block.text)
    previous = _as_of([example for example in earlier if example.kind == "flow" and example.name == name
                       and not example.block.marker("expect-error")], block.line)
    assert previous is not None, f"{block.where}: adds to flow {name!r}, which no example above shows"
    step, _ = read_yaml(block.text)
    assert isinstance(step, dict), f"{block.where}: a step is a mapping, laid out as in the flow file"
    built = merged(read_yaml(previous.text)[0], step)
    return Example(block, yaml.safe_dump(built, sort_keys=False, allow_unicode=True, width=10_000), previous)


def merged(base: Any, step: Any) -> Any:
    """``step`` laid over ``base``: mappings merge key by key; anything else replaces."""
    if isinstance(base, dict) and isinstance(step, dict):
        return {**base, **{key: merged(base.get(key), value) for key, value in step.items()}}
    return step


# -- conversations ------------------------------------------------------------------------------


@dataclass
class DocTurn:
    """One step of a conversation in a guide: a text sent (``> text``) or time passing
    (``(15m later)``), with the replies (``< reply``) that follow it."""

    doc: str
    line: int
    text: str | None = None
    wait: float | None = None
    replies: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"

    @property
    def label(self) -> str:
        return f"> {self.text}" if self.text is not None else f"({format_duration(self.wait or 0)} later)"


def conversation_turns(block: Block) -> list[DocTurn]:
    turns: list[DocTurn] = []
    for offset, line in enumerate(block.text.splitlines(), start=block.line + 1):
        if not line.strip():
            continue
        wait = _WAIT.match(line)
        if wait:
            turns.append(DocTurn(block.doc, offset, wait=parse_duration(wait.group(1))))
        elif line.startswith("> "):
            turns.append(DocTurn(block.doc, offset, text=line[2:]))
        elif line.startswith("< "):
            assert turns, f"{block.doc}:{offset}: a reply before any text"
            turns[-1].replies.append(line[2:])
        elif line.startswith("  ") and turns and turns[-1].replies:  # the next line of a reply (a menu)
            turns[-1].replies[-1] += "\n" + line[2:]
        else:
            raise AssertionError(f"{block.doc}:{offset}: not a conversation line: {line!r}")
    return turns
