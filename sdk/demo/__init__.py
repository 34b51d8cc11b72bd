"""`unitcost demo`: a support-ticket agent run against a local fake OpenAI server."""

from __future__ import annotations

from pathlib import Path

import unitcost

from ..record.instrument import is_instrumented
from .server import FakeOpenAIServer

__all__ = ["DEMO_PRICES", "run_demo"]

# The demo's own price file, written beside its store: the agent runs on a hosted agent runtime that
# bills $0.08 a session-hour, each run's wall time rounded up to the started minute.
DEMO_PRICES = """\
# Written by `unitcost demo` (replaced on each run): the prices the demo's agent is billed at,
# besides genai-prices' token prices. See README, "Runtimes billed by time".
[[runtime]]
kind = "support_ticket"
session_hour_usd = 0.08
rounding = "minute"
"""


def run_demo(db_path: Path) -> dict[str, str]:
    """Write a fresh store at `db_path` from one run of the demo agent; returns each ticket's result."""
    # Here: openai is an optional dependency (the `openai` extra); the demo alone needs it.
    from openai import OpenAI

    from .agent import run_tickets

    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    was_instrumented = is_instrumented()
    prices = db_path.with_suffix(".toml")
    prices.write_text(DEMO_PRICES, encoding="utf-8")
    # Each ticket carries its customer: `unitcost report --users` works on the store without --user-attr.
    unitcost.configure(
        service_name="unitcost-demo", db=db_path, price_file=prices, user_attribute="customer", energy=True
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
