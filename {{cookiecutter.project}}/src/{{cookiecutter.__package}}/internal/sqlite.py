"""SQLite storage of the internal service: one file in STATE_DIR.

WAL with synchronous=FULL, and a write is committed before the operation
answers, so an acknowledged write survives a crash. Writes that arrive
together share one transaction and so one COMMIT, one fsync (group commit,
_Writer below). Operations get a Database (database.py): one connection
inside a transaction. The schema is brought up to date at start-up by
internal/migrations.py, before anything is served.
"""

import contextlib
import queue
import sqlite3
import threading
from pathlib import Path

from . import migrations
from .database import Database
from .operations import OperationError

# The setting that says where the store is, and what a store that cannot be used raises.
SETTING = "STATE_DIR"
UNUSABLE = (OSError, sqlite3.Error)
# The name the first release gave it: an upgraded installation finds its data there.
DATABASE_FILE = "items.sqlite3"
# Reading connections: reads of this many threads at once, each with its own snapshot.
READERS = 4
# How long a write waits for another process's lock before it fails as "busy".
BUSY_MS = 2000
BUSY_CODES = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}
BUSY = ("busy", "the store is busy; retry shortly")
# The most writes one commit takes: under a steady stream of writes, a batch
# is still committed, and none waits behind more than this many others.
BATCH_MAX = 64


class SQLiteDatabase(Database):
    __slots__ = ()

    def lock(self, name):
        # A write already holds the database's one write lock, from BEGIN IMMEDIATE
        # to COMMIT, against every other connection and process.
        return None


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
        # How messages name this store.
        self.where = str(self.path)
        self._readers = queue.LifoQueue()
        conn = self._connect()
        self._writer = _Writer(conn)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            with self.transaction(write=True) as db:
                migrations.apply(db, schema, self.where)
            for _ in range(READERS):
                reader = self._connect()
                reader.execute("PRAGMA query_only=ON")
                self._readers.put(reader)
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_settings(cls, settings, schema=()):
        return cls(settings[SETTING], schema)

    def _connect(self):
        # isolation_level=None: no implicit transactions; transaction() opens them.
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")
        return conn

    @property
    def commits(self):
        """How many COMMITs the writes have taken so far (each one fsync)."""
        return self._writer.commits

    @property
    def waiting(self):
        """How many writes wait for the writing connection right now."""
        return self._writer.waiting

    def observe_commits(self, observe):
        """Call OBSERVE(writes) after each commit, with the number of writes it made durable."""
        self._writer.observe = observe

    def close(self):
        self._writer.close()
        while not self._readers.empty():
            self._readers.get_nowait().close()

    def transaction(self, write):
        """A Database for one operation, as a context manager. A writing one runs in
        a savepoint of a shared BEGIN IMMEDIATE transaction, rolled back alone if the
        block raises; the block's end returns once the commit is durable."""
        return _Write(self._writer) if write else _Read(self._readers)


def _busy(exc):
    """Whether SQLite gave up waiting for a lock another connection holds."""
    # The extended codes (SQLITE_BUSY_SNAPSHOT, ...) carry the primary one in their low byte.
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.OperationalError) and (code or 0) & 0xFF in BUSY_CODES


class _Batch:
    """One transaction, shared by the writes that ran in it; done once committed or lost."""

    __slots__ = ("writes", "done", "error")

    def __init__(self):
        self.writes = 0
        self.done = False
        self.error = None


class _Writer:
    """The writing connection, used by one write at a time, with group commit.

    A write runs in a savepoint of the open batch's transaction (opening one
    if there is none). When it is done, the write commits the batch if no
    other write is waiting to join it (or the batch is full); otherwise it
    hands the connection on and waits for that commit. Writes that arrive
    while a commit's fsync runs form the next batch. Nobody returns before the
    commit of their write, so synchronous=FULL still holds for each answer.
    """

    def __init__(self, conn):
        self.conn = conn
        self.commits = 0
        self.observe = None
        self._cond = threading.Condition()
        self._busy = False
        self._waiting = 0
        self._batch = None

    @property
    def waiting(self):
        return self._waiting

    def acquire(self):
        """The connection, in a savepoint of the open batch; the batch."""
        with self._cond:
            self._waiting += 1
            while self._busy:
                self._cond.wait()
            self._waiting -= 1
            self._busy = True
            batch = self._batch
        if batch is None:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except BaseException:
                self._hand_on()
                raise
            batch = self._batch = _Batch()
        batch.writes += 1
        try:
            self.conn.execute("SAVEPOINT write")
        except BaseException:
            self.release(batch, failed=True)
            raise
        return batch

    def release(self, batch, failed):
        """End this write's savepoint (undone if FAILED); then commit the batch
        or wait for its commit. The error that lost the batch, or None."""
        try:
            if failed:
                self.conn.execute("ROLLBACK TO write")
            self.conn.execute("RELEASE write")
        except sqlite3.Error as exc:
            # Some errors end the whole transaction: every write in it is lost.
            if not self.conn.in_transaction:
                batch.error = batch.error or exc
        with self._cond:
            last = self._waiting == 0 or batch.writes >= BATCH_MAX or batch.error is not None
            if not last:
                self._busy = False
                self._cond.notify_all()
                while not batch.done:
                    self._cond.wait()
                return batch.error
        self._commit(batch)
        return batch.error

    def _commit(self, batch):
        try:
            if batch.error is None:
                self.conn.execute("COMMIT")
                self.commits += 1
        except sqlite3.Error as exc:
            batch.error = exc
        finally:
            if self.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
            with self._cond:
                batch.done = True
                self._batch = None
                self._busy = False
                self._cond.notify_all()
        if self.observe is not None and batch.error is None:
            self.observe(batch.writes)

    def _hand_on(self):
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def close(self):
        with self._cond:
            while self._busy:
                self._cond.wait()
            self.conn.close()


class _Write:
    """One write: a savepoint of the batch, then its commit (_Writer)."""

    __slots__ = ("_writer", "_batch")

    def __init__(self, writer):
        self._writer = writer
        self._batch = None

    def __enter__(self):
        try:
            self._batch = self._writer.acquire()
        except sqlite3.Error as exc:
            if _busy(exc):
                raise OperationError(*BUSY, retry_after=1) from None
            raise
        return SQLiteDatabase(self._writer.conn)

    def __exit__(self, kind, error, traceback):
        lost = self._writer.release(self._batch, failed=kind is not None)
        if lost is not None and kind is None:
            # This write was done, but the commit that held it was not.
            if _busy(lost):
                raise OperationError(*BUSY, retry_after=1) from None
            raise sqlite3.OperationalError(f"the write was not committed: {lost}") from None


class _Read:
    """A reading transaction on a connection of the pool: one snapshot for all its statements."""

    __slots__ = ("_readers", "_conn")

    def __init__(self, readers):
        self._readers = readers
        self._conn = None

    def __enter__(self):
        self._conn = self._readers.get()
        self._conn.execute("BEGIN")
        return SQLiteDatabase(self._conn)

    def __exit__(self, kind, error, traceback):
        try:
            self._conn.execute("COMMIT")
        finally:
            self._readers.put(self._conn)
