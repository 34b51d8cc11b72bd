"""Another OpenAI instrumentation in the same process (the official openai-v2, OpenLLMetry): each
call is stored once, in its task, with its exact tokens, in either order of setup and under a 1%
sampler; the caller sees exactly the chunks it sees uninstrumented."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from frameworks.real_parts import require

from unitcost.pricing.book import PriceBook
from unitcost.pricing.usage import Buckets

TESTS = Path(__file__).parents[1]
CALLS = 10 * 5  # 10 tasks of 5 calls: plain, streamed, raw, async streamed, async plain
UNINSTRUMENTED_CHUNKS = 5  # role, three pieces, finish: the usage chunk unitcost asks for stays hidden


@pytest.mark.parametrize("sampling", ["all", "1%"])
@pytest.mark.parametrize("order", ["unitcost-first", "unitcost-last"])
@pytest.mark.parametrize("which", ["openai-v2", "openllmetry"])
def test_each_call_stored_once_in_its_task(tmp_path, which, order, sampling):
    require(f"opentelemetry.instrumentation.{'openai_v2' if which == 'openai-v2' else 'openai'}")
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("coexist_app.py")), str(tmp_path / "s.db"), which, order,
         sampling],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": f"{TESTS}:{TESTS / 'frameworks'}", "UNITCOST_STRICT": "1", "PATH": ""},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["calls"], result["runs"], result["calls_in_no_task"], result["unpriced"]) == (CALLS, 10, 0, 0)
    assert result["input_tokens"] == [CALLS * 1200, CALLS * 400, CALLS * 80]
    one = PriceBook().cost_pico_at_ns("openai", "gpt-4o-mini", 1_764_061_200 * 10**9, 0, Buckets(800, 400, 0, 0, 80, 0))
    assert result["cost_pico"] == CALLS * one[0]
    assert result["chunks"] == [UNINSTRUMENTED_CHUNKS] * 20
