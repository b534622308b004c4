"""The firewall rules in deploy/firewall/ for each backend, checked by the kernel.

Every case bakes the real template with pytest-cookies; the text checks are in
tests/bake/test_firewall_files.py. These need root. Only the check modes
(nft -c, iptables-restore --test) run in the host's namespace; rules are
loaded for real only inside network namespaces made here and deleted
afterwards, and ufw runs for real only over copies of its config, so the
host's own firewall is never changed. Every other run of the ufw script finds
a recording fake ufw first on PATH. Addresses are documentation ranges.
"""

import json
import re
import shlex
import subprocess
import sys

import pytest

from support.files import digest
from support.netns import netns
from support.processes import run
from support.rule_files import (
    CLIENTS,
    INTERNAL_PORT,
    PORT_RE,
    PROJECT,
    SSH_PORT,
    TABLE,
    check_internal_port_nft,
    iptables_rules,
    ufw_expected,
)
from support.tools import needs_root, tool
from support.ufw import fake_ufw, private_copies, ufw_calls

pytestmark = needs_root(
    "this test loads rules into netfilter (nft, iptables-restore, ufw) in a network "
    "namespace, or runs the ufw script's root-only path, to check the rules against the kernel"
)

# ---------------------------------------------------------------- nftables


@pytest.mark.parametrize("case", CLIENTS)
def test_nft_syntax_check(rules_dir, case):
    """nft -c -f accepts the file (parsed and checked by the kernel, nothing applied)."""
    nft = tool("nft", "nftables")
    run([nft, "-c", "-f", str(rules_dir("nftables", case) / f"{PROJECT}.nft")])


OTHER_TOOLS = """\
table ip fwtest_docker_like {
    chain forward {
        type filter hook forward priority filter; policy accept;
    }
}
table inet fwtest_f2b_like {
    set banned {
        type ipv4_addr
        elements = { 203.0.113.66 }
    }
    chain input {
        type filter hook input priority filter - 1; policy accept;
        ip saddr @banned drop
    }
}
"""


@pytest.mark.parametrize("case", CLIENTS)
def test_nft_loads_in_netns_beside_other_tables(rules_dir, case, tmp_path):
    """Loaded for real in a throwaway namespace, twice, next to other tools' tables.

    The second load proves the delete-and-recreate idiom works when the table
    already exists; the other tables must come through both loads unchanged.
    """
    _, v4, v6 = CLIENTS[case]
    nft = tool("nft", "nftables")
    rules_file = rules_dir("nftables", case) / f"{PROJECT}.nft"
    others = tmp_path / "others.nft"
    others.write_text(OTHER_TOOLS)

    with netns() as in_ns:
        in_ns(nft, "-f", str(others))
        before = in_ns(nft, "list", "table", "inet", "fwtest_f2b_like").stdout
        in_ns(nft, "-f", str(rules_file))
        in_ns(nft, "-f", str(rules_file))

        tables = {
            (item["table"]["family"], item["table"]["name"])
            for item in json.loads(in_ns(nft, "-j", "list", "tables").stdout)["nftables"]
            if "table" in item
        }
        assert tables == {
            ("ip", "fwtest_docker_like"),
            ("inet", "fwtest_f2b_like"),
            ("inet", TABLE),
        }
        assert in_ns(nft, "list", "table", "inet", "fwtest_f2b_like").stdout == before

        listing = in_ns(nft, "list", "table", "inet", TABLE).stdout
        objects = json.loads(in_ns(nft, "-j", "list", "table", "inet", TABLE).stdout)["nftables"]

        chains = {o["chain"]["name"]: o["chain"] for o in objects if "chain" in o}
        assert {name: (c["hook"], c["policy"]) for name, c in chains.items()} == {
            "input": ("input", "drop"),
            "forward": ("forward", "drop"),
            "output": ("output", "accept"),
        }
        rules = [o["rule"] for o in objects if "rule" in o]
        assert len(rules) >= 15
        for rule in rules:
            assert rule.get("comment"), f"rule without a comment in chain {rule['chain']}"

        sets = {o["set"]["name"]: o["set"] for o in objects if "set" in o}
        expected_sets = {"ssh_meter_v4", "ssh_meter_v6"}
        expected_sets |= {"trusted_clients_v4"} if v4 else set()
        expected_sets |= {"trusted_clients_v6"} if v6 else set()
        assert set(sets) == expected_sets
        for family, entries in (("v4", v4), ("v6", v6)):
            if entries:
                elements = re.search(
                    rf"set trusted_clients_{family} \{{.*?elements = \{{ ([^}}]*) \}}",
                    listing,
                    re.DOTALL,
                ).group(1)
                assert [e.strip() for e in elements.split(",")] == entries

        assert re.search(
            rf"tcp dport {SSH_PORT} ct state new update @ssh_meter_v4 "
            r"\{ ip saddr limit rate over 10/minute \} counter packets \d+ bytes \d+ drop",
            listing,
        )
        if not (v4 or v6):
            assert not PORT_RE.search(listing), "internal port in the loaded ruleset"
        check_internal_port_nft(listing, v4, v6)

        # Removing our table leaves the others alone, too.
        in_ns(nft, "delete", "table", "inet", TABLE)
        left = in_ns(nft, "list", "tables").stdout.split("\n")
        assert sorted(filter(None, left)) == [
            "table inet fwtest_f2b_like",
            "table ip fwtest_docker_like",
        ]


SERVER = """
import socket, sys
server = socket.socket(socket.AF_INET6)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("2001:db8:1::1", 80))
server.listen()
server.settimeout(20)
print("listening", flush=True)
conn, _ = server.accept()
conn.sendall(b"ok")
conn.close()
"""


CLIENT = """
import socket
with socket.create_connection(("2001:db8:1::1", 80), timeout=5) as conn:
    print(conn.recv(2).decode())
"""


@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_ipv6_neighbour_discovery_passes(rules_dir, backend):
    """With the rules loaded, a neighbour can still resolve this host over IPv6.

    Two namespaces joined by a veth pair, no neighbour cache entries: the
    client's TCP connection to port 80 only works if the server accepts and
    answers neighbour solicitations. Not a port scan, just the ICMPv6 rules.
    """
    folder = rules_dir(backend, "none")
    ip = tool("ip", "iproute2")
    with netns() as server_ns, netns() as client_ns:
        run(
            [
                ip,
                "link",
                "add",
                "fwt-s",
                "netns",
                server_ns.name,
                "type",
                "veth",
                "peer",
                "name",
                "fwt-c",
                "netns",
                client_ns.name,
            ]
        )
        for in_ns, dev, address in (
            (server_ns, "fwt-s", "2001:db8:1::1"),
            (client_ns, "fwt-c", "2001:db8:1::2"),
        ):
            in_ns(ip, "link", "set", "lo", "up")
            in_ns(ip, "addr", "add", f"{address}/64", "dev", dev, "nodad")
            in_ns(ip, "link", "set", dev, "up")
        if backend == "nftables":
            server_ns(tool("nft", "nftables"), "-f", str(folder / f"{PROJECT}.nft"))
        else:
            server_ns(tool("iptables-restore", "iptables"), str(folder / "rules.v4"))
            server_ns(tool("ip6tables-restore", "iptables"), str(folder / "rules.v6"))

        server = subprocess.Popen(
            [ip, "netns", "exec", server_ns.name, sys.executable, "-c", SERVER],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout.readline().strip() == "listening", server.stderr.read()
            answer = client_ns(sys.executable, "-c", CLIENT, check=False)
            assert answer.returncode == 0, answer.stderr
            assert answer.stdout.strip() == "ok"
        finally:
            server.kill()
            server.communicate()
        neighbours = client_ns(ip, "-6", "neigh", "show", "2001:db8:1::1").stdout
        assert "lladdr" in neighbours


# ---------------------------------------------------------------- iptables


@pytest.mark.parametrize("case", CLIENTS)
def test_iptables_restore_test(rules_dir, case):
    """iptables-restore --test and ip6tables-restore --test accept the files."""
    folder = rules_dir("iptables", case)
    run([tool("iptables-restore", "iptables"), "--test", str(folder / "rules.v4")])
    run([tool("ip6tables-restore", "iptables"), "--test", str(folder / "rules.v6")])


@pytest.mark.parametrize("case", CLIENTS)
def test_iptables_apply_in_netns(rules_dir, case):
    """Both files load for real in a throwaway namespace and read back as written."""
    _, v4, v6 = CLIENTS[case]
    folder = rules_dir("iptables", case)
    with netns() as in_ns:
        for restore, save, name, clients in (
            ("iptables-restore", "iptables", "rules.v4", v4),
            ("ip6tables-restore", "ip6tables", "rules.v6", v6),
        ):
            in_ns(tool(restore, "iptables"), str(folder / name))
            listing = in_ns(tool(save, "iptables"), "-S").stdout.splitlines()
            assert listing[:3] == [
                "-P INPUT DROP",
                "-P FORWARD DROP",
                "-P OUTPUT ACCEPT",
            ]
            loaded = [line for line in listing if line.startswith("-A ")]
            assert len(loaded) == len(iptables_rules(folder / name))
            assert all("--comment" in line for line in loaded)
            internal = [line for line in loaded if PORT_RE.search(line)]
            assert len(internal) == len(clients)


# ---------------------------------------------------------------- ufw


@pytest.mark.parametrize("case", ["none", "mixed"])
def test_ufw_script_runs_what_dry_run_prints(rules_dir, case, tmp_path):
    """As root, the script runs exactly the commands --dry-run prints (against a fake ufw)."""
    _, v4, v6 = CLIENTS[case]
    script = rules_dir("ufw", case) / "ufw-rules.sh"
    env, log = fake_ufw(tmp_path, ipv6="yes")
    printed = run([str(script), "--dry-run"], env=env).stdout.splitlines()
    assert ufw_calls(log) == []
    proc = run([str(script)], env=env)
    calls = ufw_calls(log)
    assert calls == [shlex.split(line) for line in printed] + [["ufw", "status"]]
    assert calls[:-1] == ufw_expected(v4, v6)
    assert proc.stdout.splitlines()[-1].startswith("ufw is not active yet")

    # With IPV6=no it refuses before touching anything if there are IPv6 clients.
    env, log = fake_ufw(tmp_path, ipv6="no")
    log.unlink()
    proc = run([str(script)], env=env, check=False)
    if v6:
        assert proc.returncode == 1
        assert ufw_calls(log) == []
        assert "need IPV6=yes" in proc.stderr.splitlines()[-1]
    else:
        assert proc.returncode == 0
        assert ufw_calls(log)[:-1] == ufw_expected(v4, v6)


@pytest.mark.parametrize("case", ["none", "mixed"])
def test_ufw_script_with_real_ufw_in_sandbox(rules_dir, case, tmp_path):
    """The real ufw, in a throwaway network and mount namespace over copies of its config.

    First run adds the rules, a second run adds nothing, then ufw is enabled
    and the loaded rules are read back. The host's /etc/ufw is left as it was.
    """
    tool("ufw", "ufw")
    _, v4, v6 = CLIENTS[case]
    script = shlex.quote(str(rules_dir("ufw", case) / "ufw-rules.sh"))
    unshare = tool("unshare", "util-linux")
    host_before = digest("/etc/ufw", "/etc/default/ufw")
    mounts = private_copies(tmp_path, ["etc-ufw", "default-ufw"])
    steps = " && ".join(
        [
            *mounts,
            f"{script} > {tmp_path}/first.out",
            f"{script} > {tmp_path}/second.out",
            "ufw --force enable >/dev/null",
            f"ufw status > {tmp_path}/status.out",
            f"iptables -S ufw-user-input > {tmp_path}/v4.out",
            f"ip6tables -S ufw6-user-input > {tmp_path}/v6.out",
        ]
    )
    try:
        with netns() as in_ns:
            in_ns(unshare, "--mount", "--propagation", "private", "sh", "-c", steps)
    finally:
        assert digest("/etc/ufw", "/etc/default/ufw") == host_before
    check_sandbox_outputs(tmp_path, v4, v6)


def check_sandbox_outputs(tmp_path, v4, v6):
    """What the two runs printed, and the rules ufw then had loaded."""
    first = (tmp_path / "first.out").read_text()
    second = (tmp_path / "second.out").read_text()
    rule_count = 3 + len(v4) + len(v6)
    assert first.count("Rules updated") >= rule_count
    assert "Rules updated" not in second, "second run changed rules"
    assert second.count("Skipping adding existing rule") >= rule_count

    status = (tmp_path / "status.out").read_text()
    assert status.startswith("Status: active")
    assert re.search(rf"^{SSH_PORT}/tcp\s+LIMIT(?: IN)?\s+Anywhere\s+# ssh", status, re.MULTILINE)
    assert re.search(
        rf"^{SSH_PORT}/tcp \(v6\)\s+LIMIT(?: IN)?\s+Anywhere \(v6\)",
        status,
        re.MULTILINE,
    )
    for client in v4 + v6:
        assert re.search(
            rf"^{INTERNAL_PORT}/tcp\s+ALLOW(?: IN)?\s+{re.escape(client)}\s+#",
            status,
            re.MULTILINE,
        )
    for name, clients in (("v4.out", v4), ("v6.out", v6)):
        loaded = (tmp_path / name).read_text().splitlines()
        internal = [line for line in loaded if PORT_RE.search(line)]
        assert len(internal) == len(clients)
        for line, client in zip(internal, clients, strict=True):
            assert f"-s {client}" in line
