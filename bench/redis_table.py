"""The table of ``python -m bench redis`` (bench/redis_path.py): its rows as plain dicts, and markdown."""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import Any

TARGET_RATIO = 1.5  # issue 17 item 2: the bot on Redis at least 1.5x the naive handler per bot core
TARGET_SCALING = 0.95  # issue 17 item 3: 2 workers scale at least 0.95x as well as the reference's 2-vs-1
LAYOUTS = {"w1": "1 worker on 1 core", "w2": "2 workers on 2 cores", "p2": "2 server processes on 2 cores"}
_STORE_FRAME = re.compile(r"\((bot/store/redis[^)]*|redis/[^)]*|hiredis[^)]*)\)")


def store_share(path: Path) -> float:
    """The share of the event loop's busy samples spent in the Redis store and its client."""
    total = store = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if "(server.py)" not in stack or not count_text.isdigit():
            continue
        total += int(count_text)
        if _STORE_FRAME.search(stack):
            store += int(count_text)
    return store / total if total else float("nan")


# -- the table ---------------------------------------------------------------------------------------

def _rates(data: dict[str, Any], key: str) -> list[float]:
    return [row["rate"] for row in data["rows"].get(key, [])]


def _cell(values: list[float], digits: int = 0, unit: str = "") -> str:
    if not values:
        return "—"
    median = statistics.median(values)
    text = f"{median:,.{digits}f}{unit}"
    return text + (f" ({min(values):,.{digits}f}–{max(values):,.{digits}f})" if len(values) > 1 else "")


def _paired(a: list[float], b: list[float]) -> list[float]:
    """Round-by-round ratios: rounds were interleaved, so each pair shared the machine's mood."""
    return [x / y for x, y in zip(a, b, strict=False) if y]


def _scalings(data: dict[str, Any], kind: str, layout: str) -> list[float]:
    """Per round: (kind's layout ÷ its 1 worker) ÷ (the reference's same)."""
    own = _paired(_rates(data, f"{kind}-{layout}"), _rates(data, f"{kind}-w1"))
    ref = _paired(_rates(data, f"ref-{layout}"), _rates(data, "ref-w1"))
    return _paired(own, ref)


def _bound(data: dict[str, Any], kind: str) -> float | None:
    """The 2-vs-1 scaling the CPU costs allow when 2 workers share 2 cores with Redis and wrk (with 1
    worker, Redis and wrk have the other core): 2B ÷ (B + R + W), B the server's, R Redis's and W the
    load generator's CPU µs per request, medians of the 1-worker rounds."""
    rounds = [r for r in data["rows"].get(f"{kind}-w1", []) if r["rate"]]
    if not rounds:
        return None
    server = statistics.median(r["server_cpu"] / r["rate"] for r in rounds)
    redis = statistics.median(r["redis"]["cpu_us"] / 1e6 for r in rounds) if "redis" in rounds[0] else 0.0
    generator = statistics.median(r["generator_cpu"] / r["rate"] for r in rounds)
    return 2 * server / (server + redis + generator)


def summary_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The table's rows as plain dicts (measure, bot_text, before_text, reference_text, ratio_text,
    target, met, value): what ``python -m bench`` folds into its one table."""
    rows: list[dict[str, Any]] = []
    kinds = [kind for kind in ("bot", "before") if data["rows"].get(f"{kind}-w1")]

    def row(measure: str, texts: dict[str, str], ratio_text: str, target: str = "", met: bool | None = None,
            **values: Any) -> None:
        rows.append({"measure": measure, "bot_text": texts.get("bot", ""), "before_text": texts.get("before", ""),
                     "reference_text": texts.get("ref", ""), "ratio_text": ratio_text, "target": target, "met": met,
                     **values})

    for layout, label in LAYOUTS.items():
        if not data["rows"].get(f"bot-{layout}"):
            continue
        ratios = {kind: _paired(_rates(data, f"{kind}-{layout}"), _rates(data, f"ref-{layout}")) for kind in kinds}
        ratio = statistics.median(ratios["bot"]) if ratios["bot"] else float("nan")
        per_core = layout == "w1"
        row(f"Redis: throughput, {label} (req/s)",
            {kind: _cell(_rates(data, f"{kind}-{layout}")) for kind in [*kinds, "ref"]},
            " / ".join(f"{kind} {_cell(ratios[kind], 2, '×')}" for kind in kinds),
            f"≥ {TARGET_RATIO}× per bot core" if per_core else "", (ratio >= TARGET_RATIO) if per_core else None,
            value=ratio, bot=statistics.median(_rates(data, f"bot-{layout}")),
            ref=statistics.median(_rates(data, f"ref-{layout}")) if _rates(data, f"ref-{layout}") else None)
    for layout in ("w1", "w2"):
        sqlite = _rates(data, f"sqlite-{layout}")
        if sqlite:
            against = _paired(sqlite, _rates(data, f"ref-{layout}"))
            row(f"the same bot on SQLite (its default), {LAYOUTS[layout]} (req/s), for comparison",
                {"bot": _cell(sqlite), "ref": _cell(_rates(data, f"ref-{layout}"))}, f"sqlite {_cell(against, 2, '×')}",
                value=statistics.median(against))
    for layout in ("w2", "p2"):
        if not data["rows"].get(f"bot-{layout}"):
            continue
        scalings = {kind: _scalings(data, kind, layout) for kind in kinds}
        own = {kind: _paired(_rates(data, f"{kind}-{layout}"), _rates(data, f"{kind}-w1")) for kind in [*kinds, "ref"]}
        value = statistics.median(scalings["bot"]) if scalings["bot"] else float("nan")
        target = layout == "w2"
        row(f"Redis: scaling, {LAYOUTS[layout].split(' on ')[0]} ÷ 1 worker",
            {kind: _cell(own[kind], 2, "×") for kind in own},
            " / ".join(f"{kind} {_cell(scalings[kind], 2, '×')} of the reference's" for kind in kinds),
            f"≥ {TARGET_SCALING}× the reference's (median of rounds)" if target else "",
            (value >= TARGET_SCALING) if target else None, value=value)
    redis = {kind: [r["redis"] for r in data["rows"].get(f"{kind}-w1", []) if "redis" in r] for kind in kinds}
    if any(redis.values()):
        def per(kind: str, field: str) -> list[float]:
            return [entry[field] for entry in redis[kind]]
        row("Redis per webhook, 1 worker: commands (scripts' own included) / read events (trips) / Redis CPU µs",
            {kind: f"{_cell(per(kind, 'commands_total'), 1)} / {_cell(per(kind, 'reads'), 2)} / "
                   f"{_cell(per(kind, 'cpu_us'), 0)}" for kind in kinds}, "")
        cpu = {kind: [r["server_cpu"] / r["rate"] * 1e6 for r in data["rows"].get(f"{kind}-w1", []) if r["rate"]]
               for kind in [*kinds, "ref"]}
        row("server CPU per request, 1 worker (µs)", {kind: _cell(values) for kind, values in cpu.items()}, "")
        found = {kind: _bound(data, kind) for kind in [*kinds, "ref"]}
        bounds = {kind: bound for kind, bound in found.items() if bound is not None}
        if len(bounds) == len(found):
            row("2 workers ÷ 1 worker if the 2 cores were the only limit: 2B ÷ (B + Redis + wrk), µs per request",
                {kind: f"{bound:.2f}×" for kind, bound in bounds.items()},
                " / ".join(f"{kind} {bounds[kind] / bounds['ref']:.2f}× of the reference's" for kind in kinds),
                value=bounds["bot"] / bounds["ref"])
    for kind, found in data.get("trips", {}).items():
        phases = found["phases"]
        row(f"Redis trips / commands per turn, by phase ({kind})",
            {kind: ", ".join(f"{name} {phase['trips']:.0f} / {phase['commands_total']:.0f}"
                             for name, phase in phases.items())
             + f"; renewal {found['renewal']['trips']} trips per {found['renewal']['held_seconds']:g} s held"},
            f"store CPU per turn, in-process, 50 at once: "
            f"{found['cpu_us_per_turn'] - found['memory_cpu_us_per_turn']:.0f} µs "
            f"({found['cpu_us_per_turn']:.0f} − {found['memory_cpu_us_per_turn']:.0f} on the in-memory store)"
            + (f"; Redis's own CPU per turn meanwhile: {found['redis_cpu']['cpu_us_per_turn']:.0f} µs "
               f"({found['redis_cpu']['cpu_us_range'][0]:.0f}–{found['redis_cpu']['cpu_us_range'][1]:.0f})"
               if found.get("redis_cpu") else ""),
            value=found["cpu_us_per_turn"] - found["memory_cpu_us_per_turn"],
            redis_cpu_us=found["redis_cpu"]["cpu_us_per_turn"] if found.get("redis_cpu") else None)
    for kind, found in data.get("profile", {}).items():
        row(f"profile ({kind}): share of the bot's busy samples in the Redis store and client", {kind: ""},
            f"{found['store_share']:.0%}", value=found["store_share"])
    return rows


def table(data: dict[str, Any]) -> str:
    kinds = [kind for kind in ("bot", "before") if data["rows"].get(f"{kind}-w1")]
    names = {"bot": "bot on Redis", "before": "before (--before)"}
    lines = ["| measure | " + " | ".join(names[kind] for kind in kinds) + " | naive handler | ratio | target | |",
             "|---|" + "---:|" * (len(kinds) + 1) + "---|---|---|"]
    for row in summary_rows(data):
        cells = [row["bot_text"], *([row["before_text"]] if "before" in kinds else []), row["reference_text"]]
        mark = "" if row["met"] is None else ("✓" if row["met"] else "✗")
        lines.append(f"| {row['measure']} | " + " | ".join(cells) + f" | {row['ratio_text']} | {row['target']} | "
                     f"{mark} |")
    commands = {kind: [r["redis"]["commands"] for r in data["rows"].get(f"{kind}-w1", []) if "redis" in r]
                for kind in kinds}
    for kind, runs in commands.items():
        if runs:
            names_ = sorted({name for run in runs for name in run})
            median = {name: statistics.median(run.get(name, 0.0) for run in runs) for name in names_}
            shown = ", ".join(f"{name} {value:.2f}" for name, value in sorted(median.items(), key=lambda kv: -kv[1])
                              if value >= 0.01)
            lines.append(f"\nRedis commands per answered webhook, {kind} (1 worker, median of rounds): "
                         f"{sum(median.values()):.2f} — {shown}")
    for kind, found in data.get("profile", {}).items():
        lines.append(f"\nprofile of {kind} under load ({found['file']}): {found['store_share']:.0%} of the busy "
                     "samples in the Redis store and client; self time, top functions:")
        lines += [f"  {entry['share']:6.1%}  {entry['function']}" for entry in found["top"]["self"][:12]]
    return "\n".join(lines)
