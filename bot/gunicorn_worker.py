"""Serving the bot under gunicorn (``deploy/gunicorn.conf.py``): the worker class, and the master's
start-up check and clean-up, so that gunicorn serves and refuses exactly as ``server.py`` does.

The worker: uvicorn-worker's ``UvicornWorker`` chooses its HTTP parser and event loop itself and
leaves uvicorn's defaults on; ``TextflowWorker`` runs uvicorn as server.py configures it: httptools
with the cap on a request head (``bot/http_limits.py``: httptools alone buffers a head of any size),
uvloop, no access log, no ``server`` or ``date`` header,
and a bounded wait for the webhooks in flight when it is told to stop.

The master: ``on_starting`` runs once, before any worker is forked. It tells the bot what gunicorn
decided (``WORKERS`` from ``--workers``, ``HOST``/``PORT`` from ``--bind``), prepares the folder the
workers count ``/metrics`` in together, and runs the checks every start of the bot runs
(``bot.app.prepare``: settings, flows, the store opened, and so migrated, once): a refusal prints
its ``error: …`` lines and gunicorn exits with the bot's exit code before it listens. A worker
whose app factory refuses later (the flows broken on disk when a worker is replaced) makes gunicorn
stop instead of forking replacements that fail the same way, forever.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from typing import Any

from gunicorn.arbiter import Arbiter
from uvicorn_worker import UvicornWorker

from bot.http_limits import BoundedHttpToolsProtocol
from bot.shutdown import shutdown_grace

#: prometheus-client's variable (``bot.metrics.MULTIPROC_ENV``), named here because importing
#: bot.metrics would import prometheus-client, which reads it once, on import (see ``_count_together``).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class TextflowWorker(UvicornWorker):
    """A gunicorn worker serving the bot's ASGI app with uvicorn, configured as server.py does."""

    CONFIG_KWARGS: dict[str, Any] = {"loop": "uvloop", "http": BoundedHttpToolsProtocol, "access_log": False,
                                     "server_header": False, "date_header": False}

    def load_wsgi(self) -> None:
        """Build the app (gunicorn's ``wsgi_app``: the factory ``bot.app:app_from_environment()``).

        The factory refuses bad settings or broken flows with its ``error: …`` lines and
        ``SystemExit(1 or 2)``; gunicorn would fork a new worker for one that exited so, again and
        again. Exiting with gunicorn's own "the app failed to load" code makes it stop instead.
        """
        try:
            super().load_wsgi()
        except SystemExit as refused:
            if refused.code in (0, None):
                raise
            sys.exit(Arbiter.APP_LOAD_ERROR)
        from bot.settings import load_settings  # the factory has just read (and checked) the same settings

        self.config.timeout_graceful_shutdown = shutdown_grace(load_settings().slow_reply_seconds)


class _Started:
    """What ``on_starting`` made and ``on_exit`` removes: the metrics folder, when it created one."""

    metrics_folder: str | None = None


def on_starting(server: Arbiter) -> None:
    """gunicorn's ``on_starting`` hook, in the master before it listens or forks: see the module's doc."""
    _tell_the_bot(server)
    _count_together(server.cfg.workers)
    from bot.app import StartUpRefused, prepare  # only now: it imports bot.metrics (see _count_together)

    try:
        settings, flows = prepare()
    except StartUpRefused as refused:
        print(refused.message, file=sys.stderr, flush=True)
        on_exit(server)
        sys.exit(refused.exit_code)
    for warning in flows.warnings:
        logging.getLogger("bot.flows").warning("%s", warning)
    logging.getLogger("bot").info("gunicorn: %d worker(s) on %s; flows %s from %s; store %s", server.cfg.workers,
                                  ", ".join(server.cfg.bind),
                                  ", ".join(sorted(flows.flows)), settings.flows_dir, settings.store_url)


def on_exit(server: Arbiter) -> None:
    """gunicorn's ``on_exit`` hook: remove the metrics folder ``on_starting`` created (never one the
    operator named in PROMETHEUS_MULTIPROC_DIR)."""
    if _Started.metrics_folder is not None:
        shutil.rmtree(_Started.metrics_folder, ignore_errors=True)
        _Started.metrics_folder = None


def _tell_the_bot(server: Arbiter) -> None:
    """The bot's settings say what gunicorn does: ``WORKERS`` (a memory store refuses more than one;
    metrics count together), and ``HOST``/``PORT`` when gunicorn listens on one TCP address (how the
    bot reaches itself for a ``fetch`` of ``/…``, and dev mode's loopback check)."""
    os.environ["WORKERS"] = str(server.cfg.workers)
    addresses = server.cfg.address
    if len(addresses) == 1 and isinstance(addresses[0], tuple):
        host, port = addresses[0][:2]
        os.environ["HOST"], os.environ["PORT"] = str(host), str(port)


def _count_together(workers: int) -> None:
    """Several workers count ``/metrics`` in one folder of files (prometheus-client's multiprocess
    mode), as server.py sets up. The variable must be set before prometheus-client is first
    imported in this process: gunicorn forks the workers from it, and they inherit the mode it chose."""
    if "prometheus_client" in sys.modules:  # a change that imports it earlier would count per worker, silently
        raise RuntimeError("prometheus-client was imported in gunicorn's master before on_starting")
    serves = workers > 1 and _serves_metrics()
    if serves and MULTIPROC_ENV not in os.environ:
        _Started.metrics_folder = tempfile.mkdtemp(prefix="textflow-metrics-")
        os.environ[MULTIPROC_ENV] = _Started.metrics_folder
    try:
        from bot.metrics import prepare_worker_files
    except RuntimeError as error:  # PROMETHEUS_MULTIPROC_DIR empty or not a folder it can create
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
    prepare_worker_files(workers, serves)  # a folder the operator named: the last run's files are removed


def _serves_metrics() -> bool:
    """Whether ``/metrics`` exists (``bot.metrics_endpoint.serves_metrics``, which imports
    prometheus-client); False when the settings are wrong, which ``prepare`` then reports."""
    from bot.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError:
        return False
    return bool(settings.metrics_token.get_secret_value()) or bool(settings.admin_password)
