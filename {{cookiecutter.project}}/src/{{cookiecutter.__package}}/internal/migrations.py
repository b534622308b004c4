"""Schema migrations: numbered SQL held by each unit's module, applied at start-up.

Each unit module of the internal service may hold MIGRATIONS, a dict from a
number to SQL (one statement, or a list of them). They are applied in the
contract's unit order, then by number, under the ids "NAME.0001", ...; a
table schema_migrations records each id. All pending migrations and their
records go in ONE transaction (SQLite and PostgreSQL both roll back DDL), so a
failure or a crash leaves the schema as it was, never half-migrated. The SQL
is the portable SQL of database.py: the PostgreSQL store translates SQLite's
type names (INTEGER PRIMARY KEY AUTOINCREMENT, INTEGER, REAL, BLOB) to its own.

A database that holds an id this code does not know was migrated by a newer
release: start-up stops with one line rather than serve a schema it does not
understand.

Why not yoyo-migrations: it reads migrations from files, while here each
resource keeps its schema next to its SQL in one module; and it applies a
migration and records it in two transactions on two connections, so a crash
in between leaves an applied migration unrecorded, to be run again.
"""

# ruff: noqa: S608 - the one table name is this module's constant; values are bound parameters.

from datetime import UTC, datetime

TABLE = "schema_migrations"
CREATE = f"CREATE TABLE IF NOT EXISTS {TABLE} (id TEXT PRIMARY KEY, applied_at TEXT NOT NULL)"
RECORD = f"INSERT INTO {TABLE} (id, applied_at) VALUES (?, ?)"


class MigrationError(Exception):
    """The database's schema is not one this code can serve."""


def schema():
    """Every migration this code knows: each unit's module, then the tables that serve them all."""
    from . import idempotency, operations

    return collect([*operations.load_units(), idempotency])


def collect(modules):
    """(id, [statements]) of every migration of MODULES (unit modules), in order."""
    found = []
    for module in modules:
        unit = module.__name__.rpartition(".")[2]
        for number, sql in sorted(getattr(module, "MIGRATIONS", {}).items()):
            statements = [sql] if isinstance(sql, str) else list(sql)
            found.append((f"{unit}.{number:04d}", statements))
    return found


def apply(db, migrations, where):
    """Apply what MIGRATIONS has and the database lacks, in DB's transaction.

    DB is the Database of a write transaction that the store commits when this
    returns, or rolls back when it raises: all or nothing. WHERE names the
    store in messages. Returns the ids applied.
    """
    # Instances that start together on one PostgreSQL database take turns here:
    # the second finds the first one's migrations recorded.
    db.lock(TABLE)
    db.run(CREATE)
    applied = {row[0] for row in db.rows(f"SELECT id FROM {TABLE}")}
    unknown = sorted(applied - {migration_id for migration_id, _ in migrations})
    if unknown:
        raise MigrationError(
            f"{where} has schema migrations this code does not know ({', '.join(unknown)}):"
            " a newer release made it; run that release, or restore a backup"
        )
    done = []
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    for migration_id, statements in migrations:
        if migration_id not in applied:
            _run(db, migration_id, statements, where)
            db.run(RECORD, (migration_id, now))
            done.append(migration_id)
    return done


def _run(db, migration_id, statements, where):
    for statement in statements:
        try:
            db.run(statement)
        except Exception as exc:
            # The store's own words: they say which statement and why.
            reason = " ".join(str(exc).split())
            raise MigrationError(f"{where}: migration {migration_id} failed: {reason}") from exc
