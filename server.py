"""Start the bot: settings from the environment/.env, flows checked, then uvicorn.

    python server.py            # needs TWILIO_AUTH_TOKEN (or DEV_MODE=1 for local tries)
    python server.py --dev      # local dev mode: loopback only, unsigned requests accepted
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
from types import FrameType
from typing import Any

import uvicorn

from bot.app import StartUpRefused, create_app, prepare
from bot.http_limits import BoundedHttpToolsProtocol
from bot.json_logs import uvicorn_log_config
from bot.metrics import prepare_worker_files
from bot.metrics_endpoint import serves_metrics
from bot.shutdown import shutdown_grace


def _stop(signum: int, frame: FrameType | None) -> None:
    """SIGTERM outside uvicorn's own handling (still starting, or uvicorn raising it again once it
    has shut down gracefully): stop, successfully: an asked-for stop is no failure to a supervisor."""
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the textflow SMS bot.")
    parser.add_argument("--dev", action="store_true",
                        help="local dev mode (same as DEV_MODE=1): loopback only; without "
                             "TWILIO_AUTH_TOKEN, unsigned requests are accepted")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    if args.dev:
        os.environ["DEV_MODE"] = "1"
    try:
        settings, flows = prepare()  # the same checks as the uvicorn factory, bot.app:app_from_environment
    except StartUpRefused as refused:
        print(refused.message, file=sys.stderr)
        return refused.exit_code
    for warning in flows.warnings:
        logging.getLogger("bot.flows").warning("%s", warning)
    logging.getLogger("bot").info("loaded flows %s from %s; store %s", ", ".join(sorted(flows.flows)),
                                  settings.flows_dir, settings.store_url)
    # httptools with a cap on the request head (bot/http_limits.py): httptools alone has none.
    options: dict[str, Any] = {"host": settings.host, "port": settings.port, "http": BoundedHttpToolsProtocol,
                               "loop": "uvloop", "access_log": False, "log_level": settings.log_level,
                               "server_header": False, "date_header": False,
                               "timeout_graceful_shutdown": shutdown_grace(settings.slow_reply_seconds)}
    if settings.log_format == "json":  # uvicorn's own lines (its error log) as JSON too
        options["log_config"] = uvicorn_log_config()
    if settings.workers > 1:
        # Each worker process builds its own app from the same (already checked) settings and flows,
        # and counts for /metrics in files they share, so any worker's scrape adds them all up. On
        # SIGTERM uvicorn's supervisor sends each worker SIGTERM, waits for them to stop as one
        # server does (bot/shutdown.py), and returns.
        metrics_folder = prepare_worker_files(settings.workers, serves_metrics(settings))
        try:
            uvicorn.run("bot.app:app_from_environment", factory=True, workers=settings.workers, **options)
        finally:
            if metrics_folder is not None:
                shutil.rmtree(metrics_folder, ignore_errors=True)
    else:
        uvicorn.run(create_app(settings, flows, whole_process=True), **options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
