"""What counting for ``/metrics`` costs a webhook, in-process: the calls a message's request makes
(``metrics.webhook``: its outcome and its latency; ``metrics.turn_committed``: the inbox's observer,
on a turn that counts nothing, as most do), in one process and in multiprocess mode (every value in
a file the workers share: ``PROMETHEUS_MULTIPROC_DIR``, measured in a child process since the mode is
chosen when prometheus-client is imported). Also: how long rendering one scrape takes.

Reported: µs per webhook, best of several repeats (timeit's rule), and ms per scrape.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class MetricsResult:
    us_per_webhook: float  # one process
    us_per_webhook_multiprocess: float  # values in files shared by workers
    ms_per_scrape: float  # rendering the whole exposition once, one process
    calls: int
    repeats: int


def measure(calls: int, repeats: int = 5) -> dict[str, float]:
    """In this process, in whatever mode prometheus-client was imported in."""
    from prometheus_client import generate_latest

    from bot import metrics
    from bot.metrics import WebhookOutcome
    from bot.types import Conversation, Inbound, Message, Outcome

    event = Message(Inbound("SM" + "0" * 32, "+15551230000", "+15550001111", "YES"))
    outcome = Outcome(Conversation("+15551230000"))  # no consent change, no timer, no failed lookup
    clock = time.perf_counter
    best = float("inf")
    for _ in range(repeats):
        started = clock()
        for _ in range(calls):
            metrics.turn_committed(event, outcome, False)
            metrics.webhook("sms", WebhookOutcome.ANSWERED, started)
        best = min(best, (clock() - started) / calls)
    scrape = float("inf")
    for _ in range(repeats):
        started = clock()
        generate_latest(metrics.collect_registry())
        scrape = min(scrape, clock() - started)
    return {"us_per_webhook": best * 1e6, "ms_per_scrape": scrape * 1e3}


def run(calls: int, repeats: int = 5) -> MetricsResult:
    single = measure(calls, repeats)
    with tempfile.TemporaryDirectory(prefix="textflow-bench-metrics-") as folder:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": folder}
        child = subprocess.run([sys.executable, "-c", "import json, sys; from bench.metrics_bench import measure; "
                                f"print(json.dumps(measure({calls}, {repeats})))"],
                               cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    multi = json.loads(child.stdout.strip().splitlines()[-1])
    return MetricsResult(single["us_per_webhook"], multi["us_per_webhook"], single["ms_per_scrape"], calls, repeats)


if __name__ == "__main__":
    print(run(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
