"""The `unitcost ui` web app: Starlette routes rendering Jinja2 templates over `ui.data.Reader`.

Pages are plain server-rendered HTML (they work without JavaScript); a small script keeps them live:
it listens on /events (server-sent events) and fetches the page again when the store changes.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import anyio.to_thread
import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from unitcost.common.errors import UnitcostError
from unitcost.common.money import format_usd, from_pico, usd_for_json
from unitcost.query import store_location
from unitcost.report import TASK_SORTS, dropped_note, estimated_note, group_label, unpriced_note
from unitcost.store.backend import is_url, redact_url

from .charts import sparkline, waterfall
from .data import TREND_GROUPS, TREND_METRICS, Filters, Reader, WhatIf, trend_series

__all__ = ["create_app"]

logger = logging.getLogger("unitcost.ui")
PAGE_SIZE = 50
_COOKIE = "unitcost_ui_token"


def _fmt(name: str, value: Any, marked: bool = False) -> str:
    """A report field as the terminal table prints it."""
    if value is None:
        return "-"
    if name == "success_rate" or name.endswith("_share"):
        return f"{value:.0%}"
    if isinstance(value, Decimal):
        return format_usd(value, marked=marked)
    return f"{value:,}" if isinstance(value, int) else str(value)


def _json_value(value: Any) -> str:
    """The value `report --format json` prints for a field, for the page's data-value attributes."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return repr(usd_for_json(value))
    return repr(value)


def _change(name: str, values: list[Any]) -> dict[str, Any] | None:
    """The last bucket against the one before it: {text, direction}; None without two values."""
    known = [v for v in values if v is not None]
    if len(values) < 2 or values[-1] is None or values[-2] is None:
        return None if len(known) < 2 else {"text": "no value in the latest period", "direction": "none"}
    last, before = values[-1], values[-2]
    if name == "success_rate" or name.endswith("_share"):
        delta = (last - before) * 100
        return {"text": f"{delta:+.1f} pts", "direction": "up" if delta > 0 else "down" if delta < 0 else "flat"}
    delta = Decimal(last) - Decimal(before)
    relative = f" ({delta / Decimal(before):+.1%})" if before else ""
    sign = "+" if delta >= 0 else "-"
    return {"text": sign + format_usd(abs(delta)) + relative,
            "direction": "up" if delta > 0 else "down" if delta < 0 else "flat"}


def _pico_usd(pico: int | None) -> str:
    return format_usd(from_pico(pico))


def _query(values: dict[str, Any]) -> str:
    """A URL query of the values that are set (a shared link stays short)."""
    return urlencode({k: v for k, v in values.items() if v not in ("", None)})


def _when(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ns / 1e9))


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("unitcost.ui", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    env.filters.update(fmt=_fmt, usd=format_usd, json_value=_json_value, when=_when, pico_usd=_pico_usd)
    env.globals.update(urlencode=urlencode, group_label=group_label, q=_query)
    return env


def _groups(rows: list[dict[str, Any]], bucket_rows: list[dict[str, Any]], every: str) -> list[dict[str, Any]]:
    """The overview's rows, the first `TREND_GROUPS` with their trends: each metric per time bucket,
    drawn, with its change. (The page draws no more: by a task attribute of 100 values, drawing every
    group's 6 x 90 points took 300-400 ms of the page's time on the 1,000,000-call store.)"""
    by_group: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for bucket_row in bucket_rows:
        key = tuple((k, v) for k, v in bucket_row["group"].items() if k != every)
        by_group.setdefault(key, []).append(bucket_row)
    groups: list[dict[str, Any]] = []
    for row in rows:
        if len(groups) >= TREND_GROUPS:
            groups.append({"row": row, "label": group_label(row), "trends": [], "buckets": []})
            continue
        mine = by_group.get(tuple(row["group"].items()), [])
        buckets, series = trend_series(mine, row["group"], every)
        trends = []
        for name, words in TREND_METRICS:
            values = series[name]
            shown = [_fmt(name, v) for v in values]
            floats = [None if v is None else float(v) for v in values]
            trends.append({"name": name, "words": words, "chart": sparkline(buckets, floats, shown),
                           "latest": shown[-1] if shown else "-", "change": _change(name, values)})
        groups.append({"row": row, "label": group_label(row), "trends": trends, "buckets": buckets})
    return groups


class _TokenGate(BaseHTTPMiddleware):
    """With --token: every request shows it once (?token=, or Authorization: Bearer), then a cookie."""

    def __init__(self, app: Any, token: str) -> None:
        super().__init__(app)
        self.token = token

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        given = request.query_params.get("token") or request.cookies.get(_COOKIE) or ""
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            given = header[7:]
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return PlainTextResponse("unitcost ui: this server needs its token (open the URL it printed)", 401)
        response = await call_next(request)
        if request.query_params.get("token"):
            response.set_cookie(_COOKIE, self.token, httponly=True, samesite="strict")
        return response


def create_app(
    db_path: str | Path, *, token: str | None = None, poll_interval: float = 1.0, warm: bool = False,
    prices: Sequence[str | Path] = (),
) -> Starlette:
    """The app over the store at `db_path` (a path or a postgresql:// URL). `token`: required of
    every request when set. `warm`: compute the overview and the task list in the background now.
    `prices`: price tables (TOML files, as `unitcost whatif --prices` takes) the what-if page offers."""
    price_files = [str(p) for p in prices]
    reader = Reader(store_location(db_path))
    templates = Jinja2Templates(env=_environment())
    shown_location = redact_url(str(reader.location)) if is_url(reader.location) else str(reader.location)

    def render(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        base = {"version": context.pop("version", ""), "computed_at": context.pop("computed_at", time.time()),
                "nav": name.removesuffix(".html"), "db_path": shown_location}
        return templates.TemplateResponse(request, name, {**base, **context}, status_code=status)

    def failed(request: Request, exc: Exception, filters: Filters | None = None) -> Response:
        return render(request, "error.html", {"message": str(exc), "filters": filters or Filters()}, status=400)

    views: dict[tuple[Filters, float], list[dict[str, Any]]] = {}

    async def run(fn: Any, *args: Any) -> Any:
        return await anyio.to_thread.run_sync(fn, *args)

    async def overview(request: Request) -> Response:
        filters = Filters.from_query(request.query_params)
        try:
            version = await run(reader.version)
            data, computed_at = await run(reader.overview, filters)
        except (UnitcostError, ValueError) as exc:
            return failed(request, exc, filters)
        rows = data["rows"]
        built = views.get((filters, computed_at))
        if built is None:  # the trends drawn once per result, not per request
            built = views[(filters, computed_at)] = _groups(rows, data["buckets"], filters.every)
            while len(views) > 16:
                views.pop(next(iter(views)))
        groups = built
        notes = [n for n in (dropped_note(rows), unpriced_note(rows), estimated_note(rows)) if n]
        return render(request, "overview.html", {
            "filters": filters, "groups": groups, "trend_groups": TREND_GROUPS, "notes": notes,
            "group_names": list(rows[0]["group"]) if rows else [],
            "version": version, "computed_at": computed_at,
        })

    async def tasks(request: Request) -> Response:
        q = request.query_params
        filters = Filters.from_query(q)
        sort = str(q.get("sort")) if q.get("sort") in TASK_SORTS else "started"
        descending = q.get("dir", "desc") != "asc"
        retried = q.get("retried") == "1"
        search = (q.get("q") or "").strip()
        try:
            page = max(int(q.get("page") or 1), 1)
        except ValueError:
            page = 1
        try:
            options = filters.report_options()
            version = await run(reader.version)
            (total, rows), computed_at = await run(lambda: reader.task_list(
                sort=sort, descending=descending, kind=filters.kind or None, search=search or None,
                retried=retried, since_ns=options["since_ns"], until_ns=options["until_ns"],
                offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE,
            ))
        except (UnitcostError, ValueError) as exc:
            return failed(request, exc, filters)
        state = {"kind": filters.kind, "since": filters.since, "until": filters.until, "q": search,
                 "retried": "1" if retried else "", "sort": sort, "dir": "desc" if descending else "asc"}
        return render(request, "tasks.html", {
            "filters": filters, "rows": rows, "total": total, "page": page, "pages": max(-(-total // PAGE_SIZE), 1),
            "state": state, "sorts": TASK_SORTS, "version": version, "computed_at": computed_at,
        })

    async def task(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            version = await run(reader.version)
            (detail, runs), computed_at = await run(reader.task, run_id)
        except (UnitcostError, ValueError) as exc:
            return render(request, "error.html", {"message": str(exc), "filters": Filters()}, status=404)
        return render(request, "task.html", {
            "d": detail, "runs": runs, "task_cost": sum(cost for _, cost, _ in runs),
            "task_marked": any(marked for _, _, marked in runs), "bars": waterfall(detail.tree),
            "filters": Filters(), "version": version,
            "computed_at": computed_at, "recorded": request.query_params.get("recorded", ""),
        })

    async def record_outcome(request: Request) -> Response:
        # Same-origin POSTs only: another site's page must not record outcomes through a user's browser.
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            return PlainTextResponse("cross-origin request refused", 403)
        # (a urlencoded body, read here: Starlette's form parser would need python-multipart)
        form = {k: v[-1] for k, v in parse_qs((await request.body()).decode("utf-8", "replace")).items()}
        run_id = request.path_params["run_id"]
        label = str(form.get("label") or "").strip()
        success = {"success": True, "failure": False}.get(str(form.get("success") or ""))
        if not label:
            return PlainTextResponse("give a label", 400)
        try:
            (detail, _), _ = await run(reader.task, run_id)
            ref, kind = (detail.key, detail.kind) if detail.key is not None else (detail.run_id, None)
            await run(reader.record_outcome, ref, label, kind, success)
        except (UnitcostError, ValueError) as exc:
            return failed(request, exc)
        return RedirectResponse(f"/task/{run_id}?{urlencode({'recorded': label})}", status_code=303)

    async def compare(request: Request) -> Response:
        q = request.query_params
        filters = Filters.from_query(q)
        a, b = (q.get("a") or "").strip(), (q.get("b") or "").strip()
        rows: list[dict[str, Any]] = []
        version, computed_at = "", time.time()
        if a and b:
            try:
                version = await run(reader.version)
                rows, computed_at = await run(reader.compare, a, b, filters.by, filters.kind or None)
            except (UnitcostError, ValueError) as exc:
                return failed(request, exc, filters)
        return render(request, "compare.html", {
            "filters": filters, "a": a, "b": b, "rows": rows, "version": version, "computed_at": computed_at,
            "title": f"{a} (A) vs {b} (B)", "a_label": a, "b_label": b, "mode": "compare",
        })

    async def whatif(request: Request) -> Response:
        q = request.query_params
        filters = Filters.from_query(q)
        price_file = q.get("prices") or None
        routes = tuple(r.strip() for r in (q.get("route") or "").splitlines() if r.strip())
        batch = tuple(k for k in (q.get("batch") or "").replace(",", " ").split() if k)
        what = WhatIf(model=(q.get("model") or "").strip() or None,
                      from_model=(q.get("from_model") or "").strip() or None, price_file=price_file,
                      assume_cache=q.get("cache") == "1", routes=routes, batch_kinds=batch)
        result: dict[str, Any] | None = None
        version, computed_at = "", time.time()
        if price_file is not None and price_file not in price_files:
            # (only the tables `unitcost ui --prices` named: a URL must not read any file of the machine)
            return failed(request, ValueError(
                f"no price table {price_file!r}: start the UI with `unitcost ui --prices FILE` to offer one"), filters)
        if what.asks():
            try:
                version = await run(reader.version)
                result, computed_at = await run(reader.whatif, what, filters)
            except (UnitcostError, ValueError) as exc:
                return failed(request, exc, filters)
        words = " + ".join(p for p in (
            f"{what.from_model or 'every model'} -> {what.model}" if what.model else "",
            f"prices from {price_file}" if price_file else "",
            "prompt caching assumed" if what.assume_cache else "",
            *(f"route {r}" for r in routes),
            f"Batch API for {', '.join(batch)}" if batch else "",
        ) if p)
        return render(request, "compare.html", {
            "filters": filters, "rows": result["rows"] if result else [], "version": version,
            "computed_at": computed_at, "what": what, "price_files": price_files, "result": result,
            "computing": what.asks() and result is None, "started_ago": time.time() - computed_at,
            "title": f"What if: {words}", "a_label": "now", "b_label": "what if", "mode": "whatif",
        })

    async def events(request: Request) -> Response:
        """`changed` when the store's version differs from the page's; the page then fetches itself again.
        Each stream lives at most 30 s (the browser reconnects); it ends when the server stops."""
        seen = request.query_params.get("v", "")

        async def stream() -> Any:
            nonlocal seen
            yield "retry: 1000\n\n"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not app.state.stopping:
                if await request.is_disconnected():
                    return
                try:
                    version = await run(reader.version)
                except (UnitcostError, ValueError):
                    version = seen
                if version != seen:
                    seen = version
                    # the pages' data, computed now, off any page request: the fetch that follows finds it
                    await run(reader.refresh)
                    yield f"event: changed\ndata: {version}\n\n"
                else:
                    yield ": alive\n\n"
                await asyncio.sleep(poll_interval)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    middleware = [Middleware(_TokenGate, token=token)] if token else []
    app = Starlette(
        routes=[
            Route("/", overview, name="overview"),
            Route("/tasks", tasks, name="tasks"),
            Route("/task/{run_id}", task, name="task"),
            Route("/task/{run_id}/outcome", record_outcome, methods=["POST"], name="record_outcome"),
            Route("/compare", compare, name="compare"),
            Route("/whatif", whatif, name="whatif"),
            Route("/events", events, name="events"),
            Mount("/static", StaticFiles(packages=[("unitcost.ui", "static")]), name="static"),
        ],
        middleware=middleware,
    )
    app.state.stopping = False
    app.state.reader = reader
    if warm:
        # The first page's data, computed while the browser opens (a report over a large store takes seconds).
        threading.Thread(target=_warm, args=(reader,), name="unitcost-ui-warm", daemon=True).start()
    return app


def _warm(reader: Reader) -> None:
    try:
        reader.overview(Filters())
        reader.task_list(sort="started", descending=True, kind=None, search=None, retried=False,
                         since_ns=None, until_ns=None, offset=0, limit=PAGE_SIZE)
    except Exception:  # the page will say what is wrong when it is asked for
        logger.debug("unitcost ui: warming up failed", exc_info=True)
