"""The firewall rule files in deploy/firewall/, baked for each backend and set of
trusted clients, and ways to read them (tests/bake/test_firewall_files.py reads
them as text, tests/system/test_firewall_rules.py loads them into the kernel).

Every run of the ufw script outside the real-ufw sandbox test finds a
recording fake ufw (support/ufw.py) first on PATH. Addresses are
documentation ranges.
"""

import re
import shlex
from pathlib import Path

from support.baking import TEMPLATE_DIR

PROJECT = "fw-check"
TABLE = "fw_check_fw"  # __package + "_fw"
SSH_PORT = 2222
INTERNAL_PORT = 8471  # distinctive: it must not turn up by accident

# name -> (trusted_clients as typed, expected IPv4 entries, expected IPv6 entries)
CLIENTS = {
    "none": ("", [], []),
    "mixed": (
        "192.0.2.10, 198.51.100.0/24, 2001:db8::/64",
        ["192.0.2.10", "198.51.100.0/24"],
        ["2001:db8::/64"],
    ),
    "v4-only": ("  192.0.2.10  ", ["192.0.2.10"], []),
    "v6-only": ("2001:db8::10", [], ["2001:db8::10"]),
}
BACKENDS = ("nftables", "ufw", "iptables")

PORT_RE = re.compile(rf"(?<![\d.:]){INTERNAL_PORT}(?![\d.:])")


def rules_baker(cookies):
    """bake(backend, case, **answers) -> deploy/firewall/<backend> of a baked project (cached)."""
    cache = {}

    def bake(backend, case, **extra):
        key = (backend, case, tuple(sorted(extra.items())))
        if key not in cache:
            context = {
                "project": PROJECT,
                "firewall": backend,
                "trusted_clients": CLIENTS[case][0],
                "ssh_port": SSH_PORT,
                "internal_port": INTERNAL_PORT,
                **extra,
            }
            result = cookies.bake(extra_context=context, template=str(TEMPLATE_DIR))
            assert result.exception is None, f"bake failed: {result.exception!r}"
            assert result.exit_code == 0
            folder = Path(result.project_path) / "deploy" / "firewall" / backend
            assert folder.is_dir(), f"{folder} missing"
            cache[key] = folder
        return cache[key]

    return bake


def rule_lines_nft(text):
    """The rule lines inside the chains of an nft file or listing."""
    rules, in_chain = [], False
    for line in text.splitlines():
        stripped = line.strip()
        if re.match(r"chain \S+ \{$", stripped):
            in_chain = True
        elif in_chain and stripped == "}":
            in_chain = False
        elif in_chain and stripped and not re.match(r"(type \w+ hook|comment \")", stripped):
            rules.append(stripped)
    return rules


def check_internal_port_nft(text, v4, v6):
    """The internal port shows up only in rules that match a trusted set."""
    lines = [line.strip() for line in text.splitlines() if PORT_RE.search(line)]
    lines = [line for line in lines if not line.startswith("#")]
    expected = []
    if v4:
        expected.append(f"ip saddr @trusted_clients_v4 tcp dport {INTERNAL_PORT} accept")
    if v6:
        expected.append(f"ip6 saddr @trusted_clients_v6 tcp dport {INTERNAL_PORT} accept")
    assert [line.split(" comment ")[0] for line in lines] == expected


def iptables_rules(path):
    """The rules (-A lines) of an iptables-restore file."""
    return [line for line in path.read_text().splitlines() if line.startswith("-A ")]


def ufw_expected(v4, v6, ssh_port=SSH_PORT):
    """The ufw commands the script must run (and --dry-run print), as argument lists."""
    commands = [
        "ufw default deny incoming",
        "ufw default deny routed",
        "ufw default allow outgoing",
        f"ufw limit {ssh_port}/tcp comment 'ssh, rate limited per source'",
        "ufw allow 80/tcp comment 'http, served by nginx'",
        "ufw allow 443/tcp comment 'https, served by nginx'",
    ]
    commands += [
        f"ufw allow proto tcp from {client} to any port {INTERNAL_PORT} "
        "comment 'internal service, trusted client'"
        for client in v4 + v6
    ]
    return [shlex.split(command) for command in commands]
