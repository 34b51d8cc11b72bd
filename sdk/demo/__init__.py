"""`unitcost demo`: a support-ticket agent run against a local fake OpenAI server."""

from __future__ import annotations

from pathlib import Path

import unitcost

from ..record.instrument import is_instrumented
from .server import FakeOpenAIServer

__all__ = ["run_demo"]


def run_demo(db_path: Path) -> dict[str, str]:
    """Write a fresh store at `db_path` from one run of the demo agent; returns each ticket's result."""
    # Here: openai is an optional dependency (the `openai` extra); the demo alone needs it.
    from openai import OpenAI

    from .agent import run_tickets

    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    was_instrumented = is_instrumented()
    unitcost.configure(service_name="unitcost-demo", db=db_path)
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
