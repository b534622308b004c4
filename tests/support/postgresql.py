"""Private PostgreSQL clusters for the database host's tests: initdb into a
temporary directory, pg_ctl on a private socket directory, never the system's
service or its main cluster.

initdb and postgres refuse to run as root: as root, every server command runs
as the postgres account (runuser) on directories it owns; as anyone else, as
that user. A cluster can start inside a network namespace (prefix: the argv
that enters it), where it may listen on the namespace's addresses; elsewhere
it listens on its Unix socket alone. Everything is stopped and removed in
finally, whatever the test did.
"""

import contextlib
import os
import pwd
import shutil
import signal
import tempfile
from pathlib import Path

from support.processes import process_alive, run, wait_for
from support.tools import missing

PG_VERSION = 15
PG_BIN = Path(f"/usr/lib/postgresql/{PG_VERSION}/bin")


def pg_tool(name):
    """Path of one of PostgreSQL's server programs (initdb, pg_ctl, ...)."""
    path = PG_BIN / name
    if not path.exists():
        missing(str(path), "postgresql")
    return str(path)


def client_tool(name):
    """psql, pg_dump, pg_restore: the client programs of the same version."""
    return pg_tool(name)


def server_account():
    """(uid, gid) the servers run as: postgres for root, else ourselves."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        missing("the postgres account", "postgresql")
    return entry.pw_uid, entry.pw_gid


def as_server(*argv):
    """argv run as the server account, from /, with the clean environment."""
    command = [str(part) for part in argv]
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


@contextlib.contextmanager
def private_dir():
    """A fresh directory owned by the server account (pytest's are root's, 0700)."""
    path = Path(tempfile.mkdtemp(prefix="bastion-pg-", dir="/tmp"))
    try:
        os.chown(path, *server_account())
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Cluster:
    """One initdb'd cluster in base/name, its socket in base/name-socket."""

    def __init__(self, base, name, prefix=(), port=5432):
        self.base = Path(base)
        self.data = self.base / name
        self.socket_dir = self.base / f"{name}-socket"
        self.log = self.base / f"{name}.log"
        self.prefix = [str(part) for part in prefix]
        self.port = port

    def command(self, *argv):
        return [*self.prefix, *as_server(*argv)]

    def initdb(self, auth_local="peer"):
        uid, gid = server_account()
        self.socket_dir.mkdir(mode=0o700)
        os.chown(self.socket_dir, uid, gid)
        # Peer for the admin's socket, nothing over TCP until setup.sh says otherwise.
        argv = [pg_tool("initdb"), "-D", self.data, "-U", "postgres", "--no-sync"]
        argv += [f"--auth-local={auth_local}", "--auth-host=reject", "-E", "UTF8"]
        argv += ["--locale=C.UTF-8"]
        run(self.command(*argv), cwd="/", timeout=120)
        return self

    def start(self, *settings):
        """pg_ctl start; settings: extra "-c NAME=VALUE" for the command line."""
        options = f"-k {self.socket_dir} -p {self.port}"
        options += "".join(f" -c {setting}" for setting in settings)
        argv = [pg_tool("pg_ctl"), "-D", self.data, "-l", self.log, "-w", "-t", "60"]
        proc = run(self.command(*argv, "-o", options, "start"), cwd="/", check=False, timeout=90)
        assert proc.returncode == 0, f"the cluster did not start: {proc.stderr}\n{self.log_text()}"
        return self

    def postmaster_pid(self):
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self):
        """Fast shutdown; a postmaster that outlives it is killed."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        argv = [pg_tool("pg_ctl"), "-D", self.data, "-m", "fast", "-w", "-t", "30", "stop"]
        run(self.command(*argv), cwd="/", check=False, timeout=60)
        if process_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not process_alive(pid), 10)

    def psql(self, sql, database="postgres", check=True):
        """psql as the admin over the socket; the output, unaligned, tuples only."""
        argv = [client_tool("psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"]
        argv += ["-h", self.socket_dir, "-p", self.port, "-d", database, "-c", sql]
        proc = run(self.command(*argv), cwd="/", check=check, timeout=60)
        return proc.stdout.strip() if check else proc

    def log_text(self):
        try:
            return self.log.read_text()[-4000:]
        except OSError:
            return ""


@contextlib.contextmanager
def running_cluster(base, name, prefix=(), *settings):
    """An initdb'd, started Cluster; stopped (killed if need be) afterwards."""
    cluster = Cluster(base, name, prefix)
    try:
        cluster.initdb()
        yield cluster.start(*settings)
    finally:
        cluster.stop()


@contextlib.contextmanager
def app_database(role):
    """A private cluster on its socket alone (no TCP) with a database that ROLE (not a
    superuser) owns, for a generated project's internal service; yields its conninfo.

    The socket's directory is the server account's, mode 0700: only it and root reach
    the socket, so trust stands in for the deployed host's certificates there.
    """
    with private_dir() as base:
        cluster = Cluster(base, "app")
        try:
            cluster.initdb(auth_local="trust")
            cluster.start("listen_addresses=''")
            cluster.psql(f"CREATE ROLE {role} LOGIN")
            cluster.psql(f"CREATE DATABASE {role} OWNER {role}")
            yield f"host={cluster.socket_dir} port={cluster.port} dbname={role} user={role}"
        finally:
            cluster.stop()


# ---------------------------------------------------------------- the database host

PROJECT = "dbhost"
ROLE = "dbhost"  # __package: the role, its database and its schema
SSH_PORT = 2222


def database_baker(cookies, template):
    """bake(firewall, trusted_clients) -> a project with database=postgresql (cached)."""
    cache = {}

    def bake(firewall, trusted_clients):
        key = (firewall, trusted_clients)
        if key not in cache:
            context = {
                "project": PROJECT,
                "database": "postgresql",
                "firewall": firewall,
                "ssh_port": SSH_PORT,
                "trusted_clients": trusted_clients,
            }
            result = cookies.bake(extra_context=context, template=str(template))
            assert result.exception is None, f"bake failed: {result.exception!r}"
            assert result.exit_code == 0
            cache[key] = Path(result.project_path)
        return cache[key]

    return bake


def make_certificates(project, tls, server_addresses, client="app1"):
    """deploy/pki.sh: the CA, the database's certificate for server_addresses and
    one internal service host's client certificate (CN = the role)."""

    def pki(*args):
        run(["bash", project / "deploy/pki.sh", "--dir", tls, *args])

    pki("ca")
    pki("database", *server_addresses)
    pki("database-client", client)
    return tls


def setup_sh(project, cluster, *args, prefix=(), check=True):
    """deploy/postgresql/setup.sh against a private cluster, as root."""
    argv = [*map(str, prefix), "bash", str(project / "deploy/postgresql/setup.sh")]
    argv += ["--data-dir", str(cluster.data), "--socket-dir", str(cluster.socket_dir)]
    argv += ["--port", str(cluster.port), *map(str, args)]
    return run(argv, check=check, timeout=180)


def conninfo(host, tls=None, client="app1", **options):
    """A libpq conninfo for the role over TCP; tls: the directory of pki.sh's files."""
    settings = {"host": host, "port": 5432, "dbname": ROLE, "user": ROLE, "connect_timeout": 3}
    if tls is not None:
        settings.update(
            sslmode="verify-full",
            sslrootcert=tls / "ca.crt",
            sslcert=tls / f"database-client-{client}.crt",
            sslkey=tls / f"database-client-{client}.key",
        )
    settings.update(options)
    return " ".join(f"{key}={value}" for key, value in settings.items())


def psql_client(prefix, info, sql, home, **env):
    """psql with conninfo info, in a namespace (prefix): (exit status, output).

    HOME is an empty directory, so libpq finds no certificate or password of
    root's by itself; PGSSL* and the like come only from info.
    """
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    environment.update(HOME=str(home), **env)
    argv = [*map(str, prefix), client_tool("psql"), "-X", "-At", "-d", info, "-c", sql]
    proc = run(argv, check=False, env=environment, timeout=60, cwd="/")
    return proc.returncode, (proc.stdout + proc.stderr).strip()
