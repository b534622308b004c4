"""SQLite storage of the internal service, in STATE_DIR.

WAL with synchronous=FULL, and a write is committed before the operation
answers, so an acknowledged write survives a crash. Operations get a
Database: one connection inside a transaction, whose rows come back as
dicts keyed by column name. The schema is brought up to date at start-up by
internal/migrations.py, before anything is served.
"""

import queue
import sqlite3
import threading
from pathlib import Path

from . import migrations
from .operations import OperationError

# The name the first release gave it: an upgraded installation finds its data there.
DATABASE_FILE = "items.sqlite3"
# Reading connections: reads of this many threads at once, each with its own snapshot.
READERS = 4
# How long a write waits for another process's lock before it fails as "busy".
BUSY_MS = 2000
BUSY_CODES = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
BUSY = ("busy", "the store is busy; retry shortly")


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
    """One writing connection behind a lock, and a few reading ones.

    In WAL mode readers go on while a write waits or commits, so a read never
    queues behind the writer's lock, nor behind a write of another process. A
    read runs in one transaction, so a page of rows and its total agree.
    A write that cannot get the database within BUSY_MS (another process holds
    it) fails as "busy", which the API answers with 503 and Retry-After.
    """

    def __init__(self, state_dir, schema=()):
        """Open (or create) the database and apply SCHEMA's migrations it lacks.

        SCHEMA: (id, SQL) pairs in order (migrations.collect). Raises OSError or
        sqlite3.Error when the store cannot be used, MigrationError when its
        schema is not one this code knows.
        """
        path = Path(state_dir)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = path / DATABASE_FILE
        self._lock = threading.Lock()
        self._readers = queue.LifoQueue()
        self._writer = self._connect()
        try:
            self._writer.execute("PRAGMA journal_mode=WAL")
            self._writer.execute("PRAGMA synchronous=FULL")
            migrations.apply(self._writer, schema, self.path)
            for _ in range(READERS):
                reader = self._connect()
                reader.execute("PRAGMA query_only=ON")
                self._readers.put(reader)
        except BaseException:
            self.close()
            raise

    def _connect(self):
        # isolation_level=None: no implicit transactions; transaction() opens them.
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")
        return conn

    def close(self):
        with self._lock:
            self._writer.close()
        while not self._readers.empty():
            self._readers.get_nowait().close()

    def transaction(self, write):
        """A Database for one operation, as a context manager. A writing one runs in
        BEGIN IMMEDIATE and is committed, durably, when the block ends, or rolled
        back if it raises."""
        return _Write(self._lock, self._writer) if write else _Read(self._readers)


def _busy(exc):
    """Whether SQLite gave up waiting for a lock another connection holds."""
    # The extended codes (SQLITE_BUSY_SNAPSHOT, ...) carry the primary one in their low byte.
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.OperationalError) and (code or 0) & 0xFF in BUSY_CODES


class _Write:
    """A writing transaction: the lock, BEGIN IMMEDIATE, then COMMIT or ROLLBACK."""

    __slots__ = ("_lock", "_conn")

    def __init__(self, lock, conn):
        self._lock = lock
        self._conn = conn

    def __enter__(self):
        self._lock.acquire()
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            self._lock.release()
            if _busy(exc):
                raise OperationError(*BUSY, retry_after=1) from None
            raise
        return Database(self._conn)

    def __exit__(self, kind, error, traceback):
        try:
            self._conn.execute("ROLLBACK" if kind else "COMMIT")
        except sqlite3.OperationalError as exc:
            if kind or not _busy(exc):
                raise
            self._conn.execute("ROLLBACK")
            raise OperationError(*BUSY, retry_after=1) from None
        finally:
            self._lock.release()


class _Read:
    """A reading transaction on a connection of the pool: one snapshot for all its statements."""

    __slots__ = ("_readers", "_conn")

    def __init__(self, readers):
        self._readers = readers
        self._conn = None

    def __enter__(self):
        self._conn = self._readers.get()
        self._conn.execute("BEGIN")
        return Database(self._conn)

    def __exit__(self, kind, error, traceback):
        try:
            self._conn.execute("COMMIT")
        finally:
            self._readers.put(self._conn)
