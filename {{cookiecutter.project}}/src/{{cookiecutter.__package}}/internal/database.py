"""What an operation may do with the store: run SQL, get rows back.

Every operation gets a Database: one connection inside one transaction of
the store (internal/storage.py). Its SQL is the portable SQL both stores
take (README.md, "Schema migrations"): `?` placeholders, SQLite's type names,
times as text from tables.now(). A store whose own SQL differs translates it
in _execute, in one place.
"""


class Database:
    """One transaction's connection: run SQL, get rows as tuples or as dicts."""

    __slots__ = ("_conn",)

    def __init__(self, conn):
        self._conn = conn

    def _execute(self, sql, params):
        """A cursor that has run SQL with PARAMS."""
        return self._conn.execute(sql, params)

    def lock(self, name):
        """Hold NAME until this transaction ends: another write that asks for the
        same name waits for it, in any process. For a read-then-write that two
        writers must not interleave (the Idempotency-Key of two equal requests)."""
        raise NotImplementedError

    def row(self, sql, params=()):
        """The first row as a tuple, or None: for callers that know its columns."""
        return self._execute(sql, params).fetchone()

    def one(self, sql, params=()):
        """The first row as a dict, or None."""
        cursor = self._execute(sql, params)
        row = cursor.fetchone()
        if row is None:
            return None
        return dict(zip([column[0] for column in cursor.description], row, strict=True))

    def rows(self, sql, params=()):
        """Every row, as tuples."""
        return self._execute(sql, params).fetchall()

    def all(self, sql, params=()):
        """Every row, as dicts."""
        cursor = self._execute(sql, params)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def run(self, sql, params=()):
        """A statement without rows; the number of rows it changed."""
        return self._execute(sql, params).rowcount
