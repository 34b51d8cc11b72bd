"""Outcomes: what a task achieved, whether that counts as a success, and what it was worth."""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal

from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from ..common import attributes as A
from ..common.errors import internal_error, logger, strict
from ..common.money import parse_usd
from ..pipeline.config import pipeline

__all__ = ["ERROR_LABEL", "SUCCESS_LABELS", "Outcome", "is_success", "label_note", "record_outcome", "usd_or_none"]

SUCCESS_LABELS = frozenset({"resolved", "success", "succeeded", "completed", "passed"})
ERROR_LABEL = "error"


def is_success(label: str, success: bool | None) -> bool:
    """An explicit `success` wins; otherwise the label decides (see SUCCESS_LABELS)."""
    if success is not None:
        return bool(success)
    return label.strip().lower() in SUCCESS_LABELS


def label_note(label: str, success: bool | None) -> str | None:
    """A one-line note when a label counts as a failure only because it is not a success word."""
    if success is not None or label.strip().lower() in SUCCESS_LABELS:
        return None
    words = ", ".join(sorted(SUCCESS_LABELS))
    return (
        f"note: {label!r} is not a success word ({words}), so it counts as a failure; "
        "pass --success to count it as a success"
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    label: str
    success: bool
    value: Decimal | None
    recorded_ns: int

    @classmethod
    def make(cls, label: str, success: bool | None = None, value: object = None) -> Outcome:
        if not isinstance(label, str) or not label.strip():
            raise ValueError("an outcome label must be a non-empty string")
        label = label.strip()
        return cls(label, is_success(label, success), None if value is None else parse_usd(value), time.time_ns())

    @classmethod
    def keeping_label(cls, label: str, success: bool | None = None, value: object = None) -> Outcome:
        """As `make`, but a value that is not an amount in USD (NaN, inf, 1e300, "abc", True) is
        dropped with a warning and the label kept: a bad value never costs the outcome itself."""
        return cls.make(label, success, usd_or_none(value))

    def span_attributes(self) -> dict[str, object]:
        attrs: dict[str, object] = {
            A.OUTCOME_LABEL: self.label,
            A.OUTCOME_SUCCESS: self.success,
            A.OUTCOME_TIME: self.recorded_ns,
        }
        if self.value is not None:
            attrs[A.OUTCOME_VALUE] = str(self.value)
        return attrs


def usd_or_none(value: object) -> Decimal | None:
    """``value`` as an amount in USD, or None (with a warning naming it) when it is not one."""
    if value is None:
        return None
    try:
        return parse_usd(value)
    except (TypeError, ValueError) as exc:
        logger.warning("unitcost: outcome value %r dropped (%s); the outcome's label is kept", value, exc)
        return None


def record_outcome(
    label: str,
    *,
    task_id: str | None = None,
    kind: str | None = None,
    key: object = None,
    success: bool | None = None,
    value: object = None,
) -> None:
    """Record an outcome that arrives later: by a run's task id, or by the task's key (and kind).

    It may come from another process, hours later, before or after the task's spans reach the
    store: it is kept and joined at report time, and the latest outcome of a task wins.

    Example::

        unitcost.record_outcome("resolved", kind="support_ticket", key="T-1042", value=12.0)
    """
    try:
        if task_id is None and key is None:
            raise ValueError("record_outcome() needs task_id= or key=")
        made = Outcome.keeping_label(label, success, value)
        attrs: dict[str, object] = {A.SPAN_TYPE: "outcome", **made.span_attributes()}
        if task_id is not None:
            attrs[A.OUTCOME_TASK_ID] = str(task_id)
        if kind is not None:
            attrs[A.OUTCOME_KIND] = str(kind)
        if key is not None:
            try:
                attrs[A.OUTCOME_KEY] = A.task_key(key)
            except Exception as exc:  # noqa: BLE001 - a key whose str() raises names no task
                raise ValueError(f"its key cannot be made text ({type(exc).__name__})") from None
        # A root span of its own: the outcome belongs to the task it names, not to the code around it.
        span = pipeline().tracer.start_span(
            "unitcost.outcome", context=Context(), kind=SpanKind.INTERNAL, attributes=attrs  # type: ignore[arg-type]
        )
        span.add_event(
            A.EVALUATION_EVENT,
            {A.EVALUATION_NAME: "outcome", A.EVALUATION_LABEL: made.label, A.EVALUATION_SCORE: float(made.success)},
        )
        span.end()
    except ValueError as exc:
        # Your mistake (no label, no task named), said once in the log; raised only under
        # UNITCOST_STRICT: record_outcome never breaks the program that calls it.
        if strict():
            raise
        logger.warning("unitcost: record_outcome(%r) not recorded: %s", label, exc)
    except Exception as exc:  # noqa: BLE001
        internal_error("record_outcome", exc)
