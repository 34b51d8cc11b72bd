"""The store writer in a process of its own, for programs whose threads never wait.

The store writer thread shares the GIL with the program. A program with many threads that compute
(or call a client with no real I/O) takes nearly all of it, and the writer then stores a fraction of
what it could alone: 17-47% of its isolated rate beside eight such threads (benchmarks/RESULTS.md).
With ``configure(store_writer="process")`` (or ``UNITCOST_STORE_WRITER=process``) the writer thread only
hands each batch's spans, as plain tuples, to a child process through a pipe; the child prices them and
writes the store with the very same `StoreSpanExporter`, on a core and a GIL of its own.

What stays the same: the caller's thread never waits for the store; the writer thread waits for the
pipe (bounded; a full pipe means the child is behind, and the queue then fills and drops, counted as
before); `flush()` returns once the child has written everything sent before it (or at its timeout);
at exit the child gets the same bounded wait, and counts what it could not write in the store's side
file. What is better: a program killed outright (SIGKILL, OOM) loses only the spans it had not yet
sent; the child reads to the end of the pipe and writes them. What it costs: a second Python process
(~75 MB resident) started at `configure()`, and the spans' attributes copied through a pipe.

A forked child of the program (a pre-fork server's worker, a multiprocessing pool) writes with a thread
of its own, as by default: one writer process per configured program, not per worker. If the writer
process cannot start or dies, the writer thread writes from then on; the spans the child had been sent
and not yet acknowledged are counted as lost (``writer_process_exited``).

The pipe's messages, each a 4-byte length and a pickle: to the child first ``(0, "start", recipe)``
(the store's path or URL, the price file, the energy switch, the service: never on its command line),
then ``(seq, "spans", (records, drops))``, ``(seq, "flush", deadline)`` and at last ``(seq, "exit",
deadline)``; from it ``(seq, ok)`` once each is done, in order. Deadlines are ``time.monotonic()``
values, the same clock in both processes.
"""

from __future__ import annotations

import collections
import gc
import logging
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanContext, Status, StatusCode

from ..common import attributes as A
from ..common.errors import internal_error
from ..common.forks import after_fork_in_child
from ..pipeline.preload import load_for_writers
from ..pricing.book import PriceBook
from .store import EXIT_WAIT_SECONDS, StoreSpanExporter, attributes_of

__all__ = ["ProcessStoreExporter", "WriterRecipe", "main"]

logger = logging.getLogger("unitcost")

# The writer thread waits at most this long for room in the pipe while the program runs: the child
# takes a batch at a time, each bounded by the store's own waits (BUSY_WAIT_SECONDS), so a pipe full
# for longer means the child is stuck; the batch is then written by the thread.
SEND_WAIT_SECONDS = 30.0
# The writer thread's first batch waits this long for the writer process to start (import unitcost,
# load the price data, open the store: ~0.5 s); past it, the thread writes.
START_WAIT_SECONDS = 15.0
# flush() without a timeout of its own waits this long for the child, as the thread writer's does.
FLUSH_WAIT_SECONDS = 30.0
# The pipe holds this much (Linux lets a process raise it to 1 MiB): a few batches in flight, so the
# writer thread hands one over and goes back to its queue while the child writes the one before.
PIPE_BYTES = 1 << 20
REPLIES_READ_EVERY = 64
# The child writes batches already waiting in the pipe together, up to this many spans a transaction.
MERGED_SPANS = 8192
EXIT_ANSWER_SECONDS = 1.0
# The writer process's SQLite page cache (2 MiB by default): as the store grows, each batch's inserts and
# rollup refresh read index pages again; 64 MiB took the refresh from 66 to 56 us a task on a 48 MB
# store. Memory of this process, not the program's; used only as the store grows into it.
PAGE_CACHE_MIB = 64
_HEADER = struct.Struct("!I")
_EMPTY_RESOURCE = Resource({})
_ERROR = Status(StatusCode.ERROR)
_UNSET = Status(StatusCode.UNSET)


class WriterRecipe:
    """What the child needs to make the same exporter: the store, the prices, the service name."""

    def __init__(self, db: Any, price_file: Any, energy: bool, service: str) -> None:
        self.db, self.price_file, self.energy, self.service = str(db), price_file, energy, service

    def as_dict(self) -> dict[str, Any]:
        price_file = None if self.price_file is None else str(self.price_file)
        return {"db": self.db, "price_file": price_file, "energy": self.energy, "service": self.service}


class WriterGone(Exception):
    """The writer process exited, or stopped reading for longer than it may."""


class _WriterProcess:
    """The child process and the two pipes to it (the parent's side)."""

    def __init__(self, recipe: WriterRecipe) -> None:
        # (The recipe goes through the pipe, not the command line, which any user of the machine can
        # read: a PostgreSQL URL may hold a password.)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "unitcost.exporters.store_process"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, close_fds=True,
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._to = self._process.stdin.fileno()
        self._from = self._process.stdout.fileno()
        _grow_pipe(self._to)
        os.set_blocking(self._to, False)
        os.set_blocking(self._from, False)
        self._seq = -1
        self._replies = bytearray()
        self.unanswered: collections.deque[tuple[int, int]] = collections.deque()  # (seq, spans) sent
        self.answers: dict[int, bool] = {}  # replies to start, flush and exit, by seq
        self._awaited: set[int] = set()
        self.started = False  # the child answered the recipe: its store is open
        self.send("start", recipe.as_dict(), 0, time.monotonic() + SEND_WAIT_SECONDS)  # seq 0

    def wait_started(self, deadline: float) -> None:
        """Wait until the child has opened the store; WriterGone if it exits or fails to by ``deadline``."""
        if self.started:
            return
        answer = self.answer(0, deadline)
        if not answer:
            raise WriterGone("the writer process did not start" if answer is None else "the writer process "
                             "could not open the store")
        self.started = True

    @property
    def pid(self) -> int:
        return self._process.pid

    def send(self, kind: str, payload: Any, spans: int, deadline: float) -> int:
        """Send one message, reading replies while the pipe is full; its seq. WriterGone past ``deadline``."""
        self._seq += 1
        data = pickle.dumps((self._seq, kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
        view = memoryview(_HEADER.pack(len(data)) + data)
        self.unanswered.append((self._seq, spans))
        if kind != "spans":
            self._awaited.add(self._seq)
        try:
            while view:
                try:
                    written = os.write(self._to, view)
                except BlockingIOError:
                    self._wait(deadline, writing=True)
                    continue
                except OSError as exc:  # EPIPE: the child is gone
                    raise WriterGone(str(exc)) from exc
                view = view[written:]
            # Replies are read when someone waits for one, and every REPLIES_READ_EVERY messages (the
            # child blocks only once ~2,000 are unread): each read is a system call, and under a program
            # whose threads never wait each one costs the writer thread a wait for the GIL (tens of ms).
            if len(self.unanswered) >= REPLIES_READ_EVERY:
                self.read_replies()
        except WriterGone:
            # This message is not the child's: its sender writes it (or its counts) another way.
            if self.unanswered and self.unanswered[-1][0] == self._seq:
                self.unanswered.pop()
            raise
        return self._seq

    def answer(self, seq: int, deadline: float) -> bool | None:
        """The child's reply to message ``seq``, waiting until ``deadline``; None if it has not come."""
        while seq not in self.answers:
            if time.monotonic() >= deadline:
                self._awaited.discard(seq)  # (its answer, when it comes, is of no use)
                return None
            self._wait(deadline, writing=False)
        return self.answers.pop(seq)

    def read_replies(self) -> None:
        while True:
            try:
                chunk = os.read(self._from, 65536)
            except BlockingIOError:
                break
            if not chunk:
                raise WriterGone(f"the writer process exited ({self._process.poll()})")
            self._replies += chunk
        while len(self._replies) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._replies)
            if len(self._replies) < _HEADER.size + size:
                break
            seq, ok = pickle.loads(self._replies[_HEADER.size:_HEADER.size + size])
            del self._replies[:_HEADER.size + size]
            while self.unanswered and self.unanswered[0][0] <= seq:
                self.unanswered.popleft()
            if seq in self._awaited:  # a start, flush or exit: someone waits for its answer
                self._awaited.discard(seq)
                self.answers[seq] = ok

    def _wait(self, deadline: float, writing: bool) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            if writing:
                raise WriterGone("the writer process did not read its pipe in time")
            return
        readable, _, _ = select.select([self._from], [self._to] if writing else [], [], min(left, 1.0))
        if readable:
            self.read_replies()
        elif self._process.poll() is not None:
            raise WriterGone(f"the writer process exited ({self._process.returncode})")

    def close(self, deadline: float) -> bool | None:
        """Ask the child to finish and wait for it until ``deadline``: its answer (True: all written), or
        None when it had not answered by then (it goes on alone, bounded by the same deadline)."""
        try:
            seq = self.send("exit", deadline, 0, deadline)
            # (a moment past the deadline: the child's own waits end at it, then it counts what is left)
            answer = self.answer(seq, deadline + EXIT_ANSWER_SECONDS)
        finally:
            self._close_pipes()
        if answer is not None:
            try:
                self._process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        return answer

    def forget(self) -> None:
        """In a forked child of the program: let go of the parent's pipes, which this process must
        never write (its messages would interleave with the parent's)."""
        self._close_pipes()

    def _close_pipes(self) -> None:
        for stream in (self._process.stdin, self._process.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


def _grow_pipe(fd: int) -> None:
    setpipe = 1031  # fcntl.F_SETPIPE_SZ (Linux; Python names it from 3.10 only on Linux)
    try:
        import fcntl  # here: not on Windows

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", setpipe), PIPE_BYTES)
    except (ImportError, OSError):
        pass  # the default pipe (64 KiB) works, with more waits


def span_record(span: ReadableSpan) -> tuple[Any, ...]:
    """What the child needs of a finished span, as plain values (pickled in C, no per-span objects)."""
    context, parent = span.context, span.parent
    return (
        span.name, context.trace_id, context.span_id, None if parent is None else parent.span_id,
        span.start_time, span.end_time, span.status.status_code is StatusCode.ERROR, attributes_of(span),
    )


class _Ids(NamedTuple):
    trace_id: int
    span_id: int


class _RecordedSpan:
    """A finished span as the store exporter reads it, made from its record: what an OpenTelemetry
    `ReadableSpan` would give, without its per-span checks (a third of the child's Python a span)."""

    __slots__ = ("name", "context", "parent", "start_time", "end_time", "status", "_attributes")

    def __init__(self, record: tuple[Any, ...]) -> None:
        name, trace_id, span_id, parent_id, self.start_time, self.end_time, error, self._attributes = record
        self.name = name
        self.context = _Ids(trace_id, span_id)
        self.parent = None if parent_id is None else _Ids(trace_id, parent_id)
        self.status = _ERROR if error else _UNSET

    @property
    def attributes(self) -> Any:
        return self._attributes


def span_from_record(record: tuple[Any, ...]) -> ReadableSpan:
    """The span a record was made from, as the store exporter reads it. Another instrumentation's span
    (no ``unitcost.span.type``) is a real `ReadableSpan`: the exporter copies it in unitcost's names."""
    name, trace_id, span_id, parent_id, start, end, error, attributes = record
    if A.SPAN_TYPE in attributes:
        return cast(ReadableSpan, _RecordedSpan(record))
    return ReadableSpan(
        name=name, context=SpanContext(trace_id, span_id, is_remote=False),
        parent=None if parent_id is None else SpanContext(trace_id, parent_id, is_remote=False),
        resource=_EMPTY_RESOURCE, attributes=attributes, start_time=start, end_time=end,
        status=_ERROR if error else _UNSET,
    )


class ProcessStoreExporter(StoreSpanExporter):
    """The store exporter whose batches a writer process writes (see the module's docstring).

    Every path the thread writer has stays: the writer thread falls back on it (``super()``) in a forked
    child of the program, when the process cannot start, and after it died.
    """

    def __init__(self, db_path: Any, prices: PriceBook | None, service: str, recipe: WriterRecipe) -> None:
        super().__init__(db_path, prices, service)
        self._recipe = recipe
        self._writer: _WriterProcess | None = None
        after_fork_in_child(self._forget_writer)

    def _forget_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.forget()

    def open(self) -> None:
        """Start the writer process (configure() has opened and migrated the store); if it cannot
        start, open the store for the writer thread instead."""
        try:
            self._writer = _WriterProcess(self._recipe)
        except Exception as exc:  # noqa: BLE001 - the writer thread writes instead
            internal_error("store writer process start", exc)
            super().open()

    @property
    def writer_pid(self) -> int | None:
        """The writer process's id, or None when this process's writer thread writes."""
        return None if self._writer is None else self._writer.pid

    def _export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        writer = self._writer
        if writer is None:
            return super()._export(spans)
        drops = self.drops.take()
        try:
            records = [span_record(span) for span in spans]
        except Exception as exc:  # noqa: BLE001 - as the thread writer does with a span it cannot read
            internal_error("store writer process span", exc)
            self.drops.put_back(drops)
            return super()._export(spans)
        if not records and not drops:
            return SpanExportResult.SUCCESS
        try:
            deadline = self._send_deadline()
            writer.wait_started(min(deadline, time.monotonic() + START_WAIT_SECONDS))
            writer.send("spans", (records, drops), len(records), deadline)
        except WriterGone as exc:
            self.drops.put_back(drops)
            self._writer_gone(exc)
            return super()._export(spans)
        return SpanExportResult.SUCCESS

    def _send_deadline(self) -> float:
        now = time.monotonic()
        return now + SEND_WAIT_SECONDS if self._deadline is None else max(now, self._deadline)

    def _writer_gone(self, why: BaseException) -> None:
        """The writer process is gone: count what it had not answered for, write with the thread from now on."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        lost = sum(spans for _, spans in writer.unanswered)
        writer.forget()
        logger.warning("unitcost: the store's writer process stopped (%s); this process writes the store itself "
                       "from now on", why)
        self.count_lost({"writer_process_exited": lost})

    def save_pending(self) -> bool:
        writer = self._writer
        if writer is None:
            return super().save_pending()
        deadline = time.monotonic() + FLUSH_WAIT_SECONDS if self._deadline is None else self._deadline
        try:
            self._send_drops(writer, deadline)
            seq = writer.send("flush", deadline, 0, deadline)
            answer = writer.answer(seq, deadline)
        except WriterGone as exc:
            self._writer_gone(exc)
            return super().save_pending()
        return bool(answer)

    def _send_drops(self, writer: _WriterProcess, deadline: float) -> None:
        """Hand the drops counted here to the child (put back if it is gone: the thread saves them)."""
        drops = self.drops.take()
        if drops:
            try:
                writer.send("spans", ([], drops), 0, deadline)
            except WriterGone:
                self.drops.put_back(drops)
                raise

    def shutdown(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            deadline = self._deadline if self._deadline is not None else time.monotonic() + EXIT_WAIT_SECONDS
            try:
                self._send_drops(writer, deadline)
                writer.close(deadline)
            except WriterGone as exc:
                self._writer = writer
                self._writer_gone(exc)
        super().shutdown()


# The child's side.

class _Messages:
    """The program's messages, read from the pipe (the child's side)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self._ended = False

    def _complete(self) -> bool:
        if len(self._buffer) < _HEADER.size:
            return False
        return len(self._buffer) >= _HEADER.size + _HEADER.unpack_from(self._buffer)[0]

    def waiting(self) -> bool:
        """True when a whole message can be read now, without waiting for the program."""
        while not self._complete() and not self._ended:
            readable, _, _ = select.select([self._fd], [], [], 0)
            if not readable:
                return False
            self._fill()
        return self._complete()

    def _fill(self) -> None:
        chunk = os.read(self._fd, 1 << 20)
        if chunk:
            self._buffer += chunk
        else:
            self._ended = True

    def next(self) -> tuple[int, str, Any] | None:
        """The next message, waiting for it; None at the end of the pipe (a message cut short included)."""
        while not self._complete():
            if self._ended:
                return None
            self._fill()
        size = _HEADER.unpack_from(self._buffer)[0]
        message: tuple[int, str, Any] = pickle.loads(self._buffer[_HEADER.size:_HEADER.size + size])
        del self._buffer[:_HEADER.size + size]
        return message


def _reply(stream: Any, seq: int, ok: bool) -> None:
    data = pickle.dumps((seq, ok), protocol=pickle.HIGHEST_PROTOCOL)
    try:
        stream.write(_HEADER.pack(len(data)) + data)
        stream.flush()
    except OSError:  # the program stopped listening (it ended): it has no use for the answer
        pass


def main() -> int:
    """The writer process: read batches from stdin until the parent closes it, write them, answer each."""
    # Ctrl-C and a group's SIGTERM are the program's to handle: this process ends when its pipe does,
    # after writing what it was sent (bounded by the exit deadline it was given, or EXIT_WAIT_SECONDS).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    messages, sink = _Messages(sys.stdin.fileno()), sys.stdout.buffer
    start = messages.next()
    if start is None:
        return 0
    recipe = start[2]
    prices = PriceBook.from_price_file(recipe["price_file"]) if recipe["price_file"] else PriceBook()
    if recipe["energy"]:
        prices.energy.turn_on()
    load_for_writers(prices)
    exporter = StoreSpanExporter(recipe["db"], prices, recipe["service"])
    exporter.use_page_cache(PAGE_CACHE_MIB)
    try:
        exporter.open()
    except Exception as exc:  # noqa: BLE001 - the program's writer thread writes instead
        internal_error("store writer process open", exc)
        _reply(sink, 0, False)
        return 1
    _reply(sink, 0, True)
    # Everything loaded by now (modules, prices, the schema) lives as long as this process, which holds
    # nothing of the program's: the collector stops walking it, and looks at young objects rarely (a
    # batch's spans and rows are freed by reference counting; none makes a cycle). On the busy caller's
    # 60,000 spans the collector took 3.4-3.5 us of 16.5 a span before, none after (RESULTS.md).
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    message = messages.next()
    while message is not None:
        seq, kind, payload = message
        message = None
        if kind == "spans":
            # Batches already waiting go in one transaction, up to MERGED_SPANS: when this process is
            # behind, its per-batch work (the commit, the sums' reads) is paid once for several.
            seqs, spans = [seq], [span_from_record(record) for record in payload[0]]
            _count_drops(exporter, payload[1])
            while len(spans) < MERGED_SPANS and messages.waiting():
                message = messages.next()
                if message is None or message[1] != "spans":
                    break
                seqs.append(message[0])
                spans += [span_from_record(record) for record in message[2][0]]
                _count_drops(exporter, message[2][1])
                message = None
            ok = exporter.export(spans) is SpanExportResult.SUCCESS
            for done in seqs:
                _reply(sink, done, ok)
        elif kind == "flush":
            with exporter.waits_until(payload):
                _reply(sink, seq, exporter.save_pending())
        elif kind == "exit":
            exporter.wait_at_most_until(payload)
            try:
                ok = exporter.save_pending()
            except Exception as exc:  # noqa: BLE001 - shutdown counts what is left
                internal_error("store writer process exit", exc)
                ok = False
            exporter.shutdown()
            _reply(sink, seq, ok)
            return 0
        if message is None:
            message = messages.next()
    # The program ended (or was killed) without saying so: write what came, as at its exit.
    exporter.wait_at_most_until(time.monotonic() + EXIT_WAIT_SECONDS)
    exporter.shutdown()
    return 0


def _count_drops(exporter: StoreSpanExporter, drops: dict[str, int]) -> None:
    for reason, count in drops.items():
        exporter.drops.add(reason, count)


if __name__ == "__main__":
    sys.exit(main())
