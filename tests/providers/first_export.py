"""Runs tests/providers/first_export_app.py in a fresh interpreter and checks that no host call failed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

APP = Path(__file__).with_name("first_export_app.py")


def assert_no_call_fails(sdk: str, tmp_path: Path, seconds: float = 3.0) -> None:
    # Not strict: under UNITCOST_STRICT an internal error would raise on the writer thread, and this
    # test is about what the host sees, as in production.
    env = {k: v for k, v in os.environ.items() if k != "UNITCOST_STRICT"}
    done = subprocess.run(
        [sys.executable, str(APP), sdk, str(tmp_path / "store.db"), str(seconds)],
        capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["failed"] == 0, result
    assert result["made"] >= 200, result  # the calls really ran on through the first export
    assert result["stored"] == result["made"], result
