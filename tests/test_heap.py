"""bot/heap.py: a serving process's long-lived objects frozen out of the collector's way, and the
previous flows still freed after a hot reload."""

from __future__ import annotations

import asyncio
import gc
import shutil
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot import heap
from bot.app import create_app
from bot.flows.loader import load_flows
from bot.heap import LongLivedObjects
from bot.settings import Settings
from tests.conftest import SHIPPED_FLOWS, demo_fetcher
from tests.signed_webhooks import AUTH_TOKEN


class _Cycle:
    """Stands for the flows: an object in a reference cycle, freed only by the cyclic collector."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def _thawed() -> Iterator[None]:
    """Whatever a test freezes is thawed after it: the test process's collector stays as it was."""
    yield
    gc.unfreeze()


def test_freeze_moves_what_lives_on_out_of_the_collectors_way_and_collects_garbage_first() -> None:
    garbage = _Cycle()
    gone = weakref.ref(garbage)
    del garbage
    kept = _Cycle()
    LongLivedObjects().freeze()
    assert gone() is None  # start-up's garbage was collected, not frozen for ever
    assert gc.get_freeze_count() > 0
    assert all(kept is not obj for obj in gc.get_objects(generation=2))  # frozen: in no generation
    LongLivedObjects().release()
    assert gc.get_freeze_count() == 0


def test_a_thaw_without_an_event_loop_freezes_again_at_once() -> None:
    long_lived = LongLivedObjects(refreeze_after=60)
    long_lived.freeze()
    old = _Cycle()
    long_lived.freeze()  # "old" is frozen now, as the previous flows are
    gone = weakref.ref(old)
    del old
    long_lived.thaw()
    assert gone() is None and gc.get_freeze_count() > 0


def test_after_a_thaw_the_freeze_waits_for_the_old_objects_to_become_garbage() -> None:
    async def scenario() -> None:
        long_lived = LongLivedObjects(refreeze_after=0.2)
        old = _Cycle()
        long_lived.freeze()
        gone = weakref.ref(old)
        long_lived.thaw()
        assert gc.get_freeze_count() == 0  # thawed at once
        await asyncio.sleep(0.05)
        del old  # a turn that began on the old flows ends
        await asyncio.sleep(0.4)
        assert gone() is None, "the old objects were collected before the new freeze"
        assert gc.get_freeze_count() > 0
        long_lived.thaw()
        long_lived.release()  # a pending freeze is cancelled by the release
        await asyncio.sleep(0.3)
        assert gc.get_freeze_count() == 0
    asyncio.run(scenario())


def test_a_serving_app_freezes_at_start_thaws_on_reload_and_releases_at_stop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "REFREEZE_AFTER_SECONDS", 0.2)
    flows_dir = tmp_path / "flows"
    shutil.copytree(SHIPPED_FLOWS, flows_dir)
    settings = Settings(twilio_auth_token=AUTH_TOKEN, store_url=f"sqlite:///{tmp_path / 'bot.db'}",
                        flows_dir=str(flows_dir), reload_flows=False)

    async def scenario() -> None:
        app = create_app(settings, load_flows(flows_dir), fetcher=demo_fetcher(), whole_process=True)
        async with app.router.lifespan_context(app) as state:
            assert gc.get_freeze_count() > 0
            inbox, status = state["inbox"], flows_dir / "status.yaml"
            # Two edits: the flows of the first are the previous ones once the second is swapped in
            # (the flows the app started with stay referenced by the app itself).
            for wording in ("Your order number?", "Which order number?"):
                status.write_text(status.read_text().replace("What's your order number?", wording)
                                  .replace("Your order number?", wording))
                previous = weakref.ref(inbox.engine.flows)
                assert state["reloader"].reload()
                assert gc.get_freeze_count() == 0
                await asyncio.sleep(0.5)
                assert gc.get_freeze_count() > 0
            assert previous() is None, "the previous flows were freed before the new freeze"
        assert gc.get_freeze_count() == 0
    asyncio.run(scenario())


def test_an_app_in_a_test_or_tool_leaves_the_collector_alone(settings: Settings) -> None:
    async def scenario() -> None:
        app = create_app(settings, load_flows(settings.flows_dir), fetcher=demo_fetcher())
        async with app.router.lifespan_context(app):
            assert gc.get_freeze_count() == 0
    asyncio.run(scenario())
