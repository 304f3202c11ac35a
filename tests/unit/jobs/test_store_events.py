"""The events a controller reads about the children it follows on workers, on a real
SQLite file and a real PostgreSQL database: only its children's, and its cursor past
every event it read, its own or not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.jobs.store import JobStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    where = (
        request.getfixturevalue("pg_url") if request.param == "postgresql" else tmp_path / "j.db"
    )
    job_store = JobStore(where)
    yield job_store
    job_store.close()


def _child(store: JobStore, parent: int, host: str) -> int:
    return store.create_children(parent, "job", "thread", "run", [(host, None, None)])[0]


def test_events_of_another_job_between_a_runs_children_are_left_out_and_read_past(
    store: JobStore,
) -> None:
    ours = store.create_job("ours", "thread", "run", "fleet")
    theirs = store.create_job("theirs", "thread", "run", "fleet")
    first = _child(store, ours, "host1")
    other = _child(store, theirs, "host1")  # its id falls between our two children's
    second = _child(store, ours, "host2")
    assert first < other < second
    for child in (first, other, second):
        store.append_batch([], [], events=[(child, json.dumps({"child": child}))])

    events, last = store.events_since([first, second], 0)

    assert [(child, json.loads(data)) for _, child, data in events] == [
        (first, {"child": first}),
        (second, {"child": second}),
    ]
    assert last == events[-1][0]
    store.append_batch([], [], events=[(other, "{}")])
    later, past = store.events_since([first, second], last)
    assert later == []
    assert past > last  # the other job's new event is not read again at the next poll
    assert store.events_since([first, second], past) == ([], past)
    assert store.events_after([first, second], 0) == events
