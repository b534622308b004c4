"""deploy/postgresql/setup.sh on real private clusters: what it makes, that a
second run changes nothing, --dry-run, and scram-sha-256 passwords.

Each test gets a fresh cluster (initdb into a temporary directory) inside an
empty network namespace of its own, where it listens on loopback: setup.sh is
run there with --data-dir, as root, and drives the cluster as the postgres
account. The role logs in over TLS on loopback, as an internal service on the
same host would. Its arguments are tested without root in
tests/bake/test_postgresql_files.py.
"""

import contextlib

import pytest

from support.baking import TEMPLATE_DIR
from support.files import digest
from support.netns import netns
from support.postgresql import (
    PROJECT,
    ROLE,
    conninfo,
    database_baker,
    make_certificates,
    private_dir,
    psql_client,
    running_cluster,
    setup_sh,
)
from support.tools import needs_root

pytestmark = needs_root("it runs private PostgreSQL clusters as the postgres account")

LOOPBACK = ("127.0.0.1", "::1")
ARGS = ["--listen", "127.0.0.1", "--listen", "::1", "--client", "127.0.0.1", "--client", "::1"]
# What the role can do in its database, one statement each: (statement, allowed).
RIGHTS = [
    ("CREATE TABLE notes (id int PRIMARY KEY, body text)", True),
    ("INSERT INTO notes VALUES (1, 'kept')", True),
    ("CREATE TABLE public.intruder (id int)", False),
    ("CREATE DATABASE another", False),
    ("CREATE ROLE another", False),
    ("CREATE SCHEMA another", False),
    ("SELECT count(*) FROM pg_authid", False),
]


@pytest.fixture(scope="module")
def project(cookies_session):
    return database_baker(cookies_session, TEMPLATE_DIR)("nftables", "")


@pytest.fixture(scope="module")
def tls(project, tmp_path_factory):
    return make_certificates(project, tmp_path_factory.mktemp("pg-setup") / "tls", LOOPBACK)


@pytest.fixture
def fresh(tmp_path):
    """(prefix, cluster, home): a new cluster in a new namespace with loopback up."""
    home = tmp_path / "home"
    home.mkdir()
    with contextlib.ExitStack() as stack:
        in_ns = stack.enter_context(netns())
        in_ns("ip", "link", "set", "lo", "up")
        prefix = ["ip", "netns", "exec", in_ns.name]
        base = stack.enter_context(private_dir())
        cluster = stack.enter_context(running_cluster(base, "db", prefix))
        yield prefix, cluster, home


def config_state(cluster):
    """Every file setup.sh writes in the cluster, and the server's pid."""
    return digest(cluster.data / "postgresql.conf", cluster.data / "pg_hba.conf",
                  cluster.data / "conf.d", cluster.data / f"{PROJECT}-tls"
                  ), cluster.postmaster_pid()  # fmt: skip


def lines(output, kind):
    return [line for line in output.splitlines() if line.startswith(kind)]


def test_a_second_run_changes_nothing_and_says_so(project, tls, fresh):
    """First run: everything made, the server restarted with TLS. Second run:
    only "ok:" lines and "nothing to change", no file touched, no restart."""
    prefix, cluster, _ = fresh
    first = setup_sh(project, cluster, *ARGS, "--tls-dir", tls, prefix=prefix).stdout
    assert lines(first, "changed: PostgreSQL restarted"), first
    before = config_state(cluster)
    second = setup_sh(project, cluster, *ARGS, "--tls-dir", tls, prefix=prefix).stdout
    assert lines(second, "changed:") == [], second
    assert second.splitlines()[-1] == "nothing to change"
    assert len(lines(second, "ok: ")) == len(second.splitlines()) - 1
    assert config_state(cluster) == before


def test_dry_run_says_what_it_would_do_and_does_nothing(project, tls, fresh):
    prefix, cluster, _ = fresh
    before = config_state(cluster)
    output = setup_sh(project, cluster, *ARGS, "--tls-dir", tls, "--dry-run", prefix=prefix).stdout
    assert output.splitlines()[-1] == "dry run: nothing was changed"
    wanted = [f"role {ROLE} exists", "pg_hba.conf: hostssl for", "conf.d/dbhost.conf"]
    for text in wanted:
        assert any(text in line for line in lines(output, "would change: ")), (text, output)
    assert lines(output, "changed:") == []
    assert config_state(cluster) == before
    assert cluster.psql(f"SELECT count(*) FROM pg_roles WHERE rolname = '{ROLE}'") == "0"


def test_the_role_owns_its_schema_and_nothing_more(project, tls, fresh):
    """Attributes, ownership and rights, checked by the server itself."""
    prefix, cluster, home = fresh
    setup_sh(project, cluster, *ARGS, "--tls-dir", tls, prefix=prefix)
    attributes = cluster.psql(
        "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls"
        f" FROM pg_roles WHERE rolname = '{ROLE}'"
    )
    assert attributes == "t|f|f|f|f|f"
    outcomes = []
    for statement, _ in RIGHTS:
        code, output = psql_client(prefix, conninfo("127.0.0.1", tls), statement, home)
        outcomes.append((statement, code == 0, output))
    assert [(s, ok) for s, ok, _ in outcomes] == RIGHTS, outcomes
    owned = cluster.psql(
        "SELECT string_agg(kind || ' ' || name, ', ' ORDER BY kind, name) FROM ("
        " SELECT 'schema' AS kind, nspname AS name FROM pg_namespace"
        f" WHERE nspowner = '{ROLE}'::regrole"
        " UNION ALL SELECT 'relation', relnamespace::regnamespace || '.' || relname FROM pg_class"
        f" WHERE relowner = '{ROLE}'::regrole AND relkind = 'r'"
        f" UNION ALL SELECT 'database', datname FROM pg_database WHERE datdba = '{ROLE}'::regrole"
        ") owned",
        database=ROLE,
    )  # fmt: skip
    assert owned == f"relation {ROLE}.notes, schema {ROLE}"
    # Nobody else may connect to its database.
    assert cluster.psql(f"SELECT has_database_privilege('public', '{ROLE}', 'CONNECT')") == "f"


def test_scram_passwords_are_made_once_and_kept(project, tls, fresh, tmp_path):
    """--auth scram-sha-256: a random password in a root-only pgpass file, stored
    as a SCRAM verifier (never in the server's log); it logs in with PGPASSFILE, a
    wrong one does not; a second run keeps both the file and the verifier."""
    prefix, cluster, home = fresh
    passfile = tmp_path / "secret" / "dbhost.pgpass"
    scram = [*ARGS, "--tls-dir", tls, "--auth", "scram-sha-256", "--password-file", passfile]
    setup_sh(project, cluster, *scram, prefix=prefix)
    assert passfile.stat().st_mode & 0o777 == 0o600
    password = passfile.read_text().strip().split(":")[-1]
    verifier = f"SELECT rolpassword FROM pg_authid WHERE rolname = '{ROLE}'"
    stored = cluster.psql(verifier)
    assert stored.startswith("SCRAM-SHA-256$4096:")
    # TLS still, verified, but no client certificate: the password alone.
    info = conninfo("::1", sslmode="verify-full", sslrootcert=tls / "ca.crt")
    sql = "SELECT current_user"
    assert psql_client(prefix, info, sql, home, PGPASSFILE=str(passfile)) == (0, ROLE)
    code, output = psql_client(prefix, info, sql, home, PGPASSWORD="wrong")
    assert code != 0 and "password authentication failed" in output, output
    second = setup_sh(project, cluster, *scram, prefix=prefix).stdout
    assert lines(second, "changed:") == [], second
    assert cluster.psql(verifier) == stored
    assert password not in cluster.log_text()
