"""Where a character of a YAML text value sits in the file, so a finding inside a template
(``{{ rx | upcas }}``) names its own line and column, not the start of the value.

The value YAML gives is not the text as written: quotes, escapes (``\\"``, ``''``), folded lines and
a block scalar's indentation come between them. Rather than re-implement YAML's five scalar styles,
the written text and the value are aligned with the standard library's ``difflib``: what a template
is made of (names, ``{{``, ``|``) is written as it reads, so it always falls in a matching block.
"""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher


@dataclass(frozen=True, slots=True)
class Scalar:
    """A YAML scalar as written in the file (from its first character: a quote, ``|``, ``>`` or
    the text itself), where that starts (1-based), and the value it gives."""

    written: str
    line: int
    col: int
    value: str

    def position_of(self, index: int) -> tuple[int, int]:
        """The 1-based (line, column) in the file of character ``index`` of the value (the next
        character written as it reads, for one that is not: an escape, a folded line break)."""
        offset = len(self.written)
        matcher = SequenceMatcher(None, self.value, self.written, autojunk=False)
        for start, written_start, size in matcher.get_matching_blocks():
            if start + size > index:
                offset = written_start + max(index - start, 0)
                break
        before = self.written[:offset]
        breaks = before.count("\n")
        if breaks == 0:
            return self.line, self.col + offset
        return self.line + breaks, offset - before.rfind("\n")
