"""The database host's firewall, for each backend, proven with full port scans.

A project baked with database=postgresql and the trusted client's addresses
as trusted_clients (the internal service hosts, by default). In the "server"
namespace of a support.netns topology: a private PostgreSQL cluster set up by
deploy/postgresql/setup.sh and listening on the server's addresses, decoy
listeners on the wildcard addresses (ssh, 80, 443, the internal port and
more: on the database host only ssh may answer), and the backend's database
rules loaded by deploy/firewall/apply.sh. ufw runs over private copies of its
files (support/ufw.py). A TCP connect scan of all 65535 ports, IPv4 and IPv6,
must find exactly ssh from the outsider, and ssh and 5432 from the trusted
host; a filtered port is the firewall's doing, as something listens there.
"""

import contextlib

import pytest

from support.baking import TEMPLATE_DIR
from support.netns import ADDRESSES, assert_scan_finds, listening, topology
from support.postgresql import (
    PROJECT,
    ROLE,
    SSH_PORT,
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
from support.ufw import ufw_sandbox

pytestmark = needs_root(
    "it makes network namespaces, loads firewall rules into them with the generated "
    "apply.sh and runs a private PostgreSQL cluster as the postgres account"
)

BACKENDS = ("nftables", "iptables", "ufw")
TRUSTED = f"{ADDRESSES['trusted'].v4}, {ADDRESSES['trusted'].v6}"
SERVER = ADDRESSES["server"]
DATABASE_PORT = 5432
# On the wildcard addresses: what an API host would open, and more.
DECOY_PORTS = (SSH_PORT, 22, 80, 443, 8000, 8001, 9999)
FILES = {
    "nftables": [f"nftables/{PROJECT}-database.nft"],
    "iptables": ["iptables/database.v4", "iptables/database.v6"],
    "ufw": ["ufw/ufw-database-rules.sh"],
}


def require_tools(backend):
    for name in ("ip", "unshare", "setsid", "flock", "nsenter", "ss"):
        tool(name, "iproute2 util-linux")
    if backend == "nftables":
        tool("nft", "nftables")
    else:
        tool("iptables-restore", "iptables")
        tool("ip6tables-restore", "iptables")
    if backend == "ufw":
        tool("ufw", "ufw")


def decoys():
    return [
        (f"decoy-{port}", address, port) for address in ("0.0.0.0", "::") for port in DECOY_PORTS
    ]


@pytest.fixture(scope="module", params=BACKENDS)
def database_host(request, cookies_session, tmp_path_factory):
    """(backend, topology, tls, home, cluster): the cluster set up, decoys listening, the
    backend's database rules loaded by apply.sh."""
    backend = request.param
    require_tools(backend)
    project = database_baker(cookies_session, TEMPLATE_DIR)(backend, TRUSTED)
    work = tmp_path_factory.mktemp(f"pg-fw-{backend}")
    tls = make_certificates(project, work / "tls", SERVER)
    home = work / "home"
    home.mkdir()
    with contextlib.ExitStack() as stack:
        topo = stack.enter_context(topology())
        base = stack.enter_context(private_dir())
        cluster = stack.enter_context(running_cluster(base, "db", topo.prefix["server"]))
        listen = ["--listen", SERVER.v4, "--listen", SERVER.v6]
        setup_sh(project, cluster, *listen, "--tls-dir", tls, prefix=topo.prefix["server"])
        if backend == "ufw":
            stack.enter_context(ufw_sandbox(topo, work))
        stack.enter_context(listening(topo, decoys()))
        folder = project / "deploy" / "firewall"
        files = [folder / name for name in FILES[backend]]
        apply = [folder / "apply.sh", "--state-dir", work / "state", *files]
        topo.run("server", *apply, timeout=120)
        yield backend, topo, tls, home, cluster


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("source", ["outsider", "trusted"])
def test_full_port_scan_finds_ssh_and_postgresql_for_the_internal_hosts(
    database_host, source, family, capsys
):
    """All 65535 TCP ports: ssh from anywhere, 5432 from the internal service host alone."""
    backend, topo = database_host[:2]
    expected = {SSH_PORT} | ({DATABASE_PORT} if source == "trusted" else set())
    assert_scan_finds(topo, source, family, expected, f"database host, {backend}", capsys)


@pytest.mark.parametrize("family", [4, 6])
def test_through_the_firewall_only_the_internal_host_logs_in(database_host, family):
    """The trusted host gets in over TLS 1.3 with its certificate; the outsider,
    with the same certificate, never reaches PostgreSQL: its connect times out."""
    _, topo, tls, home, _ = database_host
    server = topo.address("server", family)
    sql = "SELECT current_user || ' ' || version FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    code, output = psql_client(topo.prefix["trusted"], conninfo(server, tls), sql, home)
    assert (code, output) == (0, f"{ROLE} TLSv1.3")
    outsider = conninfo(server, tls, connect_timeout=2)
    code, output = psql_client(topo.prefix["outsider"], outsider, sql, home)
    assert code != 0 and "timeout expired" in output, output


def test_the_admin_socket_and_loopback_still_work_inside(database_host):
    """Loopback passes the firewall: the decoys answer there, and so does the
    admin's socket (postgres, peer)."""
    topo, cluster = database_host[1], database_host[4]
    targets = [(host, 9999) for host in ("127.0.0.1", "::1")]
    assert topo.probe_many("server", targets) == ["open decoy-9999 9999"] * 2
    listening_sockets = run([*topo.prefix["server"], "ss", "-Htln"]).stdout
    assert f"{SERVER.v4}:{DATABASE_PORT}" in listening_sockets
    assert cluster.psql("SELECT current_user") == "postgres"
