"""`unitcost show`: a run's tree takes the runs nested in it at every depth (a task started inside a
tool of another task), and no other run."""

from __future__ import annotations

import sqlite_utils

import unitcost
from unitcost.report.inspect import show_run


def _names(node, depth=0):
    yield depth, node.type, node.name
    for child in node.children:
        yield from _names(child, depth + 1)


def test_show_draws_nested_runs_at_every_depth_and_nothing_else(store_db):
    with unitcost.task("before", key="x"):
        pass
    with unitcost.task("outer", key="O-1") as outer:
        with (
            unitcost.tool("translate"), unitcost.task("middle", key="M-1"), unitcost.step("plan"),
            unitcost.task("inner", key="I-1"),
        ):
            pass
        with unitcost.task("sibling_inside", key="S-1"):
            pass
    with unitcost.task("after", key="y"), unitcost.task("after_child", key="z"):
        pass
    assert unitcost.flush()

    detail = show_run(sqlite_utils.Database(store_db), outer.id)

    assert list(_names(detail.tree)) == [
        (0, "task", "outer"),
        (1, "tool", "translate"),
        (2, "task", "middle"),
        (3, "step", "plan"),
        (4, "task", "inner"),
        (1, "task", "sibling_inside"),
    ]
