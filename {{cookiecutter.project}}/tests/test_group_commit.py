"""Group commit (internal/sqlite.py): writes that arrive together share one COMMIT,
each is answered only once that commit is durable, and a write that fails is
undone alone. Proved on the store itself, then on the real service process."""

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from {{ cookiecutter.__package }}.internal import sqlite as storage_module
from {{ cookiecutter.__package }}.internal.operations import OperationError
from {{ cookiecutter.__package }}.internal.sqlite import Storage

from .support import client_for, free_port, mint_over_the_wire, start_internal, wait_for_port
from .test_metrics import scrape, value

WAIT_S = 15


@pytest.fixture
def store(tmp_path):
    made = Storage(tmp_path)
    with made.transaction(write=True) as db:
        db.run("CREATE TABLE t (v TEXT UNIQUE NOT NULL)")
    yield made
    made.close()


def insert(store, value, fail=None):
    """One write of VALUE; FAIL: an exception raised after the insert, in the same write."""
    with store.transaction(write=True) as db:
        db.run("INSERT INTO t (v) VALUES (?)", (value,))
        if fail is not None:
            raise fail


def queued_behind_a_held_write(store, writes):
    """Hold the writing connection in one write, queue WRITES (callables) behind it
    on their threads, then let go. Each write's result or exception, in order."""
    inside, go = threading.Event(), threading.Event()

    def held():
        with store.transaction(write=True) as db:
            db.run("INSERT INTO t (v) VALUES ('held')")
            inside.set()
            assert go.wait(WAIT_S)

    with ThreadPoolExecutor(max_workers=len(writes) + 1) as pool:
        first = pool.submit(held)
        assert inside.wait(WAIT_S)
        futures = [pool.submit(write) for write in writes]
        deadline = time.monotonic() + WAIT_S
        while store.waiting < len(writes) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.waiting == len(writes)
        go.set()
        first.result(WAIT_S)
        return [future.exception(WAIT_S) or future.result(WAIT_S) for future in futures]


def durable(store):
    """The values another connection reads: what was committed."""
    with sqlite3.connect(store.path) as conn:
        return {row[0] for row in conn.execute("SELECT v FROM t")}


def test_writes_that_arrive_together_share_one_commit(store):
    before = store.commits
    outcomes = queued_behind_a_held_write(
        store, [lambda n=n: insert(store, f"w{n}") for n in range(15)]
    )
    assert outcomes == [None] * 15
    assert store.commits - before == 1
    assert durable(store) == {"held"} | {f"w{n}" for n in range(15)}


def test_a_failed_write_is_undone_alone(store):
    writes = [lambda n=n: insert(store, f"w{n}") for n in range(6)]
    # The held write's value again: UNIQUE refuses it, whatever order the queue runs in.
    writes[2] = lambda: insert(store, "held")
    writes[4] = lambda: insert(store, "w4", fail=OperationError("not_found", "no such thing"))
    before = store.commits
    outcomes = queued_behind_a_held_write(store, writes)
    assert isinstance(outcomes[2], sqlite3.IntegrityError)
    assert isinstance(outcomes[4], OperationError)
    assert [outcomes[n] for n in (0, 1, 3, 5)] == [None] * 4
    assert store.commits - before == 1
    assert durable(store) == {"held", "w0", "w1", "w3", "w5"}


def test_a_batch_takes_at_most_batch_max_writes(store):
    count = storage_module.BATCH_MAX + 10
    before = store.commits
    outcomes = queued_behind_a_held_write(
        store, [lambda n=n: insert(store, f"w{n}") for n in range(count)]
    )
    assert outcomes == [None] * count
    assert store.commits - before == 2
    assert len(durable(store)) == count + 1


def test_concurrent_writes_share_commits_in_the_real_service(spawn):
    """Eight connections, each creating items as fast as it is answered: the
    service's own metrics count fewer commits than writes, and every write is there."""
    port, metrics_port = free_port(), free_port()
    process = start_internal(spawn, INTERNAL_PORT=port, INTERNAL_METRICS_PORT=metrics_port)
    wait_for_port(port, process=process)
    address = f"127.0.0.1:{port}"
    token = mint_over_the_wire(address)
    before = scrape(metrics_port)

    def create(worker):
        client = client_for(address, api_token=token)
        try:
            return [client.items.create(title=f"{worker}-{n}")["id"] for n in range(25)]
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        made = [item for ids in pool.map(create, range(8)) for item in ids]
    after = scrape(metrics_port)
    commits = value(after, "internal_commits_total") - value(before, "internal_commits_total")
    writes = value(after, "internal_committed_writes_total") - value(
        before, "internal_committed_writes_total"
    )
    print(f"\ngroup commit: {writes:.0f} writes in {commits:.0f} commits")
    assert len(set(made)) == 200 and writes >= 200
    assert commits < writes
    checker = client_for(address, api_token=token)
    try:
        assert checker.items.list(limit=1)["total"] == 200
    finally:
        checker.close()
