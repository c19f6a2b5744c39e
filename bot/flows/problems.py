"""Findings about flow files, located by file, line and column so ops staff can fix them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]
Path = tuple[str | int, ...]  # where in a flow file: ("states", "ask", "replies", 0, "go")


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int
    col: int
    message: str
    severity: Severity = "error"
    hint: str = ""

    def __str__(self) -> str:
        hint = f" ({self.hint})" if self.hint else ""
        return f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.message}{hint}"


@dataclass(frozen=True, slots=True)
class Finding:
    """A problem found in a parsed flow, before it is tied to a file position."""

    path: Path
    message: str
    severity: Severity = "error"
    hint: str = ""
    #: where inside the value at ``path`` (a template) the problem is: an index into its text
    at: int | None = None


class LocatedValueError(ValueError):
    """A model's validator's error about one part of it (a word in a row of ``translations:``):
    ``where`` is that part's path below the model, so the problem points at its own line."""

    def __init__(self, message: str, where: Path) -> None:
        super().__init__(message)
        self.where = where


class FlowLoadError(Exception):
    """Flow files that cannot run. Carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))

    def listing(self) -> str:
        """One indented line per problem, as every caller shows them."""
        return "\n".join(f"  {problem}" for problem in self.problems)
