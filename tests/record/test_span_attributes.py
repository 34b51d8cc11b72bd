"""unitcost's own attributes, set without OpenTelemetry's per-value checks, end up exactly as
``set_attributes`` would leave them; anything it cannot vouch for takes the SDK's path."""

from __future__ import annotations

from opentelemetry.sdk.trace import SpanLimits, TracerProvider

from unitcost.record.span_attributes import set_own_attributes

VALUES = {
    "gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 1200, "unitcost.call.incomplete": True,
    "unitcost.call.time_to_first_chunk": 0.25, "gen_ai.response.finish_reasons": ["stop", "length"],
}


def _pair(limits: SpanLimits | None = None):
    tracer = TracerProvider(span_limits=limits).get_tracer("t")
    return tracer.start_span("ours"), tracer.start_span("sdk")


def test_the_same_attributes_as_the_sdk_sets():
    ours, sdk = _pair()
    set_own_attributes(ours, VALUES)
    sdk.set_attributes(VALUES)
    assert dict(ours.attributes) == dict(sdk.attributes)
    assert ours.attributes["gen_ai.response.finish_reasons"] == ("stop", "length")
    assert VALUES["gen_ai.response.finish_reasons"] == ["stop", "length"]  # the caller's dict is not changed


def test_values_it_cannot_vouch_for_take_the_sdks_checks():
    ours, sdk = _pair()
    odd = {"a": None, "b": {"nested": 1}, "c": [1, "x"], "d": "ok"}
    set_own_attributes(ours, odd)
    sdk.set_attributes(odd)
    assert dict(ours.attributes) == dict(sdk.attributes)


def test_limits_in_force_are_the_sdks_to_apply():
    ours, sdk = _pair(SpanLimits(max_span_attributes=3, max_attribute_length=4))
    set_own_attributes(ours, VALUES)
    sdk.set_attributes(VALUES)
    assert dict(ours.attributes) == dict(sdk.attributes)
    assert len(ours.attributes) == 3


def test_an_ended_span_is_left_as_it_was():
    ours, _ = _pair()
    ours.end()
    set_own_attributes(ours, VALUES)
    assert dict(ours.attributes) == {}
