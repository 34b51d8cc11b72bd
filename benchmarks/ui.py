"""`unitcost ui` on the 1,000,000-call store (`store.build_store`, cached): server time per page and
page weight. In-process (Starlette's TestClient): the time is the app's own, no browser or network.

Each page is measured cold, then warm. Cold: the first request after the store changed, which reads
the store (the rollups): the app's results kept in memory are forgotten first, as a store change
makes it forget them (its templates stay compiled, as in a server that has shown the page once);
warm: the median of the requests that follow (the app keeps each result per store version).
Both as wall time and as the process's CPU time, since the machine may be shared. The baseline, in
the same run: `unitcost report` in-process. The what-if page re-prices every call on a thread of its
own (the request answers at once with "re-pricing"): the time until its rows are shown is reported
beside it, with no target.
"""

from __future__ import annotations

import re
import statistics
import time
from typing import Any

from ._common import Row
from .store import build_store

TARGET_MS = 300
WEIGHT_TARGET = 500_000
# (by outcome and of one outcome, by bucket: ranked from the per-outcome indexes, m018; a search for text a
# third of the keys hold, walking the started index, and one for a single task's key)
PAGES = ["/", "/?by=model", "/?every=week", "/?every=month&by=model", "/?by=outcome", "/?every=week&by=outcome",
         "/?where=outcome%3Dresolved&every=month&by=model", "/?by=kind,outcome&every=month",
         "/tasks", "/tasks?sort=cost&dir=desc",
         "/tasks?kind=support_ticket&sort=cost&dir=desc", "/tasks?retried=1&sort=runs", "/tasks?q=zzz",
         "/tasks?q=0", "/tasks?q=T-4242", "/tasks?sort=duration", "/tasks?page=1000", "TASK",
         "/compare?a=14d..7d&b=7d..", "/whatif?model=gpt-4o-mini",
         # time windows (the store's 90 days end 2025-11-23): their whole days counted from the per-day
         # rows and ranked from the per-day indexes, the tasks of the days an edge cuts through read
         # from their rows; by model and outcome (not a window: many small groups walked in an index)
         "/?by=model&since=2025-11-01", "/?since=2025-11-16&by=model", "/?by=provider&since=2025-11-01",
         "/?by=outcome&since=2025-10-01", "/?since=2025-11-01&every=week&by=outcome",
         "/?by=kind,outcome&since=2025-11-01", "/?by=model&since=2025-08-28",
         "/?by=model&since=2025-10-03T12%3A00&until=2025-11-05T06%3A30", "/?by=model,outcome",
         "/?by=kind,model,outcome",
         # by a task attribute, or of one value: the attribute rollups (m020), the trends of the groups drawn
         "/?by=customer", "/?where=customer%3Dcustomer-45", "/?by=customer&every=week", "/?by=kind,customer",
         "/?by=customer&since=2025-11-01",
         # a kind's overview by model, and a kind's tasks
         "/?kind=support_ticket&by=model", "/tasks?kind=support_ticket"]


def _timed(client: Any, page: str) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    response = client.get(page)
    return response, (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000


def measure(tasks: int, calls_per_task: int, days: int, repeats: int, log: Any) -> tuple[list[Row], dict[str, Any]]:
    from starlette.testclient import TestClient

    from unitcost.query import open_store
    from unitcost.report import report
    from unitcost.ui import create_app

    path, _ = build_store(tasks, calls_per_task, days, log)
    with open_store(path) as db:
        report(db)  # (imports and the store's first read out of the baseline)
        started, cpu = time.perf_counter(), time.process_time()
        report(db)
        baseline_ms, baseline_cpu = (time.perf_counter() - started) * 1000, (time.process_time() - cpu) * 1000
    static_client = TestClient(create_app(path))
    static = sum(len(static_client.get(f"/static/{name}").content) for name in ("app.css", "app.js"))
    static_client.get("/")  # (templates compiled and modules imported: not a page's cost)
    costliest = re.search(r"/task/([0-9a-f]+)", static_client.get("/tasks?sort=cost&dir=desc").text)
    rows, data = [], {}
    for page in PAGES:
        if page == "TASK":
            page = "/task/" + costliest.group(1)  # type: ignore[union-attr]
        client = TestClient(create_app(path))
        client.get("/whatif" if page.startswith("/whatif") else page)  # (its template compiled)
        client.app.state.reader.forget()  # cold: as after a store change
        response, cold_ms, cold_cpu = _timed(client, page)
        computed_s = None
        if page.startswith("/whatif"):
            wall = time.perf_counter()
            while 'id="computing"' in response.text and time.perf_counter() - wall < 600:
                time.sleep(0.5)
                response = client.get(page)
            computed_s = time.perf_counter() - wall
        warm = [_timed(client, page) for _ in range(repeats)]
        warm_ms = statistics.median(w for _, w, _ in warm)
        warm_cpu = statistics.median(c for _, _, c in warm)
        weight = len(response.content) + static
        name = page if not page.startswith("/task/") else "/task/<costliest>"
        data[name] = {"status": response.status_code, "cold_ms": cold_ms, "cold_cpu_ms": cold_cpu,
                      "warm_ms": [w for _, w, _ in warm], "warm_cpu_ms": [c for _, _, c in warm], "bytes": weight,
                      "computed_s": computed_s}
        log(f"  ui: {name} {response.status_code} cold {cold_ms:.0f} ms (cpu {cold_cpu:.0f}), "
            f"warm {warm_ms:.0f} ms (cpu {warm_cpu:.0f}), {weight:,} bytes"
            + (f"; re-priced in {computed_s:.0f} s" if computed_s is not None else ""))
        worst = max(cold_ms, warm_ms)
        rows.append(Row(
            "ui", f"page {name} (server time)",
            f"unitcost report in-process {baseline_ms:.0f} ms (cpu {baseline_cpu:.0f})",
            f"cold {cold_ms:.0f} ms (cpu {cold_cpu:.0f}), warm {warm_ms:.0f} ms (cpu {warm_cpu:.0f}); "
            f"{weight / 1000:,.0f} KB", f"<= {TARGET_MS} ms, < 500 KB",
            response.status_code == 200 and worst <= TARGET_MS and weight < WEIGHT_TARGET,
            f"rows shown {computed_s:.0f} s later (re-priced on a thread)" if computed_s is not None else "",
        ))
    return rows, data
