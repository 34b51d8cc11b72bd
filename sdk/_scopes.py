"""`task`, `step` and `tool`: each a decorator and a context manager around one span.

The caller's thread only starts the span, sets attributes and ends it; everything else happens in
the exporter thread. A decorated function's result and exception pass through unchanged.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from contextvars import Token
from decimal import Decimal
from typing import Any, TypeVar, cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import _attributes as A
from ._budget import charge, check_before_spending
from ._config import pipeline
from ._context import TaskRun, current_run
from ._errors import internal_error
from ._money import parse_usd
from ._outcomes import ERROR_LABEL, Outcome

F = TypeVar("F", bound=Callable[..., Any])

_MAX_ATTR_LEN = 4096


def _attr_value(value: Any) -> Any:
    """A task attribute as an OpenTelemetry attribute value (str, bool, int or float)."""
    if isinstance(value, (bool, int, float)):
        return value
    text = value if isinstance(value, str) else str(value)
    return text[:_MAX_ATTR_LEN]


class _Active:
    """What one entry into a scope started, so the exit can end exactly that."""

    __slots__ = ("span", "otel_token", "run", "run_token")

    def __init__(self, span: Any, otel_token: object, run: TaskRun | None, run_token: Token[Any] | None):
        self.span = span
        self.otel_token = otel_token
        self.run = run
        self.run_token = run_token


class _Scope:
    """Shared machinery: a span around a block or a call, sync or async, generator or not."""

    _type = ""
    _cost: Decimal | None = None  # a tool's fixed cost per call

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"unitcost.{self._type}() needs a non-empty name")
        self.name = name
        self._entered: list[_Active] = []

    # -- what each kind of scope puts on its span ---------------------------------------------
    def _span_name(self) -> str:
        raise NotImplementedError

    def _start_attributes(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _make_run(self, span: Any, attrs: dict[str, Any], args: Any, kwargs: Any) -> TaskRun | None:
        return None

    # -- span lifecycle --------------------------------------------------------------------------
    def _start(self, args: tuple[Any, ...] = (), kwargs: Mapping[str, Any] | None = None) -> _Active | None:
        if self._type == "tool":
            check_before_spending(current_run.get())  # raises BudgetExceeded when asked to
        try:
            attrs = self._start_attributes(args, kwargs or {})
            run = current_run.get()
            if run is not None:
                attrs[A.TASK_ID] = run.id
            span = pipeline().tracer.start_span(self._span_name(), kind=SpanKind.INTERNAL, attributes=attrs)
            new_run = self._make_run(span, attrs, args, kwargs or {})
            otel_token = otel_context.attach(trace.set_span_in_context(span))
            run_token = current_run.set(new_run) if new_run is not None else None
            return _Active(span, otel_token, new_run, run_token)
        except Exception as exc:  # noqa: BLE001 - the user's code runs even if telemetry cannot
            internal_error(f"{self._type} start", exc)
            return None

    def _end(self, active: _Active | None, exc: BaseException | None) -> None:
        if active is None:
            return
        try:
            if active.run_token is not None:
                current_run.reset(active.run_token)
            otel_context.detach(active.otel_token)  # type: ignore[arg-type]
            span = active.span
            if exc is not None:
                span.set_attribute(A.ERROR_TYPE, type(exc).__qualname__)
                span.set_status(Status(StatusCode.ERROR, str(exc)[:_MAX_ATTR_LEN]))
            if active.run is not None:
                outcome = active.run.outcome
                if outcome is None and exc is not None:
                    outcome = Outcome.make(ERROR_LABEL, success=False)
                if outcome is not None:
                    span.set_attributes(outcome.span_attributes())  # type: ignore[arg-type]
            span.end()
            if self._type == "tool" and self._cost is not None:
                run = current_run.get()
                if run is not None and run.budget is not None:
                    charge(run, self._cost)
        except Exception as err:  # noqa: BLE001
            internal_error(f"{self._type} end", err)

    # -- context manager -------------------------------------------------------------------------
    def __enter__(self) -> Any:
        active = self._start()
        self._entered.append(active)  # type: ignore[arg-type]
        return active.run if active is not None else None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self._end(self._entered.pop(), exc)

    async def __aenter__(self) -> Any:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- decorator -------------------------------------------------------------------------------
    def __call__(self, fn: F) -> F:
        start, end = self._start, self._end
        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            async def async_gen_wrapper(*args: Any, **kwargs: Any) -> Any:
                active = start(args, kwargs)
                try:
                    async for item in fn(*args, **kwargs):
                        yield item
                except GeneratorExit:  # the consumer stopped early: not an error
                    end(active, None)
                    raise
                except BaseException as exc:
                    end(active, exc)
                    raise
                end(active, None)

            return cast(F, async_gen_wrapper)
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                active = start(args, kwargs)
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    end(active, exc)
                    raise
                end(active, None)
                return result

            return cast(F, async_wrapper)
        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
                active = start(args, kwargs)
                try:
                    result = yield from fn(*args, **kwargs)
                except GeneratorExit:  # the consumer stopped early: not an error
                    end(active, None)
                    raise
                except BaseException as exc:
                    end(active, exc)
                    raise
                end(active, None)
                return result

            return cast(F, gen_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            active = start(args, kwargs)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                end(active, exc)
                raise
            end(active, None)
            return result

        return cast(F, wrapper)


class task(_Scope):  # noqa: N801 - used like a function: @unitcost.task("kind")
    """One run of a task of some kind: a support ticket, a pull request, a question.

    ``key`` names the business object the task works on (a ticket id): runs of one kind with the
    same key are one task in reports. In the decorator form ``key`` and ``attributes`` may be
    callables; they receive the decorated function's arguments. ``attributes`` are for grouping
    reports (customer, tenant, prompt version...). ``budget_usd`` warns, or with
    ``on_budget="raise"`` stops the run's next LLM or tool call with `BudgetExceeded`, once the run
    has spent more than that (see `unitcost._budget`).

    Example::

        @unitcost.task("support_ticket", key=lambda t: t.id, attributes=lambda t: {"customer": t.customer})
        def handle(ticket): ...

        with unitcost.task("support_ticket", key="T-1042") as run:
            print(run.id)
    """

    _type = "task"

    def __init__(
        self,
        kind: str,
        *,
        key: Any = None,
        attributes: Mapping[str, Any] | Callable[..., Mapping[str, Any]] | None = None,
        budget_usd: float | str | Decimal | None = None,
        on_budget: str = "warn",
    ) -> None:
        super().__init__(kind)
        if on_budget not in ("warn", "raise"):
            raise ValueError('on_budget must be "warn" or "raise"')
        self.key = key
        self.attributes = attributes
        self.budget = None if budget_usd is None else parse_usd(budget_usd)
        self.on_budget = on_budget

    def _span_name(self) -> str:
        return f"invoke_agent {self.name}"

    def _start_attributes(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            A.SPAN_TYPE: "task",
            A.OPERATION: A.OP_INVOKE_AGENT,
            A.AGENT_NAME: self.name,
            A.TASK_KIND: self.name,
        }
        key = self.key(*args, **kwargs) if callable(self.key) else self.key
        if key is not None:
            attrs[A.TASK_KEY] = str(key)[:_MAX_ATTR_LEN]
        extra = self.attributes(*args, **kwargs) if callable(self.attributes) else self.attributes
        for name, value in (extra or {}).items():
            if value is not None:
                attrs[A.TASK_ATTR_PREFIX + str(name)] = _attr_value(value)
        return attrs

    def _make_run(self, span: Any, attrs: dict[str, Any], args: Any, kwargs: Any) -> TaskRun:
        run_id = format(span.get_span_context().span_id, "016x")
        parent = current_run.get()
        if parent is not None:
            span.set_attribute(A.TASK_PARENT_ID, parent.id)
        span.set_attribute(A.TASK_ID, run_id)
        prefix = len(A.TASK_ATTR_PREFIX)
        user_attrs = {k[prefix:]: v for k, v in attrs.items() if k.startswith(A.TASK_ATTR_PREFIX)}
        return TaskRun(run_id, self.name, attrs.get(A.TASK_KEY), user_attrs, parent, self.budget, self.on_budget)


class step(_Scope):  # noqa: N801
    """A named part of a task (planning, retrieval, drafting) shown as a node in ``unitcost show``."""

    _type = "step"

    def _span_name(self) -> str:
        return self.name

    def _start_attributes(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        return {A.SPAN_TYPE: "step", A.STEP_NAME: self.name}


class tool(_Scope):  # noqa: N801
    """A tool call made by an agent, with an optional fixed cost per call in USD.

    Example::

        @unitcost.tool("search_kb", cost=0.002)
        def search_kb(query): ...
    """

    _type = "tool"

    def __init__(self, name: str, *, cost: float | str | Decimal | None = None) -> None:
        super().__init__(name)
        self._cost = None if cost is None else parse_usd(cost)
        self.cost = None if cost is None else str(self._cost)

    def _span_name(self) -> str:
        return f"execute_tool {self.name}"

    def _start_attributes(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        attrs: dict[str, Any] = {A.SPAN_TYPE: "tool", A.OPERATION: A.OP_EXECUTE_TOOL, A.TOOL_NAME: self.name}
        if self.cost is not None:
            attrs[A.TOOL_COST] = self.cost
        return attrs
