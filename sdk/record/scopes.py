"""`task`, `step` and `tool`: each a decorator and a context manager around one span.

The caller's thread only starts the span, sets attributes and ends it; everything else happens in
the exporter thread. A decorated function's result and exception pass through unchanged.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from decimal import Decimal
from typing import Any, TypeVar, cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from ..common import attributes as A
from ..common.errors import internal_error, logger
from ..common.money import parse_usd
from ..common.secrets import scrub
from ..pipeline.config import pipeline
from .budget import charge, check_before_spending
from .context import TaskRun, current_run
from .outcomes import ERROR_LABEL, Outcome
from .span_attributes import set_own_attributes

__all__ = ["session", "step", "task", "tool"]

F = TypeVar("F", bound=Callable[..., Any])

_MAX_ATTR_LEN = 4096


def _text(value: Any) -> str:
    """User text as an attribute value: at most _MAX_ATTR_LEN characters, valid UTF-8 (bytes are
    decoded, and lone surrogates, which no exporter can encode, become "?")."""
    if isinstance(value, bytes | bytearray):
        text = bytes(value[: _MAX_ATTR_LEN * 4]).decode("utf-8", "replace")
    else:
        text = value if isinstance(value, str) else str(value)
    text = text[:_MAX_ATTR_LEN]
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _why(exc: BaseException) -> str:
    """An exception of the user's, for a warning: its type and the start of its message, scrubbed
    of anything shaped like a credential."""
    return f"{type(exc).__name__}: {scrub(str(exc)[:200])}"


def _attr_value(value: Any) -> Any:
    """A task attribute as an OpenTelemetry attribute value (str, bool, int or float)."""
    if isinstance(value, (bool, int, float)):
        return value
    return _text(value)


class _Active:
    """What one entry into a scope started: its span and, for a task, its run.

    The span is started once and ended once; the context (the current span and run) is attached
    around the code that runs inside it: the whole block for a function or a ``with``, each step for
    a generator, so the consumer's code between two items is not counted in the generator's task.
    """

    __slots__ = ("span", "run", "context")

    def __init__(self, span: Any, run: TaskRun | None) -> None:
        self.span = span
        self.run = run
        self.context = trace.set_span_in_context(span)

    def attach(self) -> tuple[object, Token[Any] | None]:
        return otel_context.attach(self.context), current_run.set(self.run) if self.run is not None else None

    @staticmethod
    def detach(tokens: tuple[object, Token[Any] | None]) -> None:
        otel_token, run_token = tokens
        if run_token is not None:
            current_run.reset(run_token)
        otel_context.detach(otel_token)  # type: ignore[arg-type]


# The scopes entered with `with` in this context, innermost last: (scope, entry, context tokens).
_open_scopes: ContextVar[tuple[tuple[Any, Any, Any], ...]] = ContextVar("unitcost_open_scopes", default=())


class _Scope:
    """Shared machinery: a span around a block or a call, sync or async, generator or not."""

    _type = ""
    _cost: Decimal | None = None  # a tool's fixed cost per call

    def __new__(cls, name: Any = None, *args: Any, **kwargs: Any) -> Any:
        # `@unitcost.task` without parentheses hands the function over as the name: the scope is then
        # named after the function, and the decorated function is returned.
        if callable(name) and not isinstance(name, str) and not args and not kwargs:
            scope = cls(getattr(name, "__name__", "") or repr(name))
            return scope(name)
        return super().__new__(cls)

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"unitcost.{self._type}() needs a non-empty name")
        self.name = _text(name)

    # -- what each kind of scope puts on its span ---------------------------------------------
    def _span_name(self) -> str:
        raise NotImplementedError

    def _start_attributes(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _make_run(self, span: Any, attrs: dict[str, Any]) -> TaskRun | None:
        """The run a task span starts (None for other scopes); it may add attributes to ``attrs``,
        which are set on the span after this."""
        return None

    def _uses_arguments(self) -> bool:
        return False

    # -- span lifecycle --------------------------------------------------------------------------
    def _start(self, args: tuple[Any, ...] = (), kwargs: Mapping[str, Any] | None = None) -> _Active | None:
        if self._type == "tool":
            check_before_spending(current_run.get())  # raises BudgetExceeded when asked to
        try:
            attrs = self._start_attributes(args, kwargs or {})
            run = current_run.get()
            if run is not None:
                attrs[A.TASK_ID] = run.id
            # The sampler sees the span's type; the rest is set without OpenTelemetry's per-value checks
            # (unitcost.record.span_attributes), which would cost more than the span itself.
            span = pipeline().tracer.start_span(
                self._span_name(), kind=SpanKind.INTERNAL, attributes={A.SPAN_TYPE: attrs[A.SPAN_TYPE]}
            )
            made = self._make_run(span, attrs)  # (a task's ids join attrs: one setting for all of them)
            set_own_attributes(span, attrs)
            return _Active(span, made)
        except Exception as exc:  # noqa: BLE001 - the user's code runs even if telemetry cannot
            internal_error(f"{self._type} start", exc)
            return None

    def _end(self, active: _Active | None, exc: BaseException | None) -> None:
        if active is None:
            return
        try:
            span = active.span
            if exc is not None:
                span.set_attribute(A.ERROR_TYPE, type(exc).__qualname__)
                span.set_status(Status(StatusCode.ERROR, scrub(_text(str(exc)[: _MAX_ATTR_LEN * 4]))))
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

    def _enter(self, args: tuple[Any, ...] = (), kwargs: Mapping[str, Any] | None = None) -> Any:
        """Start and attach: (entry, context tokens)."""
        active = self._start(args, kwargs)
        return active, (active.attach() if active is not None else None)

    def _exit(self, active: _Active | None, tokens: Any, exc: BaseException | None) -> None:
        if tokens is not None:
            try:
                _Active.detach(tokens)
            except Exception as err:  # noqa: BLE001 - e.g. a token from another context
                internal_error(f"{self._type} detach", err)
        self._end(active, exc)

    # -- context manager -------------------------------------------------------------------------
    def __enter__(self) -> Any:
        active, tokens = self._enter()
        # Kept in the context, not on the object: one scope object may be entered by several threads
        # or asyncio tasks at once.
        _open_scopes.set((*_open_scopes.get(), (self, active, tokens)))
        return active.run if active is not None else None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        stack = _open_scopes.get()
        for i in range(len(stack) - 1, -1, -1):
            if stack[i][0] is self:
                _open_scopes.set(stack[:i] + stack[i + 1 :])
                self._exit(stack[i][1], stack[i][2], exc)
                return

    async def __aenter__(self) -> Any:
        return self.__enter__()

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.__exit__(exc_type, exc, tb)

    # -- decorator -------------------------------------------------------------------------------
    def __call__(self, fn: F) -> F:
        if isinstance(fn, classmethod | staticmethod):
            # @unitcost.task(...) written above @classmethod / @staticmethod: wrap the function inside.
            return cast(F, type(fn)(self(fn.__func__)))
        start, end, enter, exit_ = self._start, self._end, self._enter, self._exit
        signature = inspect.signature(fn) if self._uses_arguments() else None

        def arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
            # `key`/`attributes` callables get the arguments in the function's own order, however
            # the caller passed them (handle(ticket=t) reaches `lambda t: t.id` too).
            if signature is None or not kwargs:
                return args, kwargs
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError:
                return args, kwargs  # the call itself will raise the user's TypeError
            return bound.args, bound.kwargs

        if inspect.isasyncgenfunction(fn):

            @functools.wraps(fn)
            async def async_gen_wrapper(*args: Any, **kwargs: Any) -> Any:
                active = start(*arguments(args, kwargs))
                agen = fn(*args, **kwargs)
                to_send: Any = None
                to_throw: BaseException | None = None
                while True:
                    tokens = active.attach() if active is not None else None
                    try:
                        item = await (agen.athrow(to_throw) if to_throw is not None else agen.asend(to_send))
                    except StopAsyncIteration:
                        exit_(active, tokens, None)
                        return
                    except BaseException as exc:
                        exit_(active, tokens, exc)
                        raise
                    if tokens is not None:
                        _Active.detach(tokens)
                    try:
                        to_send, to_throw = (yield item), None
                    except GeneratorExit:  # the consumer stopped early: not an error
                        await agen.aclose()
                        end(active, None)
                        raise
                    except BaseException as exc:
                        to_send, to_throw = None, exc

            return cast(F, async_gen_wrapper)
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                active, tokens = enter(*arguments(args, kwargs))
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    exit_(active, tokens, exc)
                    raise
                exit_(active, tokens, None)
                return result

            return cast(F, async_wrapper)
        if inspect.isgeneratorfunction(fn):

            @functools.wraps(fn)
            def gen_wrapper(*args: Any, **kwargs: Any) -> Any:
                active = start(*arguments(args, kwargs))
                gen = fn(*args, **kwargs)
                to_send: Any = None
                to_throw: BaseException | None = None
                while True:
                    # Attached for this step only: resumed from another context (a web framework
                    # running each next() in a copy), the tokens still belong to this context.
                    tokens = active.attach() if active is not None else None
                    try:
                        item = gen.throw(to_throw) if to_throw is not None else gen.send(to_send)
                    except StopIteration as stop:
                        exit_(active, tokens, None)
                        return stop.value
                    except BaseException as exc:
                        exit_(active, tokens, exc)
                        raise
                    if tokens is not None:
                        _Active.detach(tokens)
                    try:
                        to_send, to_throw = (yield item), None
                    except GeneratorExit:  # the consumer stopped early: not an error
                        gen.close()
                        end(active, None)
                        raise
                    except BaseException as exc:
                        to_send, to_throw = None, exc

            return cast(F, gen_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            active, tokens = enter(args, kwargs) if signature is None else enter(*arguments(args, kwargs))
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                exit_(active, tokens, exc)
                raise
            exit_(active, tokens, None)
            return result

        return cast(F, wrapper)


class task(_Scope):  # noqa: N801 - used like a function: @unitcost.task("kind")
    """One run of a task of some kind: a support ticket, a pull request, a question.

    ``key`` names the business object the task works on (a ticket id): runs of one kind with the
    same key are one task in reports. In the decorator form ``key`` and ``attributes`` may be
    callables; they receive the decorated function's arguments. ``attributes`` are for grouping
    reports (customer, tenant, prompt version...). ``budget_usd`` warns, or with
    ``on_budget="raise"`` stops the run's next LLM or tool call with `BudgetExceeded`, once the run
    has spent more than that (see `unitcost.record.budget`).

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
        if self.budget is not None and self.budget < 0:
            raise ValueError(f"budget_usd cannot be negative ({budget_usd!r})")
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
        # The key and the attributes are the user's values: one that cannot be used (a callable that
        # raises, attributes that are not a dict) is left out with a warning, as a bad outcome value
        # is, and the task is recorded without it; never the task lost, its calls in "(no task)".
        key = self._given("key", self.key, args, kwargs)
        if key is not None:
            try:
                attrs[A.TASK_KEY] = _text(A.task_key(key))  # a long key: prefix and digest, never cut
            except Exception as exc:  # noqa: BLE001 - e.g. a key whose str() raises
                self._left_out("key", f"it cannot be made text ({_why(exc)})")
        attrs.update(self._attribute_values(self._given("attributes", self.attributes, args, kwargs)))
        return attrs

    def _given(self, what: str, value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        """``value``, or what it returns for the decorated function's arguments when it is a callable;
        None (with a warning) when that callable raises."""
        if not callable(value):
            return value
        try:
            return value(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the user's function: its error is reported, not raised
            self._left_out(what, f"its function raised {_why(exc)}")
            return None

    def _attribute_values(self, extra: Any) -> dict[str, Any]:
        """Task attributes as span attributes; what is not a dict, or a value that cannot be made
        text, is left out with a warning."""
        if extra is None:
            return {}
        if not isinstance(extra, Mapping):
            self._left_out("attributes", f"they are a {type(extra).__name__}, not a dict")
            return {}
        values: dict[str, Any] = {}
        bad: list[str] = []
        try:
            items = list(extra.items())
        except Exception as exc:  # noqa: BLE001 - a mapping of the user's that cannot be read
            self._left_out("attributes", f"they cannot be read ({_why(exc)})")
            return {}
        for name, value in items:
            try:
                if value is not None:
                    values[A.TASK_ATTR_PREFIX + str(name)] = _attr_value(value)
            except Exception:  # noqa: BLE001 - a value (or name) whose str() raises
                bad.append(repr(name))
        if bad:
            self._left_out(f"attribute(s) {', '.join(bad)}", "they cannot be made text")
        return values

    def _left_out(self, what: str, why: str) -> None:
        logger.warning("unitcost: task %r recorded without its %s: %s", self.name, what, why)

    def _uses_arguments(self) -> bool:
        return callable(self.key) or callable(self.attributes)

    def _make_run(self, span: Any, attrs: dict[str, Any]) -> TaskRun:
        run_id = format(span.get_span_context().span_id, "016x")
        parent = current_run.get()
        attrs[A.TASK_ID] = run_id  # (in place of the id of the task above, which the start gave it)
        if parent is not None:
            attrs[A.TASK_PARENT_ID] = parent.id
        user_attrs: dict[str, Any] = {}
        if self.attributes is not None:  # else no attribute of the user's is in attrs: no pass over them
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


class session(_Scope):  # noqa: N801
    """A block of a task that a hosted runtime bills by its time (a browser or sandbox session).

    The store writer prices its duration by the price file's `[[runtime]]` entry for this session
    name (within the task's kind when the entry names one); the cost is reported as runtime cost.

    Example::

        with unitcost.session("browser"):
            page = browser.open(url)
    """

    _type = "session"

    def _span_name(self) -> str:
        return f"session {self.name}"

    def _start_attributes(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        attrs: dict[str, Any] = {A.SPAN_TYPE: "session", A.STEP_NAME: self.name}
        run = current_run.get()
        if run is not None:  # the writer prices the block by its task's kind too
            attrs[A.TASK_KIND] = run.kind
        return attrs


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
        if self._cost is not None and self._cost < 0:
            raise ValueError(f"a tool's cost cannot be negative ({cost!r})")
        self.cost = None if cost is None else str(self._cost)

    def _span_name(self) -> str:
        return f"execute_tool {self.name}"

    def _start_attributes(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        attrs: dict[str, Any] = {A.SPAN_TYPE: "tool", A.OPERATION: A.OP_EXECUTE_TOOL, A.TOOL_NAME: self.name}
        if self.cost is not None:
            attrs[A.TOOL_COST] = self.cost
        return attrs
