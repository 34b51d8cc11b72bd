"""The CLI as the UI's tests run it: in a process of its own, on a given store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def unitcost_cli(*args: str, db: Path) -> str:
    """`unitcost ARGS --db DB` in a process of its own (as a user runs it); its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", "from unitcost.cli.main import cli; cli()", *args, "--db", str(db)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def report_json(db: Path, *args: str) -> list[dict[str, Any]]:
    return json.loads(unitcost_cli("report", "--format", "json", *args, db=db))
