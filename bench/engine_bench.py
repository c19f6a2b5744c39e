"""The engine alone, in-process: ``Engine.handle`` on the benchmark flow — route, transition,
render — with no HTTP, no store and no event loop (the coroutine is driven by hand: the
benchmark flow never awaits I/O, and if it did this would say so instead of timing it).

One cycle is the conversation the load sends: STATUS on a fresh ``Conversation`` (trigger),
the order number on the continuing one (pattern, save, templated reply), YES (answer, templated
reply, end of flow). Reported: µs per message, the best of several repeats (timeit's rule: the
minimum is the least disturbed by a noisy machine), overall and per step.
"""

from __future__ import annotations

import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.webhooks import order_number, sender_number
from bot.engine import Engine
from bot.flows.loader import load_flows
from bot.types import Conversation, Inbound, Message, Outcome


class _NoFetch:
    async def get_json(self, url: str, timeout: float) -> Any:
        raise AssertionError("the benchmark flow must not fetch")


def _drive(coroutine: Coroutine[Any, Any, Outcome]) -> Outcome:
    try:
        coroutine.send(None)
    except StopIteration as finished:
        return finished.value
    coroutine.close()
    raise RuntimeError("Engine.handle waited on I/O: the engine benchmark needs a flow without fetch")


@dataclass
class EngineResult:
    us_per_message: float
    steps: dict[str, float]  # µs per message by step
    messages: int
    repeats: int


def run(flows_dir: Path, cycles: int, repeats: int = 5) -> EngineResult:
    engine = Engine(load_flows(flows_dir), _NoFetch())
    senders = [sender_number(index) for index in range(min(cycles, 10_000))]
    messages = [(Inbound(f"SM{index:032x}", sender, "+15550001111", "STATUS"),
                 Inbound(f"SM{index:031x}1", sender, "+15550001111", order_number(sender)),
                 Inbound(f"SM{index:031x}2", sender, "+15550001111", "YES"))
                for index, sender in enumerate(senders)]
    names = ("STATUS (fresh conversation)", "order number (continuing)", "YES (continuing, ends)")
    clock = time.perf_counter_ns
    best = [float("inf")] * 3
    for _ in range(repeats):  # keep the repeat with the lowest total (timeit's rule: least disturbed)
        spent = [0, 0, 0]
        for index in range(cycles):
            status, number, yes = messages[index % len(messages)]
            conversation = Conversation(status.sender)
            t0 = clock()
            outcome = _drive(engine.step(conversation, Message(status), False))
            t1 = clock()
            outcome = _drive(engine.step(outcome.conversation, Message(number), False))
            t2 = clock()
            outcome = _drive(engine.step(outcome.conversation, Message(yes), False))
            t3 = clock()
            spent[0] += t1 - t0
            spent[1] += t2 - t1
            spent[2] += t3 - t2
            if index == 0 and (len(outcome.replies) != 1 or outcome.conversation.active):
                raise RuntimeError(f"the benchmark flow did not walk as expected: {outcome}")
        if sum(spent) / cycles / 1000 < sum(best):
            best = [s / cycles / 1000 for s in spent]
    return EngineResult(sum(best) / 3, dict(zip(names, best, strict=True)), cycles * 3, repeats)
