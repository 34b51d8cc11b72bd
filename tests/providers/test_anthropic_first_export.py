"""The host's first Anthropic calls must not fail while unitcost's writer makes its first export
(see tests/providers/test_openai_first_export.py; the provider matrix runs this on every major line)."""

from __future__ import annotations

from providers.first_export import assert_no_call_fails


def test_calls_during_the_first_export_never_fail(tmp_path):
    assert_no_call_fails("anthropic", tmp_path)
