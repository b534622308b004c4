"""SQLite storage of the internal service, in STATE_DIR.

WAL with synchronous=FULL, and every write is its own committed transaction
before the call returns, so an acknowledged write survives a crash.
"""

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
)
"""
COLUMNS = ("id", "title", "body", "created_at", "updated_at")


def _now():
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _row(row):
    return dict(zip(COLUMNS, row, strict=True)) if row else None


class Storage:
    """One connection shared by the service's threads, serialised by a lock."""

    def __init__(self, state_dir):
        path = Path(state_dir)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = path / "items.sqlite3"
        # isolation_level=None: autocommit, each statement commits on its own.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute(SCHEMA)

    def close(self):
        with self._lock:
            self._db.close()

    def create(self, title, body):
        now = _now()
        with self._lock:
            row = self._db.execute(
                "INSERT INTO items (title, body, created_at, updated_at) VALUES (?, ?, ?, ?)"
                " RETURNING id, title, body, created_at, updated_at",
                (title, body, now, now),
            ).fetchone()
        return _row(row)

    def get(self, item_id):
        with self._lock:
            row = self._db.execute(
                "SELECT id, title, body, created_at, updated_at FROM items WHERE id = ?", (item_id,)
            ).fetchone()
        return _row(row)

    def list(self, limit, offset):
        with self._lock:
            rows = self._db.execute(
                "SELECT id, title, body, created_at, updated_at FROM items"
                " ORDER BY id LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
            (total,) = self._db.execute("SELECT count(*) FROM items").fetchone()
        return [_row(row) for row in rows], total

    def update(self, item_id, title, body):
        with self._lock:
            row = self._db.execute(
                "UPDATE items SET title = ?, body = ?, updated_at = ? WHERE id = ?"
                " RETURNING id, title, body, created_at, updated_at",
                (title, body, _now(), item_id),
            ).fetchone()
        return _row(row)

    def delete(self, item_id):
        with self._lock:
            cursor = self._db.execute("DELETE FROM items WHERE id = ?", (item_id,))
        return cursor.rowcount > 0
