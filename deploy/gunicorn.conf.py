"""gunicorn's configuration for textflow: the app factory, served by uvicorn workers as server.py serves it.

    .venv/bin/gunicorn --config deploy/gunicorn.conf.py      # settings in the environment

The bot's own settings, from the environment (systemd's EnvironmentFile), say everything here
(this file reads the environment only: a ``.env`` file the bot itself would read is not seen here,
so keep these settings in the environment):
``HOST``/``PORT`` (default 127.0.0.1:8000, behind nginx: deploy/nginx.conf), ``WORKERS``,
``LOG_LEVEL`` and ``LOG_FORMAT``. gunicorn's options still win over them (``--bind``, ``--workers``,
or GUNICORN_CMD_ARGS), and the bot is told what gunicorn chose (bot/gunicorn_worker.py).

Before any worker starts, the master checks what every start of the bot checks (settings, flows,
the store, migrated once): a refusal prints ``error: …`` and gunicorn exits with the bot's code
(1 or 2) before it listens, so systemd shows the unit failed with the reason in the journal.
"""

import os
import sys
from pathlib import Path


def _setting(name: str, default: str) -> str:
    """A bot setting as bot/settings.py reads it: unset or blank means the default."""
    return os.environ.get(name, "").strip() or default


def _workers() -> int:
    raw = _setting("WORKERS", "1")
    if not raw.isdigit() or int(raw) < 1:
        print(f"error: WORKERS must be a whole number, 1 or more (got {raw!r})", file=sys.stderr)
        raise SystemExit(2)
    return int(raw)


def _address(host: str, port: str) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# The project folder (this file's parent's parent) on the import path, wherever gunicorn runs from.
pythonpath = str(Path(__file__).resolve().parent.parent)
# The factory, called in each worker: it refuses bad settings and broken flows as server.py does.
wsgi_app = "bot.app:app_from_environment()"
# uvicorn with the head-size cap, uvloop, no access log and no server/date header (bot/gunicorn_worker.py).
worker_class = "bot.gunicorn_worker.TextflowWorker"
proc_name = "textflow"

bind = [_address(_setting("HOST", "127.0.0.1"), _setting("PORT", "8000"))]
# Processes, each with its own event loop and app. More than one needs SQLite on this machine or
# Redis; each can take many webhooks at once, so 2-4 are plenty for most numbers.
workers = _workers()
# Not preloaded: each worker builds its app itself after the fork, as server.py's workers do (the
# store's connections and the timer loop are per process); the master only checks, in on_starting.
preload_app = False

# A stop (SIGTERM, systemctl stop): each worker stops accepting, waits for the webhooks in flight
# (10-14 s: bot/shutdown.py, under Twilio's 15 s), then its lifespan fires due timeouts (up to 15 s),
# sends the answers still owed (up to 15 s), records its status (5 s) and closes the store: at most
# 49 s, 1-3 s in practice. gunicorn kills a worker still running after graceful_timeout (what it
# still owed is sent after the restart); systemd's TimeoutStopSec (65 s, deploy/textflow.service) is longer.
graceful_timeout = 55
# A worker whose event loop has not ticked for this long (it is blocked) is killed and replaced.
timeout = 30
# Idle keep-alive connections from nginx are kept longer than nginx keeps them (keepalive_timeout 60s
# in deploy/nginx.conf's upstream), so nginx never sends a webhook on a connection we are closing.
keepalive = 65
# The runtime control socket (gunicornc) is not needed, and would be written in $HOME.
control_socket_disable = True

loglevel = _setting("LOG_LEVEL", "info").lower()
accesslog = None  # never: a request line may carry a number, and Twilio logs every webhook anyway
if _setting("LOG_FORMAT", "text").lower() == "json":
    # gunicorn's own lines ("Booting worker", a worker killed) as the bot's JSON lines (bot/json_logs.py);
    # the root logger is left to the bot, which configures it in each process.
    logconfig_dict = {
        "root": {"level": loglevel.upper(), "handlers": []},
        "loggers": {"gunicorn.error": {"level": loglevel.upper(), "handlers": ["json"], "propagate": False},
                    "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False}},
        "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "formatters": {"json": {"()": "bot.json_logs.JsonFormatter"}},
    }


def on_starting(server):
    """In the master, before it listens: the bot's start-up checks and the /metrics folder."""
    from bot.gunicorn_worker import on_starting as check_and_prepare

    check_and_prepare(server)


def on_exit(server):
    """In the master, as gunicorn exits: the /metrics folder on_starting made is removed."""
    from bot.gunicorn_worker import on_exit as clean_up

    clean_up(server)
