"""`unitcost ui` on the 1,000,000-call store (`store.build_store`, cached): server time per page and
page weight. In-process (Starlette's TestClient): the time is the app's own, no browser or network.

A page's first request after the store changed computes its report (the same engine as `unitcost
report`, the baseline measured here in the same run); the app keeps the result per store version and
the live-update stream computes it again when the store changes, before the browser fetches the page.
So the figure that the target speaks of is a page served from that: "warm". "cold" is reported beside it.
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


def measure(tasks: int, calls_per_task: int, days: int, repeats: int, log: Any) -> tuple[list[Row], dict[str, Any]]:
    from starlette.testclient import TestClient

    from unitcost.query import open_store
    from unitcost.report import report
    from unitcost.ui import create_app

    path, _ = build_store(tasks, calls_per_task, days, log)
    with open_store(path) as db:
        started = time.perf_counter()
        report(db)
        baseline_ms = (time.perf_counter() - started) * 1000
    client = TestClient(create_app(path))
    static = sum(len(client.get(f"/static/{name}").content) for name in ("app.css", "app.js"))
    pages = ["/", "/?by=model", "/?every=week", "/tasks", "/tasks?sort=cost&dir=desc", "/tasks?retried=1&sort=runs",
             "/tasks?q=zzz", "TASK", "/compare?a=14d..7d&b=7d.."]
    rows, data = [], {}
    for page in pages:
        if page == "TASK":
            listing = client.get("/tasks?sort=cost&dir=desc").text
            page = "/task/" + re.search(r"/task/([0-9a-f]+)", listing).group(1)  # type: ignore[union-attr]
        started = time.perf_counter()
        response = client.get(page)
        cold_ms = (time.perf_counter() - started) * 1000
        warm = []
        for _ in range(repeats):
            started = time.perf_counter()
            client.get(page)
            warm.append((time.perf_counter() - started) * 1000)
        warm_ms = statistics.median(warm)
        weight = len(response.content) + static
        name = page if not page.startswith("/task/") else "/task/<costliest>"
        data[name] = {"status": response.status_code, "cold_ms": cold_ms, "warm_ms": warm, "bytes": weight}
        log(f"  ui: {name} {response.status_code} cold {cold_ms:.0f} ms, warm {warm_ms:.0f} ms, {weight:,} bytes")
        rows.append(Row(
            "ui", f"page {name} (server time, warm)", f"unitcost report in-process {baseline_ms:.0f} ms",
            f"{warm_ms:.0f} ms [cold {cold_ms:.0f} ms]; {weight / 1000:,.0f} KB", f"<= {TARGET_MS} ms, < 500 KB",
            response.status_code == 200 and warm_ms <= TARGET_MS and weight < WEIGHT_TARGET,
            "cold: the first request after a change, which computes the report" if cold_ms > TARGET_MS else "",
        ))
    return rows, data
