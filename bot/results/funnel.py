"""A flow's results as a funnel: its states in the order people go through them, with counts.

The main path starts at the flow's ``start`` and, at each state, goes on to the next state most
runs reached (on a tie, the one the flow names first: the first reply before the timeout), so the
funnel shows where people really went, and drops out. States off that path follow, in the order the
flow lists them, then any state that has counts but is no longer in the flow. Pure: the console's
Results page draws it, and ``python -m bot results`` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.flows.compile import CompiledFlow
from bot.flows.schema import END
from bot.store.base import FlowResults
from bot.types import RunOutcome

#: How each way a run ends is named to people (the funnel's last rows, the CLI and the console).
OUTCOME_NAMES = {RunOutcome.FINISHED: "finished", RunOutcome.EXPIRED: "expired", RunOutcome.OPTED_OUT: "opted out",
                 RunOutcome.LEFT: "left for another flow", RunOutcome.RESET: "reset"}

@dataclass(frozen=True, slots=True)
class FunnelStep:
    """One state: how many runs reached it, their share of the runs started (0.0 when none
    started), and whether it is on the main path."""

    state: str
    count: int
    share: float
    main: bool


@dataclass(frozen=True, slots=True)
class Funnel:
    flow: str
    started: int
    steps: tuple[FunnelStep, ...]  # the main path from ``start``, then the other states
    ended: tuple[tuple[RunOutcome, int], ...]  # each way of ending, in RunOutcome's order (zeros too)
    in_progress: int  # started, not ended (and not yet past their expiry)

    def share(self, count: int) -> float:
        return count / self.started if self.started else 0.0


def funnel(results: FlowResults, flow: CompiledFlow | None) -> Funnel:
    """``results`` along ``flow`` (None: the flow is no longer loaded; states by count)."""
    reached = results.reached
    path = main_path(flow, reached) if flow is not None else []
    others = [name for name in (flow.states if flow is not None else ()) if name not in path]
    others += sorted((name for name in reached if name not in path and name not in others),
                     key=lambda name: (-reached[name], name))

    def step(name: str, main: bool) -> FunnelStep:
        count = reached.get(name, 0)
        return FunnelStep(name, count, count / results.started if results.started else 0.0, main)

    return Funnel(results.flow, results.started,
                  tuple([step(name, True) for name in path] + [step(name, False) for name in others]),
                  tuple((outcome, results.count(outcome)) for outcome in RunOutcome), results.in_progress)


def main_path(flow: CompiledFlow, reached: dict[str, int]) -> list[str]:
    """From ``start``, each time to the next state most runs reached (ties: the first the flow
    names), never back to a state already on the path; it stops where no state follows."""
    following: dict[str, list[str]] = {}
    for spec in flow.transitions:
        dest = spec["dest"]
        if dest is not None and dest != END and dest in flow.states and dest not in following.get(spec["source"], []):
            following.setdefault(spec["source"], []).append(dest)
    path = [flow.start] if flow.start in flow.states else []
    while path:
        ahead = [name for name in following.get(path[-1], []) if name not in path]
        if not ahead:
            break
        path.append(max(ahead, key=lambda name: (reached.get(name, 0), -ahead.index(name))))
    return path
