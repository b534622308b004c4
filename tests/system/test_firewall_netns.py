"""The whitelist of each firewall backend, proven with real port scans.

For each backend (nftables, iptables, ufw) a project is firewall_dir and its
deploy/firewall/apply.sh loads the rules inside a throwaway network namespace,
"server". Two more namespaces, "trusted" (one of trusted_clients) and
"outsider", reach it over a bridge that lives in a fourth, "switch". Nothing
touches the host's network namespace; ufw runs in a private mount namespace
over copies of its files, and the host's copies are checked byte for byte
afterwards. The machinery is in support/netns.py and support/firewall.py.

The server listens on the public ports, on the internal port (bound to its
own addresses, as the internal service would be) and on decoy ports bound to
the wildcard addresses: a port that turns up filtered is filtered by the
firewall, not merely closed. A TCP connect scan of all 65535 ports, IPv4 and
IPv6, must find exactly ssh, 80 and 443 open from the outsider, and those plus
the internal port from the trusted client.

apply.sh's arguments, and its refusal without root, are tested in
tests/bake/test_apply_sh.py.
"""

import contextlib
import os
import time

import pytest

from support.firewall import (
    BACKENDS,
    DECOY_PORTS,
    INTERNAL_PORT,
    METRICS_PORT,
    OPENED_DECOY,
    PUBLIC_PORTS,
    TABLE,
    Firewalled,
    RealStack,
    edited_copies,
    listener_specs,
)
from support.netns import assert_scan_finds, listening, topology
from support.processes import process_alive, wait_for
from support.tools import needs_root, tool
from support.ufw import ufw_sandbox

pytestmark = needs_root(
    "this test creates network namespaces and loads firewall rules into them with the "
    "generated apply.sh"
)


def require_tools(backend):
    """What apply.sh and the namespaces need, for this backend."""
    for name, package in (
        ("ip", "iproute2"),
        ("unshare", "util-linux"),
        ("setsid", "util-linux"),
        ("flock", "util-linux"),
    ):
        tool(name, package)
    if backend == "nftables":
        tool("nft", "nftables")
    else:
        for name in (
            "iptables-restore",
            "ip6tables-restore",
            "iptables-save",
            "ip6tables-save",
        ):
            tool(name, "iptables")


def wait_until_every_listener_answers(topo):
    """Before the rules: every listener answers, so a filtered port later on
    is the firewall's doing."""
    targets = [
        (topo.address("server", family), port)
        for port in (*PUBLIC_PORTS, *DECOY_PORTS, INTERNAL_PORT)
        for family in (4, 6)
    ]

    def all_answer():
        results = topo.probe_many("outsider", targets)
        return all(result.startswith("open") for result in results)

    if not wait_for(all_answer, 10, 0.2):
        results = topo.probe_many("outsider", targets)
        pytest.fail(f"a listener does not answer: {list(zip(targets, results, strict=True))}")


@pytest.fixture(scope="module", params=BACKENDS)
def firewalled(request, firewall_dir, tmp_path_factory):
    """A Firewalled: topology, listeners, and the backend's rules loaded by apply.sh."""
    backend = request.param
    require_tools(backend)
    folder = firewall_dir(backend)
    work = tmp_path_factory.mktemp(f"netns-{backend}")
    with contextlib.ExitStack() as stack:
        topo = stack.enter_context(topology())
        firewall = Firewalled(backend, topo, folder, work)
        if backend == "ufw":
            firewall.ufw_copies = stack.enter_context(ufw_sandbox(topo, work))
        stack.enter_context(listening(topo, listener_specs(internal=False)))
        real = RealStack(topo, folder.parent.parent, work)
        stack.callback(real.stop)
        firewall.stack = real.start()
        stack.callback(firewall.kill_timer)
        wait_until_every_listener_answers(topo)
        firewall.apply_sh()
        yield firewall


@pytest.mark.parametrize("family", [4, 6])
@pytest.mark.parametrize("source", ["outsider", "trusted"])
def test_full_port_scan_finds_exactly_the_whitelist(firewalled, source, family, capsys):
    """All 65535 TCP ports from each client: only the whitelist answers, the rest is silent."""
    expected = set(PUBLIC_PORTS)
    if source == "trusted":
        expected.add(INTERNAL_PORT)
    assert_scan_finds(firewalled.topo, source, family, expected, firewalled.backend, capsys)


@pytest.mark.parametrize("family", [4, 6])
def test_internal_port_only_for_the_trusted_client_over_mutual_tls(firewalled, family):
    """The outsider's connect to the internal port times out. The trusted client
    completes the mutual-TLS handshake with its certificate, sends the token and,
    on behalf of a caller with an API token, gets data; for a caller without one it
    gets 'unauthorized', and its connection may run no admin operation. Without a
    certificate, or with one and no token, it gets nothing."""
    topo, stack = firewalled.topo, firewalled.stack
    server = topo.address("server", family)
    assert topo.probe("outsider", server, INTERNAL_PORT, 3.0) == "timeout"
    status, _ = stack.api("POST", "/api/v1/items", {"title": f"seen over IPv{family}"})
    assert status == 201

    results = stack.trusted_client(family)
    titles = [item["title"] for item in results["cert_and_token"]["items"]]
    assert f"seen over IPv{family}" in titles
    assert results["no_api_token"] == "unauthorized", results
    assert results["admin_on_api_connection"] == "forbidden", results
    # TLS 1.3 ends the handshake before the server has judged the certificate,
    # so the refusal arrives as the server's alert on the first read.
    assert "CERTIFICATE_REQUIRED" in str(results["no_cert"]), results["no_cert"]
    refused = results["cert_no_token"]
    assert isinstance(refused, dict) and refused["ok"] is False, refused
    assert refused["error"]["code"] == "unauthorized", refused


def test_loopback_still_works_inside_the_server(firewalled):
    """Local processes still reach each other, on ports closed to the network."""
    topo = firewalled.topo
    targets = [(host, port) for host in ("127.0.0.1", "::1") for port in (OPENED_DECOY, 5432)]
    assert topo.probe_many("server", targets) == [f"open decoy {port}" for _, port in targets]
    outside = [(topo.address("server", family), 5432) for family in (4, 6)]
    assert topo.probe_many("outsider", outside, 1.5) == ["timeout", "timeout"]
    # The API on 127.0.0.1 reaches the internal service through the firewall,
    # over mutual TLS, and answers ready.
    assert firewalled.stack.api("GET", "/api/v1/ready")[0] == 200
    # Its metrics answer on loopback, and only there (the full scans find the port shut).
    assert topo.probe("server", "127.0.0.1", METRICS_PORT).startswith("open")
    outside = [(topo.address("server", family), METRICS_PORT) for family in (4, 6)]
    assert topo.probe_many("outsider", outside, 1.5) == ["timeout", "timeout"]


def broken_rules(firewall):
    """Copies of the rules with one mistake each backend's tool must catch, and
    a fragment of the tool's own message about it."""
    directory = firewall.work / "broken"
    if firewall.backend == "nftables":
        copies = edited_copies(firewall.files, directory, "policy drop;", "policy drip;")
        return copies, "Error: syntax error"
    if firewall.backend == "iptables":
        v4 = firewall.files[0]
        (v6,) = edited_copies(
            firewall.files[1:], directory, "--dports 80,443 ", "--dports 80,443,99999 "
        )
        return [v4, v6], "99999"
    return edited_copies(
        firewall.files, directory, "run ufw allow 443/tcp", "run ufw allow 99999/tcp"
    ), "ERROR: Bad port"


def test_check_rejects_broken_rules_and_changes_nothing(firewalled):
    """--check: the good rules pass, a broken copy fails with the tool's message;
    the loaded ruleset is the same before and after both."""
    before = firewalled.snapshot()
    proc = firewalled.apply_sh("--check")
    assert proc.stdout.startswith("apply.sh: check passed: ")
    broken, message = broken_rules(firewalled)
    proc = firewalled.apply_sh("--check", *broken, check=False)
    assert proc.returncode == 1, proc
    assert message in proc.stderr, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("apply.sh: error: check failed: ")
    assert proc.stderr.splitlines()[-1].endswith("(nothing was changed)")
    # Loading it for real is refused just the same, before anything changes.
    proc = firewalled.apply_sh(*broken, check=False)
    assert proc.returncode == 1 and message in proc.stderr, proc
    if firewalled.backend == "nftables":
        flushing = firewalled.work / "flushing.nft"
        flushing.write_text("flush ruleset\n" + firewalled.files[0].read_text())
        proc = firewalled.apply_sh("--check", flushing, check=False)
        assert proc.returncode == 1
        assert "'flush ruleset' would delete every other table too" in proc.stderr
    assert firewalled.snapshot() == before
    assert not (firewalled.state_dir / "pending").exists()


def opening_decoy(firewall):
    """Copies of the rules that also open OPENED_DECOY."""
    directory = firewall.work / "opening"
    if firewall.backend == "nftables":
        return edited_copies(
            firewall.files,
            directory,
            "tcp dport { 80, 443 } accept",
            f"tcp dport {{ 80, 443, {OPENED_DECOY} }} accept",
        )
    if firewall.backend == "iptables":
        return edited_copies(
            firewall.files,
            directory,
            "--dports 80,443 ",
            f"--dports 80,443,{OPENED_DECOY} ",
        )
    line = "run ufw allow 443/tcp comment 'https, served by nginx'\n"
    return edited_copies(
        firewall.files,
        directory,
        line,
        f"{line}run ufw allow {OPENED_DECOY}/tcp comment 'test decoy'\n",
    )


def decoy_from_outsider(topo):
    """{4: result, 6: result} of connecting to OPENED_DECOY from the outsider."""
    targets = [(topo.address("server", family), OPENED_DECOY) for family in (4, 6)]
    return dict(zip((4, 6), topo.probe_many("outsider", targets, 1.5), strict=True))


OPENED = {4: f"open decoy {OPENED_DECOY}", 6: f"open decoy {OPENED_DECOY}"}


CLOSED = {4: "timeout", 6: "timeout"}


def test_unconfirmed_change_rolls_back(firewalled):
    """--confirm-within 2 and no --confirm: the new rules are live, then the
    timer restores the previous ruleset exactly, and the timer is gone."""
    topo = firewalled.topo
    before = firewalled.snapshot()
    assert decoy_from_outsider(topo) == CLOSED
    try:
        proc = firewalled.apply_sh("--confirm-within", "2", *opening_decoy(firewalled))
        loaded = time.monotonic()
        lines = proc.stdout.splitlines()
        assert "unless confirmed" in lines[-2]
        assert lines[-1].startswith("Open a NEW ssh session to this host and run there: sudo ")
        assert lines[-1].endswith(f"apply.sh --confirm --state-dir {firewalled.state_dir}")
        pid = firewalled.timer_pid()
        assert pid is not None, "no rollback timer runs"
        # Its own session: an ssh logout (SIGHUP to the session) cannot reach it.
        assert os.getsid(pid) == pid
        assert decoy_from_outsider(topo) == OPENED
        assert firewalled.snapshot() != before
        restored = wait_for(lambda: firewalled.snapshot() == before, 20, 0.25)
        assert restored, "the previous ruleset did not come back"
        assert time.monotonic() - loaded >= 1.5, "rolled back too early"
        assert decoy_from_outsider(topo) == CLOSED
        assert wait_for(lambda: not process_alive(pid), 5), "the timer still runs"
        proc = firewalled.apply_sh("--confirm", check=False)
        assert proc.returncode == 1
        assert "too late: the saved state was restored at" in proc.stderr
        if firewalled.backend == "nftables":
            rollback_to_no_table(firewalled)
    finally:
        firewalled.kill_timer()
    assert firewalled.snapshot() == before


def rollback_to_no_table(firewall):
    """nftables: with no table before, the rollback deletes the table again."""
    topo = firewall.topo
    topo.run("server", "nft", "delete", "table", "inet", TABLE)
    empty = firewall.snapshot()
    assert TABLE not in empty
    firewall.apply_sh("--confirm-within", "2")
    assert TABLE in firewall.snapshot()
    assert wait_for(lambda: firewall.snapshot() == empty, 20, 0.25), "table not deleted"
    # Back to the real rules for the next tests.
    firewall.apply_sh()


def test_confirmed_change_stays(firewalled):
    """--confirm in time: the timer is cancelled and the new rules outlive the deadline."""
    topo = firewalled.topo
    before = firewalled.snapshot()
    try:
        firewalled.apply_sh("--confirm-within", "3", *opening_decoy(firewalled))
        loaded = time.monotonic()
        pid = firewalled.timer_pid()
        assert pid is not None
        changed = firewalled.snapshot()
        proc = firewalled.apply_sh("--confirm")
        assert proc.stdout == "apply.sh: confirmed: the new rules stay, the rollback is cancelled\n"
        assert wait_for(lambda: not process_alive(pid), 5), "the timer still runs"
        time.sleep(max(0.0, loaded + 4 - time.monotonic()))  # past the deadline
        assert decoy_from_outsider(topo) == OPENED
        assert firewalled.snapshot() == changed
        proc = firewalled.apply_sh("--confirm")
        assert proc.stdout.startswith("apply.sh: nothing to confirm")
    finally:
        firewalled.kill_timer()
        # Back to the real rules: ufw-rules.sh only adds, so delete the extra rule.
        if firewalled.backend == "ufw":
            topo.run("server", "ufw", "delete", "allow", f"{OPENED_DECOY}/tcp")
        else:
            firewalled.apply_sh()
    assert decoy_from_outsider(topo) == CLOSED
    assert firewalled.snapshot() == before


def test_rollback_on_demand(firewalled):
    """--rollback while a change is pending: the previous ruleset is back at once,
    the timer is gone, and a second --rollback finds nothing to do."""
    topo = firewalled.topo
    before = firewalled.snapshot()
    try:
        firewalled.apply_sh("--confirm-within", "600", *opening_decoy(firewalled))
        pid = firewalled.timer_pid()
        assert pid is not None
        assert decoy_from_outsider(topo) == OPENED
        proc = firewalled.apply_sh("--rollback")
        assert proc.stdout.endswith("apply.sh: rolled back: the saved state is loaded again\n")
        assert firewalled.snapshot() == before
        assert wait_for(lambda: not process_alive(pid), 5), "the timer still runs"
        assert decoy_from_outsider(topo) == CLOSED
        proc = firewalled.apply_sh("--rollback", check=False)
        assert proc.returncode == 1
        assert "nothing to roll back" in proc.stderr
    finally:
        firewalled.kill_timer()
