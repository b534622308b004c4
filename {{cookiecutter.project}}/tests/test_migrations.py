"""Schema migrations: applied at start-up in one transaction, recorded, and refused when unknown."""

import sqlite3

import pytest

from {{ cookiecutter.__package }}.internal import items, migrations
from {{ cookiecutter.__package }}.internal.storage import DATABASE_FILE

from .support import PREFIX, free_port, open_storage, refusal, start_internal

# The schema and rows of a database made by the release before migrations existed.
BEFORE_MIGRATIONS = """
CREATE TABLE items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
INSERT INTO items (title, body, created_at, updated_at)
VALUES ('kept', 'from the old release', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z');
"""


def database(state_dir, script=""):
    """A database file in STATE_DIR, with SCRIPT run in it."""
    state_dir.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(state_dir / DATABASE_FILE)
    conn.executescript(script)
    conn.close()
    return state_dir / DATABASE_FILE


def recorded(path):
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM schema_migrations ORDER BY id")]


def columns(path, table):
    with sqlite3.connect(path) as conn:
        return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def test_a_database_from_before_migrations_keeps_its_rows(tmp_path):
    path = database(tmp_path / "state", BEFORE_MIGRATIONS)
    storage = open_storage(tmp_path / "state")
    try:
        with storage.transaction(write=False) as db:
            assert db.one("SELECT title, body FROM items WHERE id = 1") == {
                "title": "kept",
                "body": "from the old release",
            }
    finally:
        storage.close()
    assert "items.0001" in recorded(path)


def test_a_second_start_applies_nothing(tmp_path):
    path = tmp_path / "state" / DATABASE_FILE
    open_storage(tmp_path / "state").close()
    first = recorded(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert migrations.apply(conn, migrations.schema(), path) == []
    finally:
        conn.close()
    assert recorded(path) == first


def test_a_new_column_reaches_a_deployed_database(tmp_path, monkeypatch):
    path = database(tmp_path / "state", BEFORE_MIGRATIONS)
    open_storage(tmp_path / "state").close()
    later = {**items.MIGRATIONS, 2: "ALTER TABLE items ADD COLUMN tag TEXT NOT NULL DEFAULT ''"}
    monkeypatch.setattr(items, "MIGRATIONS", later)
    open_storage(tmp_path / "state").close()
    assert "tag" in columns(path, "items")
    assert "items.0002" in recorded(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT title, tag FROM items").fetchall() == [("kept", "")]


def test_a_failing_migration_leaves_the_schema_as_it_was(tmp_path, monkeypatch):
    path = database(tmp_path / "state", BEFORE_MIGRATIONS)
    broken = {**items.MIGRATIONS, 2: "CREATE TABLE extra (x TEXT)", 3: "ALTER TABLE nowhere ADD y"}
    monkeypatch.setattr(items, "MIGRATIONS", broken)
    failed = "migration items.0003 failed: no such table"
    with pytest.raises(migrations.MigrationError, match=failed):
        open_storage(tmp_path / "state")
    # items.0001 and 0002 went in the same transaction: neither is there.
    with sqlite3.connect(path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert "extra" not in tables and "schema_migrations" not in tables


def test_a_database_from_a_newer_release_stops_start_up_with_one_line(spawn, tmp_path):
    open_storage(tmp_path / "state").close()
    path = tmp_path / "state" / DATABASE_FILE
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES ('items.0099', '2099-01-01')")
    line = refusal(start_internal(spawn, INTERNAL_PORT=free_port()))
    assert "items.0099" in line and "newer release" in line and str(path) in line


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
