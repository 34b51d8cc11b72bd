"""Per-call overhead: the real openai and anthropic clients over an in-memory transport.

Configurations, each in its own process (instrumentation is global):

- ``bare``: the SDK alone, no TracerProvider.
- ``unitcost``: ``configure()`` with its SQLite store exporter, and ``instrument()``.
- ``otel-openai-v2``: the official OpenTelemetry OpenAI instrumentation, the reference peer, into an
  SDK TracerProvider whose batch processor feeds an exporter that drops everything.
- ``anthropic-otel``: no instrumentation, but an SDK TracerProvider set globally, so the anthropic
  SDK emits its own span (into the same dropping exporter). What unitcost adds on Anthropic is
  counted beyond this.

Every block is ``n`` calls then the configuration's ``flush()``; blocks alternate between
configurations (the order rotating), and the figure is the median over blocks of the per-call
difference from the bare block beside it.
"""

from __future__ import annotations

import time
from typing import Any

from ._common import Row, Worker, median, probe, quartiles, spread

PLAIN_TARGET_S = 100e-6
CHUNK_TARGET_S = 3e-6
BLOCK_SECONDS = 0.08

# workload -> the configurations it is timed under (bare first: the baseline)
WORKLOADS = {
    "openai_chat": ("bare", "unitcost", "otel-openai-v2"),
    "openai_stream": ("bare", "unitcost", "otel-openai-v2"),
    "openai_stream_long": ("bare", "unitcost", "otel-openai-v2"),
    "openai_responses": ("bare", "unitcost", "otel-openai-v2"),
    "anthropic_messages": ("bare", "anthropic-otel", "unitcost"),
}
LABELS = {
    "openai_chat": "openai Chat Completions, plain",
    "openai_stream": "openai Chat Completions, streamed (25 chunks, include_usage)",
    "openai_stream_long": "openai Chat Completions, streamed (125 chunks)",
    "openai_responses": "openai Responses, plain",
    "anthropic_messages": "anthropic Messages, plain",
}
CHUNKS_SHORT, CHUNKS_LONG = 25, 125


def _records(report: dict[str, Any], workload: str, scope: str) -> bool:
    return bool(report.get(workload, {}).get("scopes", {}).get(scope))


def measure(blocks: int, log: Any) -> tuple[list[Row], dict[str, Any]]:
    probes = {c: probe(c) for c in ("unitcost", "otel-openai-v2")}
    log(f"  probe: unitcost records {', '.join(w for w in WORKLOADS if _records(probes['unitcost'], w, 'unitcost'))}")
    workers = {c: Worker(c) for c in ("bare", "unitcost", "otel-openai-v2", "anthropic-otel")}
    times: dict[str, dict[str, list[float]]] = {}
    try:
        for workload, configs in WORKLOADS.items():
            # The peer is timed only on what it instruments (its probe saw a span).
            configs = tuple(c for c in configs if c != "otel-openai-v2" or probes[c][workload]["scopes"])
            times[workload] = _interleave(workload, [workers[c] for c in configs], blocks, log)
    finally:
        for worker in workers.values():
            worker.close()
    return _rows(times, probes), {"per_call_seconds": times, "probes": probes}


def _interleave(workload: str, workers: list[Worker], blocks: int, log: Any) -> dict[str, list[float]]:
    """Per-call seconds of each configuration, block by block (A B C, B C A, C A B, ...)."""
    started = time.perf_counter()
    for worker in workers:  # warm up: caches, lazy imports, the price book
        worker.ask(op="run", workload=workload, n=5)
    probe_n = 10
    per_call = workers[0].ask(op="run", workload=workload, n=probe_n)["seconds"] / probe_n
    n = max(2, round(BLOCK_SECONDS / per_call))
    out: dict[str, list[float]] = {w.config: [] for w in workers}
    for block in range(blocks):
        shift = block % len(workers)
        for worker in workers[shift:] + workers[:shift]:
            out[worker.config].append(worker.ask(op="run", workload=workload, n=n)["seconds"] / n)
    log(f"  {workload}: {blocks} blocks of {n} calls x {len(workers)} configurations "
        f"in {time.perf_counter() - started:.0f} s")
    return out


def _diff(times: dict[str, list[float]], config: str, base: str = "bare") -> list[float]:
    return [a - b for a, b in zip(times[config], times[base], strict=True)]


def _rows(times: dict[str, dict[str, list[float]]], probes: dict[str, Any]) -> list[Row]:
    rows = []
    for workload, t in times.items():
        bare = f"bare {median(t['bare']) * 1e6:,.0f} us/call"
        label = LABELS[workload]
        unitcost_records = _records(probes["unitcost"], workload, "unitcost")
        stored = probes["unitcost"][workload]["store_rows"]
        if workload == "anthropic_messages":
            own = _diff(t, "anthropic-otel")
            rows.append(Row("per call", label + ": the SDK's own span", bare, "+" + spread(own),
                            note="anthropic's span into an SDK provider, no instrumentation", data={"added": own}))
            beyond = _diff(t, "unitcost", "anthropic-otel")
            how = "unitcost adapter" if unitcost_records else "no unitcost adapter yet: the call is stored from " \
                "anthropic's own span"
            note = f"{how}; {stored} store row(s) per call"
            ok = median(beyond) <= PLAIN_TARGET_S if stored else None
            rows.append(Row("per call", label + ": unitcost beyond it", "anthropic-otel", "+" + spread(beyond),
                            "<= 100 us", ok, note, data={"added": beyond}))
            continue
        added = _diff(t, "unitcost")
        peer = _diff(t, "otel-openai-v2") if "otel-openai-v2" in t else None
        notes = []
        if not unitcost_records:
            notes.append("not instrumented yet (no unitcost span, no store row)")
        elif stored != 1:
            notes.append(f"{stored} store rows per call")
        ok: bool | None = None
        target = ""
        if workload == "openai_chat":
            target, ok = "<= 100 us", median(added) <= PLAIN_TARGET_S
        if workload == "openai_responses" and unitcost_records:
            target, ok = "<= 100 us", median(added) <= PLAIN_TARGET_S
        if not unitcost_records:
            ok = None
        rows.append(Row("per call", label + ": unitcost", bare, "+" + spread(added), target, ok, "; ".join(notes),
                        data={"added": added}))
        if peer is not None:
            beat = median(added) < median(peer)
            rows.append(Row("per call", label + ": otel-openai-v2 (peer)", bare, "+" + spread(peer),
                            "unitcost below it", beat if unitcost_records else None,
                            f"unitcost {'below' if beat else 'ABOVE'} the peer by "
                            f"{abs(median(peer) - median(added)) * 1e6:,.0f} us", data={"added": peer}))
    if "openai_stream" in times and "openai_stream_long" in times:
        extra = CHUNKS_LONG - CHUNKS_SHORT
        for config in ("unitcost", "otel-openai-v2"):
            per_chunk = [
                (long_ - short) / extra
                for long_, short in zip(_diff(times["openai_stream_long"], config), _diff(times["openai_stream"],
                                                                                          config), strict=True)
            ]
            lo, hi = quartiles(per_chunk)
            target, ok = ("<= 3 us", median(per_chunk) <= CHUNK_TARGET_S) if config == "unitcost" else ("", None)
            rows.append(Row("per call", f"per streamed chunk: {config}", "bare, same streams",
                            f"+{median(per_chunk) * 1e6:,.2f} us [IQR {lo * 1e6:,.2f}..{hi * 1e6:,.2f}]",
                            target, ok, f"slope between {CHUNKS_SHORT}- and {CHUNKS_LONG}-chunk streams",
                            data={"per_chunk": per_chunk}))
    return rows
