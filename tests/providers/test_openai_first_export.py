"""The host's first LLM calls must not fail while unitcost's writer makes its first export.

Found with openai 2.x: the writer's first batch imported genai-prices on its own thread, which
imports httpx2, while the SDK's request path looked httpx2 up in ``sys.modules`` and found it half
initialised (``partially initialized module 'httpx2' has no attribute 'Timeout'``): 8 to 24 of the
first ~700 calls failed. unitcost now loads what its writers need when it is configured
(unitcost.pipeline.preload). The provider matrix runs this on every major line of the SDK.
"""

from __future__ import annotations

from providers.first_export import assert_no_call_fails


def test_calls_during_the_first_export_never_fail(tmp_path):
    assert_no_call_fails("openai", tmp_path)
