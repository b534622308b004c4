"""The store of this project's tests: SQLite, a file in each test's own STATE_DIR."""

import contextlib
import sqlite3

from {{ cookiecutter.__package }}.internal.sqlite import DATABASE_FILE, SQLiteDatabase

# The tables of the store, by name.
TABLES = "SELECT name FROM sqlite_master WHERE type = 'table'"


class Store:
    """One test's store: SETTING's value (its STATE_DIR) names it."""

    def __init__(self, state_dir):
        self.setting = str(state_dir)
        self.path = state_dir / DATABASE_FILE

    def ready(self):
        return self.setting

    def stored(self):
        """Every byte the store holds: the files of its directory (the WAL's among them)."""
        state = self.path.parent
        return b"".join(path.read_bytes() for path in state.iterdir() if path.is_file())

    @contextlib.contextmanager
    def raw(self):
        """A Database on a connection of its own, outside the service; each statement
        is committed as it runs."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            yield SQLiteDatabase(conn)
        finally:
            conn.close()

    def finish(self):
        return None


class Stores:
    """The stores of one test session: each test's own directory holds its database."""

    def __init__(self, name):
        self.name = name

    def store(self, tmp_path):
        return Store(tmp_path / "state")

    def stop(self):
        return None
