"""The database host's pg_hba.conf and TLS settings, refusing for real.

A project baked with database=postgresql and the trusted client's addresses
as trusted_clients. In the "server" namespace of a support.netns topology a
private cluster (initdb into a temporary directory, never the system's) is
set up by the generated deploy/postgresql/setup.sh, with the certificates of
the generated deploy/pki.sh; it listens on the server's addresses. No
firewall is loaded here, so every refusal below is PostgreSQL's own
(tests/system/test_postgresql_firewall.py adds the firewall). The client is
psql (libpq) in the "trusted" and "outsider" namespaces.
"""

import contextlib

import pytest

from support.baking import TEMPLATE_DIR
from support.netns import ADDRESSES, topology
from support.postgresql import (
    ROLE,
    conninfo,
    database_baker,
    make_certificates,
    private_dir,
    psql_client,
    running_cluster,
    setup_sh,
)
from support.processes import run
from support.tools import needs_root, tool

pytestmark = needs_root(
    "it makes network namespaces and runs a private PostgreSQL cluster as the postgres account"
)

TRUSTED = f"{ADDRESSES['trusted'].v4}, {ADDRESSES['trusted'].v6}"
SERVER = ADDRESSES["server"]
FAMILIES = {4: SERVER.v4, 6: SERVER.v6}
WHO = (
    "SELECT current_user || ' ' || version || ' ' || ssl"
    " FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
)


@pytest.fixture(scope="module")
def host(cookies_session, tmp_path_factory):
    """The topology, the cluster in its server (set up with cert authentication),
    and the certificates: ours, and another CA's with the same names."""
    tool("ip", "iproute2")
    project = database_baker(cookies_session, TEMPLATE_DIR)("nftables", TRUSTED)
    work = tmp_path_factory.mktemp("pg-tls")
    tls = make_certificates(project, work / "tls", SERVER)
    other = make_certificates(project, work / "other-ca", SERVER)
    home = work / "home"
    home.mkdir()
    with contextlib.ExitStack() as stack:
        topo = stack.enter_context(topology())
        base = stack.enter_context(private_dir())
        cluster = stack.enter_context(running_cluster(base, "db", topo.prefix["server"]))
        # No --client: the default is the project's trusted clients.
        listen = ["--listen", SERVER.v4, "--listen", SERVER.v6]
        setup = setup_sh(project, cluster, *listen, "--tls-dir", tls, prefix=topo.prefix["server"])
        yield topo, cluster, tls, other, home, setup


def connect(host, role, family, sql=WHO, tls=None, **options):
    topo, _, _, _, home, _ = host
    info = conninfo(FAMILIES[family], tls, **options)
    return psql_client(topo.prefix[role], info, sql, home)


@pytest.mark.parametrize("family", [4, 6])
def test_the_trusted_host_with_a_ca_certificate_connects_over_tls_1_3(host, family):
    """verify-full (the database certificate names the address) and the client
    certificate (CN = the role): logged in as the role, over TLS 1.3."""
    code, output = connect(host, "trusted", family, tls=host[2])
    assert code == 0, output
    assert output == f"{ROLE} TLSv1.3 true"


@pytest.mark.parametrize("family", [4, 6])
def test_without_a_client_certificate_the_role_is_refused(host, family):
    """TLS, a verified server, the right host and role, but no certificate."""
    tls = host[2]
    code, output = connect(
        host, "trusted", family, sslmode="verify-full", sslrootcert=tls / "ca.crt"
    )
    assert code != 0
    assert "connection requires a valid client certificate" in output, output


@pytest.mark.parametrize("family", [4, 6])
def test_a_certificate_of_another_ca_is_refused(host, family):
    """Another CA's client certificate with the right CN fails the handshake."""
    tls, other = host[2], host[3]
    options = {
        "sslcert": other / "database-client-app1.crt",
        "sslkey": other / "database-client-app1.key",
    }
    code, output = connect(host, "trusted", family, tls=tls, **options)
    assert code != 0
    assert "unknown ca" in output, output


@pytest.mark.parametrize("family", [4, 6])
def test_plain_tcp_is_refused(host, family):
    """sslmode=disable: pg_hba.conf's hostnossl line rejects it, even from the trusted host."""
    code, output = connect(host, "trusted", family, sslmode="disable")
    assert code != 0
    assert "pg_hba.conf rejects connection" in output and "no encryption" in output, output


@pytest.mark.parametrize("family", [4, 6])
def test_a_client_limited_to_tls_1_2_is_refused(host, family):
    """ssl_min_protocol_version = TLSv1.3 on the server: a TLS 1.2 client gets no handshake."""
    code, output = connect(host, "trusted", family, tls=host[2], ssl_max_protocol_version="TLSv1.2")
    assert code != 0
    assert "protocol version" in output, output


@pytest.mark.parametrize("family", [4, 6])
def test_the_wrong_host_is_refused_with_a_valid_certificate(host, family):
    """The outsider holds a good certificate, but pg_hba.conf has no line for its address."""
    code, output = connect(host, "outsider", family, tls=host[2])
    assert code != 0
    outsider = getattr(ADDRESSES["outsider"], f"v{family}")
    assert f'pg_hba.conf rejects connection for host "{outsider}"' in output, output


def test_other_roles_are_refused_over_the_network(host):
    """The postgres admin, with the role's certificate, from the trusted host: refused."""
    code, output = connect(host, "trusted", 4, tls=host[2], user="postgres", dbname="postgres")
    assert code != 0
    assert 'rejects connection for host "192.0.2.20", user "postgres"' in output, output


def test_the_server_listens_on_its_private_addresses_alone(host):
    """listen_addresses is the --listen list: nothing on loopback or the wildcard."""
    topo, cluster = host[0], host[1]
    assert cluster.psql("SHOW listen_addresses") == f"{SERVER.v4},{SERVER.v6}"
    sockets = run([*topo.prefix["server"], "ss", "-Htln", "sport = :5432"]).stdout
    local = sorted(line.split()[3] for line in sockets.splitlines())
    assert local == [f"{SERVER.v4}:5432", f"[{SERVER.v6}]:5432"]
    settings = (
        "SELECT name || '=' || setting FROM pg_settings WHERE name IN"
        " ('ssl', 'ssl_min_protocol_version', 'password_encryption') ORDER BY name"
    )
    assert cluster.psql(settings).splitlines() == [
        "password_encryption=scram-sha-256",
        "ssl=on",
        "ssl_min_protocol_version=TLSv1.3",
    ]
