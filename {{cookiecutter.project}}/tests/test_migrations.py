"""Schema migrations: applied at start-up in one transaction, recorded, and refused when
unknown; on this project's store, whose database a test first makes as an older release did."""

import pytest

from {{ cookiecutter.__package }}.internal import items, migrations

from .support import PREFIX, backend, free_port, open_storage, refusal, start_internal

# The schema and rows of a database made by the release before migrations existed.
BEFORE_MIGRATIONS = [
    """
    CREATE TABLE items (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        title TEXT NOT NULL,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )
    """,
    "INSERT INTO items (title, body, created_at, updated_at)"
    " VALUES ('kept', 'from the old release', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
]


@pytest.fixture
def old_release(own_store):
    """The test's store, holding what the release before migrations made."""
    with own_store.raw() as db:
        for statement in BEFORE_MIGRATIONS:
            db.run(statement)
    return own_store


def recorded(store):
    with store.raw() as db:
        return [row[0] for row in db.rows("SELECT id FROM schema_migrations ORDER BY id")]


def test_a_database_from_before_migrations_keeps_its_rows(old_release, settings):
    storage = open_storage(settings)
    try:
        with storage.transaction(write=False) as db:
            assert db.one("SELECT title, body FROM items WHERE id = 1") == {
                "title": "kept",
                "body": "from the old release",
            }
        # Its ids go on after the rows it had.
        with storage.transaction(write=True) as db:
            assert items.create(db, title="new", body="")["id"] == 2
    finally:
        storage.close()
    assert "items.0001" in recorded(old_release)


def test_a_second_start_applies_nothing(own_store, settings):
    storage = open_storage(settings)
    try:
        first = recorded(own_store)
        with storage.transaction(write=True) as db:
            assert migrations.apply(db, migrations.schema(), storage.where) == []
    finally:
        storage.close()
    open_storage(settings).close()
    assert recorded(own_store) == first


def test_a_new_column_reaches_a_deployed_database(old_release, settings, monkeypatch):
    open_storage(settings).close()
    later = {**items.MIGRATIONS, 2: "ALTER TABLE items ADD COLUMN tag TEXT NOT NULL DEFAULT ''"}
    monkeypatch.setattr(items, "MIGRATIONS", later)
    open_storage(settings).close()
    assert "items.0002" in recorded(old_release)
    with old_release.raw() as db:
        assert db.all("SELECT title, tag FROM items") == [{"title": "kept", "tag": ""}]


def test_a_failing_migration_leaves_the_schema_as_it_was(old_release, settings, monkeypatch):
    broken = {**items.MIGRATIONS, 2: "CREATE TABLE extra (x TEXT)", 3: "ALTER TABLE nowhere ADD y"}
    monkeypatch.setattr(items, "MIGRATIONS", broken)
    with pytest.raises(migrations.MigrationError, match="migration items.0003 failed: ") as caught:
        open_storage(settings)
    assert "nowhere" in str(caught.value) and "\n" not in str(caught.value)
    # items.0001 and 0002 went in the same transaction: neither is there.
    with old_release.raw() as db:
        tables = {row[0] for row in db.rows(backend.TABLES)}
    assert "items" in tables and not {"extra", "schema_migrations"} & tables


def test_a_database_from_a_newer_release_stops_start_up_with_one_line(spawn, settings):
    storage = open_storage(settings)
    where = storage.where
    with storage.transaction(write=True) as db:
        db.run("INSERT INTO schema_migrations VALUES ('items.0099', '2099-01-01')")
    storage.close()
    line = refusal(start_internal(spawn, INTERNAL_PORT=free_port()))
    assert line.startswith(f"{PREFIX.lower()}-internal: ")
    assert "items.0099" in line and "newer release" in line and where in line
