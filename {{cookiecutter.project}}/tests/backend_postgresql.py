"""The store of this project's tests: a private PostgreSQL cluster, a fresh database per test.

The cluster is made with initdb in a new temporary directory and listens on a
unix socket there alone (no TCP), started the first time a test needs a
database and stopped and removed at the end of the session, whatever
happened. Each test that needs one gets a database of its own, owned by an
unprivileged role, and dropped after it. Nothing here touches a system
cluster or /var/run/postgresql.

initdb and postgres refuse to run as root: as root (CI) they run as the
`postgres` account that Debian's package makes, in a directory it owns.
Without the PostgreSQL binaries a test that needs a database is skipped,
except in CI (CI=true), where that is a failure.

Only the standard library, psycopg and pytest are imported: the Bastion
template loads this module from a generated project for its own tests.
"""

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

# The role the tests' databases belong to: not a superuser, as deployed.
ROLE = "app"
# The tables of the store, by name.
TABLES = "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
# Seconds pg_ctl may take to start or stop the cluster.
PG_CTL_WAIT = 60


def binaries():
    """The directory of initdb, pg_ctl and pg_dump, or None: on PATH, else Debian's newest."""
    found = shutil.which("pg_ctl")
    if found:
        # A link on PATH (/usr/local/bin/pg_ctl) leads to the directory that has them all.
        return Path(found).resolve().parent
    debian = [path.parent for path in Path("/usr/lib/postgresql").glob("*/bin") if path.is_dir()]
    debian = [path for path in debian if (path / "bin" / "pg_ctl").exists()]
    if not debian:
        return None
    newest = max(debian, key=lambda path: int(path.name) if path.name.isdigit() else 0)
    return newest / "bin"


def missing(reason):
    """Skip the test for want of PostgreSQL; in CI, fail it."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


class Cluster:
    """A private cluster in a new temporary directory, whose conninfo is known at once;
    start() it when it is needed. stop() is safe at any time, and removes the directory."""

    def __init__(self, name="test"):
        self.bin = binaries()
        self.directory = Path(tempfile.mkdtemp(prefix=f"{name}-pg-"))
        with socket.socket() as sock:
            # It only names the socket file (no TCP): any number would do, this one is free.
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.started = False
        self._as = {}
        # Databases made so far: the next one's name.
        self.databases = 0

    @property
    def sockets(self):
        """The directory of the cluster's unix socket: libpq's host for it."""
        return str(self.directory)

    def url(self, dbname, user=ROLE):
        return f"host={self.sockets} port={self.port} dbname={dbname} user={user}"

    def _run(self, *args):
        """Run a PostgreSQL program as the cluster's owner; its output, or a failure with it."""
        done = subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            cwd=self.directory,
            capture_output=True,
            text=True,
            timeout=PG_CTL_WAIT + 30,
            check=False,
            **self._as,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stdout}{done.stderr}")
        return done.stdout

    def _owner(self):
        """As root, run the cluster as `postgres`, in a directory it owns."""
        if os.geteuid() != 0:
            return
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("running as root needs the postgres account to run initdb") from None
        os.chown(self.directory, account.pw_uid, account.pw_gid)
        self._as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def start(self):
        """initdb, then the server on a unix socket of its own; the role of the databases."""
        if self.bin is None:
            missing("the PostgreSQL binaries (initdb, pg_ctl) are not installed")
        self._owner()
        data = self.directory / "data"
        # trust: only the socket's owner (and root) can reach it, in a 0700 directory.
        self._run(
            "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C",
            "--no-sync", "--no-instructions",
        )  # fmt: skip
        settings = {
            "listen_addresses": "''",
            "unix_socket_directories": f"'{self.directory}'",
            "port": self.port,
            "max_connections": 300,
            "shared_buffers": "'32MB'",
        }
        with (data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        log = self.directory / "server.log"
        self._run("pg_ctl", "-D", data, "-l", log, "-w", "-t", str(PG_CTL_WAIT), "start")
        self.started = True
        self.execute(f"CREATE ROLE {ROLE} LOGIN")
        return self

    def restart(self):
        """Kill the server as a crash would (no checkpoint), and start it again."""
        data = self.directory / "data"
        self._run("pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", str(PG_CTL_WAIT), "stop")
        log = self.directory / "server.log"
        self._run("pg_ctl", "-D", data, "-l", log, "-w", "-t", str(PG_CTL_WAIT), "start")

    def execute(self, sql):
        """SQL as the cluster's superuser, outside any transaction."""
        with psycopg.connect(self.url("postgres", "postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def create(self, dbname):
        """A new empty database owned by ROLE; its conninfo."""
        self.execute(f"CREATE DATABASE {dbname} OWNER {ROLE}")
        return self.url(dbname)

    def drop(self, dbname):
        """Drop DBNAME, cutting any connection still open to it."""
        self.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")

    def dump(self, dbname):
        """Everything DBNAME holds, as pg_dump writes it (bytes)."""
        command = [str(self.bin / "pg_dump"), "--no-owner", "-d", self.url(dbname, "postgres")]
        return subprocess.run(command, capture_output=True, check=True, timeout=60).stdout

    def stop(self):
        if self.started:
            data = self.directory / "data"
            self._run("pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", str(PG_CTL_WAIT), "stop")
            self.started = False
        shutil.rmtree(self.directory, ignore_errors=True)


class Store:
    """One test's database: SETTING's value names it; ready() makes it, the first time."""

    def __init__(self, cluster, dbname):
        self.cluster = cluster
        self.dbname = dbname
        self.made = False

    @property
    def setting(self):
        return self.cluster.url(self.dbname)

    def ready(self):
        if not self.cluster.started:
            self.cluster.start()
        if not self.made:
            self.cluster.create(self.dbname)
            self.made = True
        return self.setting

    def stored(self):
        """Every byte the store holds: the database as pg_dump writes it."""
        return self.cluster.dump(self.dbname)

    @contextlib.contextmanager
    def raw(self):
        """A Database on a connection of its own, outside the service; each statement
        is committed as it runs."""
        # Imported here: the rest of this module does without the project.
        from {{ cookiecutter.__package }}.internal.postgresql import PostgresDatabase

        with psycopg.connect(self.ready(), autocommit=True) as conn:
            yield PostgresDatabase(conn)

    def finish(self):
        if self.made:
            self.cluster.drop(self.dbname)


class Stores:
    """The stores of one test session: one cluster, a database per test (store())."""

    def __init__(self, name):
        self.cluster = Cluster(name)

    def store(self, tmp_path):
        """A test's Store; TMP_PATH (its own directory) is not needed here."""
        self.cluster.databases += 1
        return Store(self.cluster, f"test_{self.cluster.databases}")

    def stop(self):
        self.cluster.stop()
