"""Logging, configured once at start-up by whoever starts the program (server, workers, CLI).

No module changes a log level when it is imported: importing the bot from a test or another
program must not reconfigure that program's logging.
"""

from __future__ import annotations

import logging

SERVER_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CLI_FORMAT = "%(levelname)s: %(message)s"

#: Libraries whose chatter we turn down: ``transitions`` logs every transition at INFO (and costs
#: 5x per transition doing so); ``httpx`` logs every request URL at INFO, and a fetch URL may
#: carry what a person typed.
_QUIET = {"transitions": logging.WARNING, "httpx": logging.WARNING}


def configure_logging(level: str = "info", fmt: str = SERVER_FORMAT) -> None:
    logging.basicConfig(level=level.upper(), format=fmt)
    for name, quiet_level in _QUIET.items():
        logging.getLogger(name).setLevel(quiet_level)
