"""Backups of the database host, as the generated README documents them,
restored for real: a pg_dump restored onto a new host set up by setup.sh, and
a base backup with archived WAL (setup.sh --archive-dir) replayed to the last
commit, rows written after the base backup included.

Private clusters (initdb into temporary directories), in an empty network
namespace with loopback up, on ports of their own; the commands run as the
postgres account, as the README says to.
"""

import contextlib

import pytest

from support.baking import TEMPLATE_DIR
from support.netns import netns
from support.postgresql import (
    ROLE,
    Cluster,
    client_tool,
    database_baker,
    make_certificates,
    pg_tool,
    private_dir,
    running_cluster,
    setup_sh,
)
from support.processes import run, wait_for
from support.tools import needs_root

pytestmark = needs_root("it runs private PostgreSQL clusters as the postgres account")

ARGS = ["--listen", "127.0.0.1", "--client", "127.0.0.1"]
ROWS = f"SELECT string_agg(id || '=' || body, ',' ORDER BY id) FROM {ROLE}.notes"


@pytest.fixture(scope="module")
def project(cookies_session):
    return database_baker(cookies_session, TEMPLATE_DIR)("nftables", "")


@pytest.fixture(scope="module")
def tls(project, tmp_path_factory):
    return make_certificates(project, tmp_path_factory.mktemp("pg-backup") / "tls", ["127.0.0.1"])


@pytest.fixture
def place():
    """(prefix, base): a namespace with loopback up, and a directory postgres owns."""
    with contextlib.ExitStack() as stack:
        in_ns = stack.enter_context(netns())
        in_ns("ip", "link", "set", "lo", "up")
        base = stack.enter_context(private_dir())
        yield ["ip", "netns", "exec", in_ns.name], base


def sql_text(text):
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def write_rows(cluster, *rows):
    """Rows in the role's own table, written as the role would (SET ROLE)."""
    values = ", ".join(f"({number}, {sql_text(body)})" for number, body in rows)
    cluster.psql(
        f"SET ROLE {ROLE}; CREATE TABLE IF NOT EXISTS notes (id int PRIMARY KEY, body text);"
        f" INSERT INTO notes VALUES {values}",
        database=ROLE,
    )


def as_postgres(cluster, *argv):
    return run(cluster.command(*argv), cwd="/", timeout=120)


def test_pg_dump_restores_onto_a_new_host_with_every_row(project, tls, place):
    """pg_dump -Fc on the old host; setup.sh on the new one, then pg_restore
    --clean --if-exists: the same rows, owned by the role."""
    prefix, base = place
    dump = base / f"{ROLE}.dump"
    with running_cluster(base, "old", prefix) as old:
        setup_sh(project, old, *ARGS, "--tls-dir", tls, prefix=prefix)
        write_rows(old, (1, "first"), (2, "second"), (3, "it's quoted"))
        rows = old.psql(ROWS, database=ROLE)
        args = ["-h", old.socket_dir, "-p", old.port, "-Fc", "-d", ROLE, "-f", dump]
        as_postgres(old, client_tool("pg_dump"), *args)
    with running_cluster(base, "new", prefix) as new:
        setup_sh(project, new, *ARGS, "--tls-dir", tls, prefix=prefix)
        restore = ["-h", new.socket_dir, "-p", new.port, "-d", ROLE, "--clean", "--if-exists"]
        restore += ["--single-transaction", "--exit-on-error", dump]
        as_postgres(new, client_tool("pg_restore"), *restore)
        assert new.psql(ROWS, database=ROLE) == rows == "1=first,2=second,3=it's quoted"
        owner = (
            f"SELECT tableowner FROM pg_tables WHERE tablename = 'notes' AND schemaname = '{ROLE}'"
        )
        assert new.psql(owner, database=ROLE) == ROLE


def archived(cluster):
    return cluster.psql("SELECT archived_count || ' ' || failed_count FROM pg_stat_archiver")


def test_a_base_backup_and_archived_wal_replay_every_commit(project, tls, place):
    """setup.sh --archive-dir; pg_basebackup; more rows; the host is lost (stopped
    at once). The base backup with restore_command over the archive and a
    recovery.signal replays to the end of the WAL: every row is back."""
    prefix, base = place
    archive = base / "wal-archive"
    backup = base / "restored"
    with running_cluster(base, "old", prefix) as old:
        setup_sh(project, old, *ARGS, "--tls-dir", tls, "--archive-dir", archive, prefix=prefix)
        write_rows(old, (1, "before the base backup"))
        args = ["-h", old.socket_dir, "-p", old.port, "-D", backup, "-Fp", "-X", "stream"]
        as_postgres(old, client_tool("pg_basebackup"), *args, "--checkpoint=fast")
        write_rows(old, (2, "after it"), (3, "and after that"))
        rows = old.psql(ROWS, database=ROLE)
        start = int(archived(old).split()[0])
        old.psql("SELECT pg_switch_wal()")
        assert wait_for(lambda: int(archived(old).split()[0]) > start, 30), archived(old)
        assert archived(old).split()[1] == "0"
        stop = [pg_tool("pg_ctl"), "-D", old.data, "-m", "immediate", "-w", "stop"]
        as_postgres(old, *stop)
    restored = Cluster(base, "restored", prefix, port=5433)
    auto = restored.data / "postgresql.auto.conf"
    with auto.open("a") as conf:
        conf.write(f"restore_command = 'cp {archive}/%f %p'\n")
    (restored.data / "recovery.signal").touch()
    restored.socket_dir.mkdir(mode=0o700)
    run(["chown", "--reference", restored.data, restored.socket_dir])
    try:
        restored.start()
        done = wait_for(lambda: restored.psql("SELECT pg_is_in_recovery()") == "f", 60, 0.5)
        assert done, restored.log_text()
        assert restored.psql(ROWS, database=ROLE) == rows
        assert "archive recovery complete" in restored.log_text()
    finally:
        restored.stop()
