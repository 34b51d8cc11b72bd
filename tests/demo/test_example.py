"""examples/support_agent.py, run as the README's reader would run it: offline, its report checked
by hand.

Server facts (unitcost/demo/server.py) and prices (genai-prices, per million tokens):
- classify, gpt-4o-mini ($0.15 input, $0.075 cached input, $0.60 output): 1310 prompt tokens, 12
  completion tokens; 1152 of the prompt cached on every call but the first.
- draft, o4-mini ($1.10 input, $4.40 output): 2100 prompt, 640 completion of which 448 reasoning;
  only the two tickets the classifier does not escalate get one.
- search_kb: a tool at $0.002 a call, one per ticket.
Three tickets: two resolved in the task, the third escalated, then resolved by a late outcome.
"""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from unitcost import query

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "support_agent.py"
M = Decimal(1_000_000)
CLASSIFY_FIRST = (1310 * Decimal("0.15") + 12 * Decimal("0.6")) / M
CLASSIFY_CACHED = ((1310 - 1152) * Decimal("0.15") + 1152 * Decimal("0.075") + 12 * Decimal("0.6")) / M
DRAFT = (2100 * Decimal("1.10") + 640 * Decimal("4.40")) / M
TOOLS = 3 * Decimal("0.002")


def test_the_example_runs_offline_and_prices_every_call(tmp_path: Path) -> None:
    db = tmp_path / "agent store.db"  # (a space: the hint it prints must still be a command that works)
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=tmp_path, env={**os.environ, "UNITCOST_DB": str(db)},
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"Now run: unitcost report --db '{db}'"

    [row] = query.report(db=db)
    llm = CLASSIFY_FIRST + 2 * CLASSIFY_CACHED + 2 * DRAFT
    assert (row["tasks"], row["succeeded"], row["llm_calls"], row["tool_calls"]) == (3, 3, 5, 3)
    assert Decimal(str(row["llm_cost_usd"])) == llm  # 0.0106903
    assert Decimal(str(row["cost_usd"])) == llm + TOOLS
    assert (row["reasoning_tokens"], row["unpriced_calls"], row["dropped_spans"]) == (2 * 448, 0, 0)
