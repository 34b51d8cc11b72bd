"""`unitcost ui`'s task list read from the per-task rollups (`unitcost.report.task_page`) gives the
tasks the reference rules give (`all_tasks` + `page_of_tasks`, which build every task in Python): the
same count, the same tasks in the same sort order, pages that neither overlap nor leave a task out,
and each task's attributes merged as reports merge them. On random stores (those of the report
engines' test: retried tasks, runs without a key, outcomes by run, key and kind, late outcomes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_report_engines import DAY, MIDNIGHT, _odd_identities, _write, outcomes, runs, stray

from unitcost.report import TASK_SORTS, all_tasks, page_of_tasks, task_page
from unitcost.report import task_list as task_page_module
from unitcost.report.tasks import Store
from unitcost.store.connect import open_backend

lists = st.fixed_dictionaries({
    "sort": st.sampled_from(TASK_SORTS),
    "descending": st.booleans(),
    "kind": st.sampled_from([None, "ticket"]),
    "search": st.sampled_from([None, "k1", "K", "r1", "zz", "%", "_"]),
    "retried": st.booleans(),
    "since_ns": st.sampled_from([None, MIDNIGHT - 7 * DAY]),
    "until_ns": st.sampled_from([None, MIDNIGHT]),
})


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    db = open_backend(Path(tmp_path_factory.mktemp("task-page")) / "tasks.db")
    yield db
    db.conn.close()


def _sort_value(task: Any, sort: str) -> Any:
    return {"cost": task.cost_pico, "runs": task.runs, "started": task.started_ns, "duration": task.duration_s,
            "kind": task.kind, "key": task.key or "", "outcome": task.outcome or "", "calls": task.llm_calls}[sort]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runs=runs, outcomes=outcomes, stray=stray, options=st.lists(lists, min_size=1, max_size=4))
def test_the_rollups_list_the_tasks_the_reference_rules_do(store, monkeypatch, runs, outcomes, stray, options):
    _write(store, runs, outcomes, stray)
    fallbacks: list[bool] = []
    monkeypatch.setattr(task_page_module, "all_tasks", lambda db: fallbacks.append(True) or all_tasks(db))
    store.conn.commit()
    every = all_tasks(store)
    merged = {(t.kind if t.key is not None else "", t.key if t.key is not None else t.run_ids[0]): t.attributes
              for t in Store(store).tasks().values()}
    for option in options:
        total, expected = page_of_tasks(every, offset=0, limit=10**6, **option)
        found_total, found = task_page(store, offset=0, limit=10**6, **option)
        assert found_total == total == len(found)
        # Ties (equal sort values) may come in another order; everything else is the same.
        assert [_sort_value(t, option["sort"]) for t in found] == [_sort_value(t, option["sort"]) for t in expected]
        assert sorted(found, key=lambda t: t.run_id) == sorted(expected, key=lambda t: t.run_id)
        for task in found:
            assert task.attributes == merged[(task.kind if task.key is not None else "", task.key or task.run_id)]
        pages = [task_page(store, offset=offset, limit=3, **option) for offset in range(0, max(total, 1), 3)]
        assert all(n == total for n, _ in pages)
        assert [t.run_id for _, page in pages for t in page] == [t.run_id for t in found]
    assert not fallbacks or _odd_identities(store), "the rollups were not read"


def test_a_bad_sort_is_refused(store):
    with pytest.raises(ValueError, match="sort by one of"):
        task_page(store, sort="colour")
