"""``python -m bench all`` runs every part of the benchmark and prints one table; ``python -m bench
table`` prints that table from the newest result of each part already in ``bench/results/``.

The parts (each also runs on its own, see bench/README.md):

* ``main`` (``python -m bench``): the bot against the naive handler on SQLite — throughput per
  core, latency, 2 workers' scaling, a million stored conversations, the engine alone;
* ``redis`` (``python -m bench redis``): the same comparison with the bot on Redis;
* ``broadcast`` (``python -m bench broadcast``): a million-row broadcast, pacing, and replies while
  a broadcast runs;
* ``results`` (``python -m bench results``): what results cost a turn, and a query on a million runs.

Each writes ``bench/results/<part>-<time>.json`` with its ``summary`` rows (``bench/parts.py``);
the table is those rows, part by part, with the commit and date each was measured at.
"""

from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.parts import RESULTS


@dataclass(frozen=True)
class Part:
    name: str
    title: str
    pattern: str  # its JSON files in bench/results/
    module: str  # its main(argv)
    quick: tuple[str, ...]  # its arguments for a smoke run

    def main(self) -> Callable[[list[str]], int]:
        return importlib.import_module(self.module).main  # type: ignore[no-any-return]


PARTS = (
    Part("main", "the bot on SQLite (the default) against the naive handler", "bench-*.json", "bench.run",
         ("--quick",)),
    Part("redis", "the scale-out path: the bot on Redis", "redis-*.json", "bench.redis_path", ("--quick",)),
    Part("broadcast", "broadcasts at a million", "broadcast-*.json", "bench.broadcast_bench", ("--quick",)),
    Part("results", "results", "results-*.json", "bench.results_bench",
         ("--runs", "20000", "--turns", "600", "--rounds", "2")),
)


def newest(part: Part, folder: Path, quick: bool) -> Path | None:
    """The part's newest result (a smoke run's only when ``quick``: its numbers are not comparable;
    never a run of some of its parts, ``--parts``: its other rows would be missing)."""
    found = [path for path in folder.glob(part.pattern)
             if (quick or not path.stem.endswith("-quick")) and "-partial" not in path.stem]
    found = [path for path in found if _part_of(path) in (part.name, None)]
    return max(found, key=lambda path: path.stat().st_mtime, default=None)


def _part_of(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("part")  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return "unreadable"


def table(folder: Path, quick: bool = False) -> str:
    """One markdown table: each part's rows under its title, with where and when it was measured."""
    lines = ["| measure | bot | compared with | ratio | target | |", "|---|---:|---:|---|---|---|"]
    notes = []
    for part in PARTS:
        path = newest(part, folder, quick)
        if path is None:
            command = "python -m bench" + ("" if part.name == "main" else f" {part.name}")
            lines.append(f"| **{part.title}**: not measured yet (`{command}`) | | | | | |")
            continue
        data: dict[str, Any] = json.loads(path.read_text())
        meta = data.get("meta", {})
        lines.append(f"| **{part.title}** | | | | | |")
        for entry in data.get("summary", []):
            met = entry.get("met")
            mark = "" if met is None else ("✓" if met else "✗")
            cells = [entry.get("measure", ""), entry.get("bot_text", ""), entry.get("reference_text", ""),
                     entry.get("ratio_text", ""), entry.get("target", ""), mark]
            lines.append("| " + " | ".join(str(cell).replace("|", "/") for cell in cells) + " |")
        changed = " (with changes to bot/ not committed)" if meta.get("bot_changed") else ""
        notes.append(f"{part.name}: {path.name}, {meta.get('date', '?')}, commit {meta.get('commit', '?')}{changed}")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {note}" for note in notes)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench {all,table}", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("all", "table"))
    parser.add_argument("--quick", action="store_true", help="smoke runs of every part (numbers not comparable)")
    parser.add_argument("--skip", action="append", default=[], choices=[part.name for part in PARTS],
                        help="with all: leave this part out (its newest result still shows)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    failed = []
    if args.command == "all":
        for part in PARTS:
            if part.name in args.skip:
                continue
            print(f"\n=== {part.name}: {part.title} ===", flush=True)
            status = part.main()([*(part.quick if args.quick else ()), "--results-dir", str(args.results_dir)])
            if status:
                failed.append(f"{part.name} (exit {status})")
    text = table(args.results_dir, args.quick)
    print(f"\n## textflow benchmark, every part — {datetime.now():%Y-%m-%d %H:%M}\n\n{text}")
    if args.command == "all":
        path = args.results_dir / f"all-{datetime.now():%Y%m%d-%H%M%S}{'-quick' if args.quick else ''}.md"
        path.write_text(text + "\n")
        print(f"\ntable: {path}")
    if failed:
        print("FAILED: " + ", ".join(failed))
    return 1 if failed else 0
