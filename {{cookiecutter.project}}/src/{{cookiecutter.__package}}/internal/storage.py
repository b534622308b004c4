"""SQLite storage of the internal service, in STATE_DIR.

WAL with synchronous=FULL, and a write is committed before the operation
answers, so an acknowledged write survives a crash. Operations get a
Database: one connection inside a transaction, whose rows come back as
dicts keyed by column name. The schema is brought up to date at start-up by
internal/migrations.py, before anything is served.
"""

import sqlite3
import threading
from pathlib import Path

from . import migrations

# The name the first release gave it: an upgraded installation finds its data there.
DATABASE_FILE = "items.sqlite3"


class Database:
    """What an operation may do with the store: run SQL, get rows as dicts."""

    __slots__ = ("_conn",)

    def __init__(self, conn):
        self._conn = conn

    def row(self, sql, params=()):
        """The first row as a tuple, or None: for callers that know its columns."""
        return self._conn.execute(sql, params).fetchone()

    def one(self, sql, params=()):
        """The first row as a dict, or None."""
        cursor = self._conn.execute(sql, params)
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([column[0] for column in cursor.description], row, strict=True))

    def rows(self, sql, params=()):
        """Every row, as tuples."""
        return self._conn.execute(sql, params).fetchall()

    def all(self, sql, params=()):
        """Every row, as dicts."""
        cursor = self._conn.execute(sql, params)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def run(self, sql, params=()):
        """A statement without rows; the number of rows it changed."""
        return self._conn.execute(sql, params).rowcount


class Storage:
    """One connection shared by the service's threads, serialised by a lock."""

    def __init__(self, state_dir, schema=()):
        """Open (or create) the database and apply SCHEMA's migrations it lacks.

        SCHEMA: (id, SQL) pairs in order (migrations.collect). Raises OSError or
        sqlite3.Error when the store cannot be used, MigrationError when its
        schema is not one this code knows.
        """
        path = Path(state_dir)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = path / DATABASE_FILE
        # isolation_level=None: no implicit transactions; transaction() opens them.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=5000")
            migrations.apply(self._db, schema, self.path)
        except BaseException:
            self._db.close()
            raise

    def close(self):
        with self._lock:
            self._db.close()

    def transaction(self, write):
        """A Database for one operation, as a context manager. A writing one runs in
        BEGIN IMMEDIATE and is committed, durably, when the block ends, or rolled
        back if it raises."""
        return _Transaction(self._lock, self._db, write)


class _Transaction:
    """Storage.transaction's context manager: a class, as it runs on every call."""

    __slots__ = ("_lock", "_conn", "_write")

    def __init__(self, lock, conn, write):
        self._lock = lock
        self._conn = conn
        self._write = write

    def __enter__(self):
        # One connection, behind a lock: nothing else writes in between a read's statements.
        self._lock.acquire()
        if self._write:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except BaseException:
                self._lock.release()
                raise
        return Database(self._conn)

    def __exit__(self, kind, error, traceback):
        try:
            if self._write:
                self._conn.execute("ROLLBACK" if kind else "COMMIT")
        finally:
            self._lock.release()
