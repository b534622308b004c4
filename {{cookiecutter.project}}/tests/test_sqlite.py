"""The SQLite store under contention: reads go on while another process holds the write
lock, and a write held off too long is a 503 with Retry-After, not a 502 or a hang; a
store that cannot be used stops start-up with one line."""

import sqlite3
import threading
import time

import pytest

from {{ cookiecutter.__package }}.internal.sqlite import DATABASE_FILE

from .support import PREFIX, free_port, refusal, start_internal


@pytest.fixture
def locked(internal_service):
    """Another process's connection holds the database's write lock until the test ends."""
    holder = sqlite3.connect(internal_service.storage.path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("UPDATE items SET title = title")
    yield holder
    holder.execute("ROLLBACK")
    holder.close()


def test_reads_go_on_while_another_process_holds_the_write_lock(client, locked):
    started = time.monotonic()
    for _ in range(20):
        assert client.get("/api/v1/items").status_code == 200
    # Nothing waited for the lock: had each read waited its busy timeout (2 s),
    # twenty would take 40 s.
    assert time.monotonic() - started < 10


def test_a_write_held_off_too_long_is_503_with_retry_after(client, locked):
    response = client.post("/api/v1/items", json={"title": "waits"})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "busy"
    assert response.headers["Retry-After"] == "1"


def test_a_write_goes_through_once_the_lock_is_let_go(client, internal_service):
    holder = sqlite3.connect(
        internal_service.storage.path, isolation_level=None, check_same_thread=False
    )
    holder.execute("BEGIN EXCLUSIVE")
    threading.Timer(0.3, lambda: holder.execute("ROLLBACK")).start()
    try:
        assert client.post("/api/v1/items", json={"title": "waited"}).status_code == 201
    finally:
        time.sleep(0.4)
        holder.close()


def test_a_state_dir_that_cannot_be_made_stops_start_up_with_one_line(spawn):
    line = refusal(start_internal(spawn, INTERNAL_PORT=free_port(), STATE_DIR="/proc/nope"))
    assert f"{PREFIX}_STATE_DIR='/proc/nope'" in line and "cannot be used" in line


@pytest.mark.parametrize("spoil", ["not-a-database", "a-directory"])
def test_a_database_that_cannot_be_opened_stops_start_up_with_one_line(spawn, tmp_path, spoil):
    path = tmp_path / "state" / DATABASE_FILE
    path.parent.mkdir(parents=True)
    if spoil == "a-directory":
        path.mkdir()
    else:
        path.write_bytes(b"this is not SQLite" * 100)
    line = refusal(start_internal(spawn, INTERNAL_PORT=free_port()))
    assert f"{PREFIX}_STATE_DIR=" in line and "cannot be used" in line
