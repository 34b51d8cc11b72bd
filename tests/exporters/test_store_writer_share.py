"""The store writer's share of the GIL: while it is late, threads that end spans make way for it
(`StoreSpanProcessor._make_way`), briefly and rarely; never otherwise."""

from __future__ import annotations

import time
import types

import pytest

from unitcost.exporters import store as store_module
from unitcost.exporters.store import (
    SCHEDULE_SECONDS,
    WRITER_LATE_SECONDS,
    YIELD_EVERY_SECONDS,
    YIELD_SECONDS,
    StoreSpanProcessor,
)


@pytest.fixture
def processor(tmp_path, monkeypatch):
    clock = [1000.0]
    sleeps: list[float] = []
    fake_time = types.SimpleNamespace(
        monotonic=lambda: clock[0], sleep=sleeps.append, time_ns=time.time_ns, perf_counter=time.perf_counter
    )
    made = StoreSpanProcessor(tmp_path / "share.db")
    monkeypatch.setattr(store_module, "time", fake_time)
    made.clock, made.sleeps = clock, sleeps  # type: ignore[attr-defined]
    made._exporter.idle_since = clock[0]
    yield made
    monkeypatch.undo()
    made.shutdown()


def test_no_pause_while_the_writer_is_on_time(processor):
    exporter = processor._exporter
    exporter.busy_since = processor.clock[0] - WRITER_LATE_SECONDS / 2  # a batch in hand, not late
    processor._make_way(was_empty=False)
    exporter.busy_since = None  # idle, spans queued within its schedule
    processor._queued_since = processor.clock[0] - SCHEDULE_SECONDS
    processor._make_way(was_empty=False)
    assert processor.sleeps == []


def test_a_late_batch_gets_one_short_pause_per_interval(processor):
    processor._exporter.busy_since = processor.clock[0] - 2 * WRITER_LATE_SECONDS
    for _ in range(10):  # ten spans ending at once: one pause
        processor._make_way(was_empty=False)
    assert processor.sleeps == [YIELD_SECONDS]
    processor.clock[0] += 1.5 * YIELD_EVERY_SECONDS
    processor._make_way(was_empty=False)
    assert processor.sleeps == [YIELD_SECONDS, YIELD_SECONDS]
    assert YIELD_SECONDS / YIELD_EVERY_SECONDS <= 0.1  # at most a tenth of a thread's time


def test_a_writer_that_has_not_woken_on_schedule_gets_a_pause(processor):
    exporter = processor._exporter
    processor._make_way(was_empty=True)  # the first span into an empty queue: the writer is not due yet
    assert processor.sleeps == []
    processor.clock[0] += SCHEDULE_SECONDS + 2 * WRITER_LATE_SECONDS
    processor._make_way(was_empty=False)
    assert processor.sleeps == [YIELD_SECONDS]
    exporter.idle_since = processor.clock[0]  # it woke and wrote: on time again
    processor.clock[0] += YIELD_EVERY_SECONDS
    processor._make_way(was_empty=False)
    assert processor.sleeps == [YIELD_SECONDS]


def test_the_writer_thread_itself_never_pauses(processor, monkeypatch):
    processor._exporter.busy_since = processor.clock[0] - 1.0
    worker = processor._batch_processor._worker_thread
    monkeypatch.setattr(store_module.threading, "current_thread", lambda: worker)
    processor._make_way(was_empty=False)
    assert processor.sleeps == []


def test_a_forked_child_does_not_inherit_a_late_writer(processor):
    exporter = processor._exporter
    exporter.busy_since = processor.clock[0] - 1.0  # forked while the parent's writer was mid-batch
    exporter._after_fork_in_child()
    processor._make_way(was_empty=False)
    assert exporter.busy_since is None and processor.sleeps == []


def test_a_span_dropped_from_a_full_queue_makes_way_too(processor):
    """A full queue is when the writer is latest: the span dropped there pauses as a queued one would
    (without it the pauses stopped once drops began, and the writer starved for seconds a batch)."""
    queue = processor._queue
    processor._queue = [None] * processor.max_queue_size  # full (a stand-in: the writer never sees it)
    try:
        processor._exporter.busy_since = processor.clock[0] - 2 * WRITER_LATE_SECONDS
        processor._emit(object())
        assert processor.drops.total == 1 and len(processor._queue) == processor.max_queue_size
        assert processor.sleeps == [YIELD_SECONDS]
        processor._emit(object())  # within the interval: counted, no second pause
        assert processor.drops.total == 2 and processor.sleeps == [YIELD_SECONDS]
        processor._exporter.busy_since = None  # the writer caught up (idle, on schedule): no pause
        processor._exporter.idle_since = processor._queued_since = processor.clock[0] = processor.clock[0] + 1.0
        processor._emit(object())
        assert processor.drops.total == 3 and processor.sleeps == [YIELD_SECONDS]
    finally:
        processor._queue = queue
        processor.drops.take()
