"""Routing rules for `unitcost whatif --route`: which stored calls a what-if re-prices on another model.

A rule is ``CONDITIONS:MODEL``: conditions joined by ``,``, each one of

- ``kind=support_ticket`` (the call's task kind), ``step=classify`` (the step or tool the call was
  made in), ``model=o4-mini`` / ``provider=openai`` (the call's own; globs allowed in all of these),
- ``input_tokens<2000``, ``output_tokens>=500`` (``<``, ``<=``, ``>``, ``>=``, ``=``; input counts
  cached tokens too, output counts reasoning too, as in the report),
- ``NAME=VALUE`` (a task attribute; ``attr.NAME`` for an attribute named like the words above).

The model is everything after the first ``:`` (``llama3.1:8b`` is a model name). A call is routed by
the first rule whose conditions all hold, and priced on that model with the same tokens.
"""

from __future__ import annotations

import fnmatch
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["CallFacts", "Route", "parse_route"]

_COMPARE: dict[str, Callable[[int, int], bool]] = {
    "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "=": operator.eq,
}
_TOKEN_CONDITION = re.compile(r"(input_tokens|output_tokens)\s*(<=|>=|<|>|=)\s*(\d+)")
_NAMED = ("kind", "step", "model", "provider")


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What a routing rule may look at for one stored call."""

    provider: str
    model: str
    kind: str | None
    step: str | None
    attributes: Mapping[str, Any]
    input_tokens: int
    output_tokens: int
    span_id: str = ""  # the call's, so a what-if counts each call it changed once


@dataclass(frozen=True)
class Route:
    text: str
    model: str
    conditions: tuple[Callable[[CallFacts], bool], ...]

    def matches(self, call: CallFacts) -> bool:
        return all(condition(call) for condition in self.conditions)


def _glob(value: str | None, pattern: str) -> bool:
    return value is not None and fnmatch.fnmatchcase(value.lower(), pattern.lower())


def _condition(text: str) -> Callable[[CallFacts], bool]:
    found = _TOKEN_CONDITION.fullmatch(text)
    if found:
        name, op, bound = found.group(1), _COMPARE[found.group(2)], int(found.group(3))
        return lambda call: op(getattr(call, name), bound)
    name, sep, value = text.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name:
        raise ValueError(
            f"cannot read the route condition {text!r}: use kind=, step=, model=, provider=, NAME=VALUE "
            "or input_tokens/output_tokens with <, <=, >, >=, ="
        )
    if name in _NAMED:
        return lambda call: _glob(getattr(call, name), value)
    attribute = name[5:] if name.startswith("attr.") else name
    return lambda call: str(call.attributes.get(attribute)) == value if attribute in call.attributes else False


def parse_route(text: str) -> Route:
    """``'input_tokens<2000:gpt-4o-mini'`` -> a Route; raises ValueError naming what is wrong."""
    conditions, sep, model = text.partition(":")
    if not sep or not model.strip() or not conditions.strip():
        raise ValueError(f"--route takes CONDITIONS:MODEL (e.g. 'input_tokens<2000:gpt-4o-mini'), not {text!r}")
    parsed = tuple(_condition(part.strip()) for part in conditions.split(",") if part.strip())
    return Route(text, model.strip(), parsed)
