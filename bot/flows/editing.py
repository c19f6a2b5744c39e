"""Changing a flow file from the console: which file a flow's name maps to, an edit checked with the
other flows before it is written, and a write that no reader ever sees half done.

The file is always chosen here from the flow's name, never taken from the browser: the flow's own
file when the folder has it (``status.yaml`` holds ``order_status``), else ``FOLDER/NAME.yaml`` for
a new flow. An edit is checked as the server would load it, with the other files and the program
file. It is saved only when it has no errors of its own and causes none elsewhere; errors other
files already had do not block it (the hot reload keeps refusing the folder until they are fixed,
which the console says). The text's ``flow:`` must stay the flow's name: renaming is a change to
several files (``enter:``, broadcasts, tests) and belongs in git.

Writing goes to a temporary file in the same folder, flushed to disk, then renamed over the flow's
file, so the hot reload and git see the old file or the new one, never a mix; the temporary name
ends in ``.tmp``, which neither the loader nor the reload watcher reads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from bot.flows import graph
from bot.flows.checks import CheckOptions
from bot.flows.compile import CompiledFlow, compile_flow
from bot.flows.loader import PROGRAM_FILE, ParsedFlow, check_folder
from bot.flows.problems import Problem
from bot.flows.schema_types import NAME_PATTERN

_NAME = re.compile(NAME_PATTERN)
MAX_NAME_LENGTH = 200  # a file name (NAME.yaml) has at most 255 bytes
NEW_FILE_MODE = 0o644
_saving = threading.Lock()  # one save at a time in this process: the check of the base and the write


class EditRefused(Exception):
    """The edit cannot be saved (or the flow not edited here); the message says why and what to do."""


def is_flow_name(name: str) -> bool:
    """A name a flow may have (``flow:``): the only thing a URL may choose a file by."""
    return len(name) <= MAX_NAME_LENGTH and _NAME.fullmatch(name) is not None


def digest(text: str) -> str:
    """What an edit started from, so a save notices the file changed on disk meanwhile ("" : no file)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32] if text else ""


def normalised(text: str) -> str:
    """The text as saved: line ends as git keeps them (a browser sends CRLF), ending in one newline."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") or not text else text + "\n"


@dataclass
class FlowFolder:
    """A folder's flow files as lint sees them: each flow that validated, by name, and every problem."""

    folder: Path
    problems: list[Problem]
    flows: dict[str, ParsedFlow]

    @classmethod
    def read(cls, folder: str | Path, options: CheckOptions = CheckOptions()) -> FlowFolder:
        folder = Path(folder)
        problems, parsed = check_folder(folder, options)
        flows: dict[str, ParsedFlow] = {}
        for item in parsed:
            flows.setdefault(item.model.flow, item)  # a second file of the same name is an error lint reports
        return cls(folder, problems, flows)

    def problems_in(self, file: Path) -> list[Problem]:
        return [problem for problem in self.problems if Path(problem.file) == file]

    def outside_flows(self) -> list[Problem]:
        """Problems of files that are no (valid) flow: the program file, unreadable or invalid files."""
        files = {item.file for item in self.flows.values()}
        return [problem for problem in self.problems if Path(problem.file) not in files]

    def file_for(self, name: str) -> Path:
        """The file flow ``name`` lives in, or will: its own file, else a file of that name that holds
        no valid flow yet (to fix it here), else ``FOLDER/NAME.yaml``, new."""
        if not is_flow_name(name):
            raise EditRefused(f"{name[:80]!r} is not a flow name: letters, digits and _, not starting with a digit")
        known = self.flows.get(name)
        if known is not None:
            target = known.file
        else:
            if f"{name}.yaml" == PROGRAM_FILE:
                raise EditRefused(f"{PROGRAM_FILE} is the program file, not a flow: edit it in git")
            holders = {item.file: item.model.flow for item in self.flows.values()}
            candidates = [self.folder / f"{name}{suffix}" for suffix in (".yaml", ".yml")]
            target = next((path for path in candidates if path.exists() and path not in holders), candidates[0])
            if target in holders:
                raise EditRefused(f"{target.name} holds flow {holders[target]!r}: a new flow {name!r} needs a "
                                  "file of its own, so choose another name")
        if target.is_symlink() or (target.exists() and not target.is_file()):
            raise EditRefused(f"{target} is not a plain file (a link, or a folder): edit it in git")
        return target


@dataclass
class Draft:
    """An edit of flow ``name``, checked with the folder's other files as the server would load them."""

    name: str
    file: Path
    text: str
    problems: list[Problem]  # the folder's, with the draft standing in for its file
    blocking: list[Problem]  # the errors that refuse saving it
    flow: ParsedFlow | None  # the draft, when it validated
    compiled: CompiledFlow | None  # …and compiled, when it has no errors of its own

    @property
    def own(self) -> list[Problem]:
        return [problem for problem in self.problems if Path(problem.file) == self.file]

    @property
    def mermaid(self) -> str | None:
        return graph.mermaid(self.compiled) if self.compiled is not None else None


def check_draft(folder: FlowFolder, name: str, text: str, options: CheckOptions = CheckOptions()) -> Draft:
    """Check ``text`` as the new content of flow ``name``'s file (EditRefused: no file may hold it)."""
    file = folder.file_for(name)
    text = normalised(text)
    problems, parsed = check_folder(folder.folder, options, {file: text})
    flow = next((item for item in parsed if item.file == file), None)
    if flow is not None and flow.model.flow != name:
        line, col = flow.source.locate(("flow",))
        problems.insert(0, Problem(str(file), line, col, f"this is flow {name!r}, so its flow: must stay {name!r}",
                                   hint="to rename a flow, rename it in git: its file, and every enter: "
                                        "and broadcast that names it"))
    had = {str(problem) for problem in folder.problems if problem.severity == "error"}
    blocking = [problem for problem in problems if problem.severity == "error"
                and (Path(problem.file) == file or str(problem) not in had)]
    own_errors = any(problem.severity == "error" and Path(problem.file) == file for problem in problems)
    compiled = compile_flow(flow.model, str(file)) if flow is not None and not own_errors else None
    return Draft(name, file, text, problems, blocking, flow, compiled)


def save_draft(draft: Draft, base: str | None) -> None:
    """Write the draft over its file. ``base`` is the :func:`digest` of the text the edit started
    from ("" for a flow that had no file): a file changed on disk since is not overwritten."""
    if draft.blocking:
        count = len(draft.blocking)
        raise EditRefused(f"not saved: {count} error{'s' * (count != 1)} to fix first")
    with _saving:
        try:
            current = digest(draft.file.read_text(encoding="utf-8")) if draft.file.exists() else ""
        except (OSError, UnicodeDecodeError) as error:
            raise EditRefused(f"cannot read {draft.file} to save over it: {error}") from None
        if base is not None and current != base:
            raise EditRefused(f"not saved: {draft.file.name} changed on disk since you opened it (someone "
                              "saved it, or git changed it). Copy your text, reload the page, and make your "
                              "change again")
        try:
            write_atomically(draft.file, draft.text)
        except OSError as error:
            raise EditRefused(f"cannot write {draft.file}: {error.strerror or error}") from None


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename: a temporary file in the same folder (so the
    rename cannot cross file systems), flushed to disk first, keeping the file's permissions."""
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else NEW_FILE_MODE
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as written:
            written.write(text.encode("utf-8"))
            written.flush()
            os.fsync(written.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a crash
    finally:
        os.close(folder)
