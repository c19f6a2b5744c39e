"""Make a store the way a running bot fills it: the source of the committed store fixtures.

The fixtures must be made by the code *of the release they stand for*, not by today's: run this
script from a checkout of that commit (``git worktree add /tmp/old <commit>``), with that
checkout first on the path, and commit what it writes next to this file under the commit's name::

    PYTHONPATH=/tmp/old python tests/store_fixtures/make_store.py --store sqlite:///sqlite-8be0cad.db
    PYTHONPATH=/tmp/old python tests/store_fixtures/make_store.py --store redis://127.0.0.1:6390/0 \
        --dump redis-8be0cad.json

It uses only what every release since 0.1.0 offers (the Inbox, the store's public methods), so
the same script serves each later shape. What it writes, and what the migration tests count on,
is printed at the end (``expected``) and kept in ``<fixture>.expected.json``.

A Redis keyspace is kept as JSON (each key's type, time to live and value), loaded into a real
Redis by the tests: an RDB file would tie the fixture to one Redis version.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from bot.engine import Engine
from bot.flows.loader import load_flows
from bot.inbox import Inbox
from bot.store import open_store
from bot.store.base import BroadcastProgress, FlowsVersion, ProcessStatus
from bot.types import ConsentChange, ConsentMethod, ConsentStatus, Inbound, OutboundMessage, OutboundState

HERE = Path(__file__).parent
OUR_NUMBER = "+15550001111"


class Orders:
    """The order service the status flow asks: every order has shipped."""

    async def get_json(self, url: str, timeout: float, **_: Any) -> Any:
        return {"status": "shipped", "detail": "It left our warehouse today."}


def number(index: int) -> str:
    return f"+1555010{index:04d}"


async def fill(store_url: str) -> dict[str, Any]:
    flows = load_flows(HERE / "flows")
    store = open_store(store_url)
    inbox = Inbox(store, Engine(flows, Orders()))
    sids = iter(range(1, 1_000_000))

    async def text(sender: str, body: str) -> None:
        await inbox.receive(Inbound(f"SM{next(sids):032d}", sender, OUR_NUMBER, body))

    expected: dict[str, Any] = {"turns": 0, "in_flow": {}, "opted_out": [], "consent_records": 0}
    try:
        for index in range(0, 10):  # order status, finished
            await text(number(index), "STATUS")
            await text(number(index), "123456")
        for index in range(10, 14):  # order status, waiting for the number
            await text(number(index), "STATUS")
            expected["in_flow"][number(index)] = ["order_status", "ask_number"]
        for index in range(14, 20):  # signup, finished
            for body in ("JOIN", "Ana", "YES"):
                await text(number(index), body)
        for index in range(20, 24):  # signup, waiting for a yes, their name saved
            for body in ("JOIN", "Bo"):
                await text(number(index), body)
            expected["in_flow"][number(index)] = ["signup", "confirm"]
        for index in range(24, 28):  # a timed wait (a deadline), a reply with a picture
            await text(number(index), "VISIT")
            expected["in_flow"][number(index)] = ["visit", "ask_day"]
        for index in range(28, 32):  # started by a broadcast, waiting for YES/NO
            await inbox.start(number(index), "reminder", {"name": "Cy", "date": "May 5"}, f"fixture-start-{index}")
            expected["in_flow"][number(index)] = ["reminder", "remind"]
        for index in range(32, 38):  # opted out by text; two of them back in by START
            await text(number(index), "HELP")
            await text(number(index), "STOP")
            if index >= 36:
                await text(number(index), "START")
            else:
                expected["opted_out"].append(number(index))
        for index in range(38, 40):  # opted out by an operator
            await store.set_consent(ConsentChange(number(index), ConsentStatus.OPTED_OUT, ConsentMethod.OPERATOR,
                                                  "python -m bot optout (fixture)"))
            expected["opted_out"].append(number(index))
        await text(number(40), "hello?")  # the fallback: a turn, no conversation
        await store.save_outbound(OutboundMessage("notify|SM1|0", "+15550009999", "Order looked up",
                                                  state=OutboundState.ACCEPTED, sid="SM" + "a" * 32,
                                                  from_number=OUR_NUMBER))
        await store.save_outbound(OutboundMessage("broadcast|fixture|+15550100028", number(28), "Hi Cy",
                                                  broadcast="fixture", state=OutboundState.ACCEPTED,
                                                  sid="SM" + "b" * 32, from_number=OUR_NUMBER))
        now = time.time()
        await store.record_status(ProcessStatus("fixture-host:1", now - 60, now,
                                                FlowsVersion(flows.version, now - 60, tuple(sorted(flows.flows))),
                                                stopped_at=now))
        await store.record_broadcast_progress(BroadcastProgress("reminder people.csv", "reminder", 4, 4, 0, 0, 0, 0,
                                                                finished=True, started_at=now - 30))
        expected["turns"] = next(sids) - 1
        expected["consent_records"] = sum([len(await store.consent_history(number(index))) for index in range(32, 40)])
        expected["consent_numbers"] = [number(index) for index in range(32, 40)]
        expected["conversations"] = [number(index) for index in range(0, 32)]
        expected["outbound"] = ["notify|SM1|0", "broadcast|fixture|+15550100028"]
    finally:
        await store.close()
    return expected


def dump_redis(url: str, path: Path) -> None:
    import redis

    client = redis.Redis.from_url(url, decode_responses=True)
    keys: dict[str, Any] = {}
    for key in sorted(client.scan_iter(count=1000)):
        kind = client.type(key)
        value: Any
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = sorted(client.smembers(key))
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        else:
            raise SystemExit(f"{key}: a {kind}, which this fixture format does not keep")
        keys[key] = {"type": kind, "pttl": client.pttl(key), "value": value}
    path.write_text(json.dumps(keys, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", required=True, help="sqlite:///FILE or redis://… (an empty database)")
    parser.add_argument("--dump", type=Path, help="for Redis: the JSON file to keep the keyspace in")
    parser.add_argument("--expected", type=Path, required=True, help="where to write what the store holds")
    args = parser.parse_args()
    expected = asyncio.run(fill(args.store))
    if args.dump is not None:
        dump_redis(args.store, args.dump)
    args.expected.write_text(json.dumps(expected, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(expected))


if __name__ == "__main__":
    main()
