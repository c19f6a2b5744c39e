"""What every part of the benchmark writes, so ``python -m bench all`` can put them in one table.

A part (the main comparison, ``redis``, ``broadcast``, ``results``) writes one JSON file to
``bench/results/``: ``<part>-<time>.json`` holding ``part``, ``meta`` (date, commit, machine) and
``summary``, a list of rows as :func:`row` makes them.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def row(measure: str, bot: str, reference: str = "", ratio: str = "", target: str = "", met: bool | None = None,
        **values: Any) -> dict[str, Any]:
    """One line of the table: the measure, the bot's figure (median, with the range over rounds in
    brackets), the figure it is compared with, their ratio, the target and whether it was met."""
    return {"measure": measure, "bot_text": bot, "reference_text": reference, "ratio_text": ratio,
            "target": target, "met": met, **values}


def part_meta() -> dict[str, Any]:
    """When, on what, at which commit (and whether ``bot/`` had changes not committed)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    return {"date": datetime.now().isoformat(timespec="seconds"), "commit": git("rev-parse", "--short", "HEAD"),
            "bot_changed": bool(git("status", "--porcelain", "bot")), "cpus": os.cpu_count(),
            "python": platform.python_version(), "machine": platform.machine()}


def write_part(folder: Path, part: str, data: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{part}-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"part": part, **data}, indent=2, default=str) + "\n")
    return path
