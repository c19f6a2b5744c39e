"""What each message of a flow costs as SMS, for people who write flows (the console's flow page).

Every text the flow sends, where it is in its file, its encoding and segment count (as ``chat``
shows a reply: "[1 segment, GSM-7]"), and for a text in UCS-2 the character that forced it. Texts
with ``{{ values }}`` are measured as lint measures them: each value as
``CheckOptions.assumed_variable_length`` characters. A text sent with pictures is one MMS.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot import segments
from bot.flows.checks import CheckOptions
from bot.flows.media_checks import mms_paths
from bot.flows.problems import Path
from bot.flows.schema import Flow
from bot.flows.template_checks import measured_text
from bot.flows.walk import all_template_sources
from bot.flows.yamlsource import SourceMap


@dataclass(frozen=True)
class MessageCost:
    state: str  # "" for the flow's ``anywhere`` replies
    path: Path
    line: int
    text: str  # as written, with its {{ values }}
    cost: segments.Cost
    templated: bool  # measured with each {{ value }} as ``assumed_variable_length`` characters
    mms: bool = False  # goes with pictures, as one MMS

    @property
    def label(self) -> str:
        """As ``chat`` labels a reply: "1 segment, GSM-7", or "MMS" for one sent with pictures."""
        return "MMS (with pictures)" if self.mms else str(self.cost)

    @property
    def forced_by(self) -> str | None:
        """The character that made this text UCS-2, named so it can be found: '’' (U+2019 …)."""
        if self.mms or self.cost.first_non_gsm is None:
            return None
        return segments.describe(self.cost.first_non_gsm)

    @property
    def where(self) -> str:
        """The field, as a reader of the file finds it: ``say[0]``, ``replies[2].say[0]``."""
        parts = self.path[2:] if self.path[:1] == ("states",) else self.path
        label = ""
        for part in parts:
            label += f"[{part}]" if isinstance(part, int) else (f".{part}" if label else part)
        return label


def is_sent(path: Path) -> bool:
    """Whether the template at ``path`` is a text the bot sends, not a request, a computed value, a
    picture's address or the number a notification goes to (a fetch's ``fallback`` and
    ``not_found`` are texts). By the field's place, never by a word anywhere in the path: a state
    may be called ``fetch``."""
    field = path[2] if len(path) > 2 else None  # ("states", NAME, field, …) or ("anywhere", i, "say", j)
    if field == "fetch":
        return path[-1] in ("fallback", "not_found")
    if field == "notify":
        return path[3] == "say"
    return field not in ("set", "branch", "media")


def message_costs(flow: Flow, source: SourceMap, options: CheckOptions = CheckOptions()) -> list[MessageCost]:
    """Every text the flow sends, in the file's order, with what it costs."""
    placeholder = "x" * options.assumed_variable_length
    with_pictures = mms_paths(flow)
    found = []
    for state, path, text, _ in all_template_sources(flow):
        if not is_sent(path):
            continue
        measured = measured_text(text, placeholder)
        line, _col = source.locate(path)
        found.append(MessageCost(state, path, line, text, segments.cost(measured), measured != text,
                                 mms=path in with_pictures))
    return sorted(found, key=lambda message: message.line)
