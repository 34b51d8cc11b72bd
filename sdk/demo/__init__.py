"""`unitcost demo`: a support-ticket agent run against a local fake OpenAI server."""

from __future__ import annotations

from pathlib import Path

import unitcost

from ..record.instrument import is_instrumented
from ..store.backend import is_url, redact_url
from .server import FakeOpenAIServer

__all__ = ["DEMO_PRICES", "DEMO_SERVICE", "NotADemoStore", "demo_price_file", "is_replaceable", "run_demo"]

DEMO_SERVICE = "unitcost-demo"

# The demo's own price file, written beside its store: the agent runs on a hosted agent runtime that
# bills $0.08 a session-hour, each run's wall time rounded up to the started minute.
DEMO_PRICES = """\
# Written by `unitcost demo` (replaced on each run): the prices the demo's agent is billed at,
# besides genai-prices' token prices. See docs/prices.md, "Runtimes billed by time".
[[runtime]]
kind = "support_ticket"
session_hour_usd = 0.08
rounding = "minute"
"""
_DEMO_PRICES_HEADER = "# Written by `unitcost demo`"


class NotADemoStore(Exception):
    """The demo was pointed at a file that holds something else: it is left exactly as it is."""


def is_replaceable(db_path: Path) -> bool:
    """Whether the demo may write `db_path`: nothing there, an empty file, or a store that only the demo
    wrote (every run's service is the demo's). Anything else may be someone's data."""
    # Here: sqlite3 only when the demo runs (start-up time of `import unitcost`).
    import sqlite3

    if not db_path.exists():
        return True
    if not db_path.is_file():
        return False
    if db_path.stat().st_size == 0:
        return True
    try:
        conn = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"runs", "calls"} <= tables:
            return False
        services = {r[0] for r in conn.execute("SELECT DISTINCT service FROM runs")}
        foreign_calls = conn.execute("SELECT COUNT(*) FROM calls WHERE run_id IS NULL").fetchone()[0]
        return services == {DEMO_SERVICE} and not foreign_calls
    except sqlite3.Error:  # not SQLite at all, or damaged: not the demo's
        return False
    finally:
        conn.close()


def _server_store_is_empty(url: str) -> bool:
    """Whether a PostgreSQL store holds no run and no call (or is not made yet): the demo never
    deletes anything on a server, so it writes only into an empty store there."""
    from ..store.connect import open_backend

    backend = open_backend(url)  # made (and migrated) when new, as the demo's writer would
    try:
        runs = backend.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        calls = backend.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        return not runs and not calls
    finally:
        backend.close()


def demo_price_file(db: str | Path) -> Path:
    """Where the demo writes its price file: beside its SQLite store, or here for a server store."""
    return Path("unitcost-demo.toml") if is_url(db) else Path(db).with_suffix(".toml")


def _prices_replaceable(prices: Path) -> bool:
    """Whether the demo may write its price file at `prices`: nothing there, or an earlier demo's."""
    if not prices.exists():
        return True
    if not prices.is_file():
        return False
    try:
        return prices.read_text(encoding="utf-8").startswith(_DEMO_PRICES_HEADER)
    except (OSError, UnicodeDecodeError):
        return False


def run_demo(db_path: str | Path) -> dict[str, str]:
    """Write a fresh store at `db_path` (a path, or a ``postgresql://`` URL of an empty store) from one
    run of the demo agent; returns each ticket's result.

    Raises NotADemoStore, changing nothing, when `db_path` holds anything but an earlier demo store
    (on a server: anything at all).
    """
    on_server = is_url(db_path)
    if on_server:
        if not _server_store_is_empty(str(db_path)):
            raise NotADemoStore(
                f"{redact_url(str(db_path))} already holds runs; on a server the demo writes only into an empty "
                "store (a new database or schema), and never deletes anything."
            )
    elif not is_replaceable(Path(db_path)):
        raise NotADemoStore(
            f"{db_path} exists and is not a unitcost demo store; the demo replaces only its own store. "
            "Pass another --db, or move that file away."
        )
    prices = demo_price_file(db_path)
    if not _prices_replaceable(prices):
        raise NotADemoStore(
            f"{prices} exists and is not the demo's price file; the demo replaces only its own files. "
            "Pass another --db, or move that file away."
        )
    # Here: openai is an optional dependency (the `openai` extra); the demo alone needs it.
    from openai import OpenAI

    from .agent import run_tickets

    for suffix in ("", "-wal", "-shm") if not on_server else ():
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    was_instrumented = is_instrumented()
    prices.write_text(DEMO_PRICES, encoding="utf-8")
    # Each ticket carries its customer: `unitcost report --users` works on the store without --user-attr.
    unitcost.configure(
        service_name=DEMO_SERVICE, db=db_path, price_file=prices, user_attribute="customer", energy=True
    )
    unitcost.instrument()
    try:
        with FakeOpenAIServer() as server:
            # max_retries=0: the failing ticket fails once, so the demo's numbers are fixed.
            client = OpenAI(base_url=server.base_url, api_key="demo-key-not-secret", max_retries=0)
            results = run_tickets(client)
            client.close()
    finally:
        unitcost.flush()
        unitcost.shutdown()
        if not was_instrumented:
            unitcost.uninstrument()
    return results
