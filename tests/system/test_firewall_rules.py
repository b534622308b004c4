"""The firewall rules in deploy/firewall/ for each backend: nftables, iptables, ufw.

Every case bakes the real template with pytest-cookies. The text checks run
anywhere. The checks that need the kernel (nft, iptables-restore, ufw) need
root. Only the check modes (nft -c, iptables-restore --test) run in the host's
namespace; rules are loaded for real only inside network namespaces made here
and deleted afterwards, and ufw runs for real only over copies of its config,
so the host's own firewall is never changed. Every other run of the ufw script
finds a recording fake ufw first on PATH. Addresses are documentation ranges.
"""

import contextlib
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

TEMPLATE = Path(__file__).resolve().parent.parent

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

needs_root = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="not root: this test loads rules into netfilter (nft, iptables-restore, ufw) "
    "in a network namespace, or runs the ufw script's root-only path; run the tests "
    "as root (CI does) to check the rules against the kernel",
)


# ---------------------------------------------------------------- helpers


def tool(name, package):
    """Path of a command; a missing one is a failure, not a skip."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    path = shutil.which(name, path=search)
    if path is None:
        pytest.fail(
            f"{name} not found: install it (apt-get install -y {package}); CI does"
        )
    return path


def run(cmd, *, check=True, **kwargs):
    proc = subprocess.run(
        cmd, check=False, capture_output=True, text=True, timeout=120, **kwargs
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"{shlex.join(map(str, cmd))} exited {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


@contextlib.contextmanager
def netns():
    """A fresh, empty network namespace; yields a runner for commands in it."""
    ip = tool("ip", "iproute2")
    name = f"fwtest-{secrets.token_hex(6)}"
    run([ip, "netns", "add", name])
    try:

        def in_ns(*cmd, **kwargs):
            return run([ip, "netns", "exec", name, *cmd], **kwargs)

        in_ns.name = name
        yield in_ns
    finally:
        subprocess.run([ip, "netns", "delete", name], capture_output=True, check=False)


@pytest.fixture(scope="module")
def bake(cookies_session):
    """bake(backend, case) -> deploy/firewall/<backend> of a baked project (cached)."""
    cache = {}

    def _bake(backend, case, **extra):
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
            result = cookies_session.bake(extra_context=context, template=str(TEMPLATE))
            assert result.exception is None, f"bake failed: {result.exception!r}"
            assert result.exit_code == 0
            folder = Path(result.project_path) / "deploy" / "firewall" / backend
            assert folder.is_dir(), f"{folder} missing"
            cache[key] = folder
        return cache[key]

    return _bake


def rule_lines_nft(text):
    """The rule lines inside the chains of an nft file or listing."""
    rules, in_chain = [], False
    for line in text.splitlines():
        stripped = line.strip()
        if re.match(r"chain \S+ \{$", stripped):
            in_chain = True
        elif in_chain and stripped == "}":
            in_chain = False
        elif (
            in_chain
            and stripped
            and not re.match(r"(type \w+ hook|comment \")", stripped)
        ):
            rules.append(stripped)
    return rules


def check_internal_port_nft(text, v4, v6):
    """The internal port shows up only in rules that match a trusted set."""
    lines = [line.strip() for line in text.splitlines() if PORT_RE.search(line)]
    lines = [line for line in lines if not line.startswith("#")]
    expected = []
    if v4:
        expected.append(
            f"ip saddr @trusted_clients_v4 tcp dport {INTERNAL_PORT} accept"
        )
    if v6:
        expected.append(
            f"ip6 saddr @trusted_clients_v6 tcp dport {INTERNAL_PORT} accept"
        )
    assert [line.split(" comment ")[0] for line in lines] == expected


# ---------------------------------------------------------------- all backends


@pytest.mark.parametrize("case", CLIENTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_rendered_files_are_clean(bake, backend, case):
    """No Jinja left over, tidy whitespace, a README, and the port numbers filled in."""
    folder = bake(backend, case)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    assert folder / "README.md" in files
    for path in files:
        text = path.read_text()
        for marker in ("{{", "}}", "{%", "%}", "{#", "#}"):
            assert marker not in text, f"{path.name}: leftover {marker!r}"
        assert text.endswith("\n"), f"{path.name}: no newline at the end"
        assert not text.endswith("\n\n"), f"{path.name}: blank line at the end"
        assert "\n\n\n" not in text, f"{path.name}: two blank lines in a row"
        for number, line in enumerate(text.splitlines(), 1):
            assert line == line.rstrip(), f"{path.name}:{number}: trailing whitespace"
        if path.suffix != ".md":
            assert not text.startswith("\n"), f"{path.name} starts with a blank line"
            assert str(SSH_PORT) in text


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_the_chosen_backend_is_kept(bake, backend):
    """The post-generation hook leaves just one backend's folder under deploy/firewall."""
    firewall = bake(backend, "mixed").parent
    assert sorted(p.name for p in firewall.iterdir() if p.is_dir()) == [backend]


@pytest.mark.parametrize("backend", BACKENDS)
def test_default_context_renders(bake, backend, tmp_path):
    """The defaults of cookiecutter.json (ssh 22, internal 8001, no clients) render too."""
    folder = bake(backend, "none", ssh_port=22, internal_port=8001)
    text = "".join(p.read_text() for p in folder.iterdir() if p.name != "README.md")
    assert "{{" not in text
    assert "{%" not in text
    if backend == "ufw":
        # The script knows the port (--help shows it); the commands must not use it.
        env, log = fake_ufw(tmp_path)
        text = run([str(folder / "ufw-rules.sh"), "--dry-run"], env=env).stdout
        assert ufw_calls(log) == []
    assert re.search(r"\b22/tcp\b" if backend == "ufw" else r"\b22\b", text)
    assert not re.search(r"\b8001\b", text), (
        "internal port opened without trusted clients"
    )


# ---------------------------------------------------------------- nftables


@pytest.mark.parametrize("case", CLIENTS)
def test_nft_file_text(bake, case):
    """Own table only, no flush, every rule commented, the internal port only with the sets."""
    _, v4, v6 = CLIENTS[case]
    text = (bake("nftables", case) / f"{PROJECT}.nft").read_text()
    code = "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("#")
    )

    assert text.startswith("#!/usr/sbin/nft -f\n")
    assert "flush" not in code
    tables = re.findall(r"^\s*(?:delete\s+)?table\s+(\w+)\s+(\S+)", code, re.MULTILINE)
    assert set(tables) == {("inet", TABLE)}, tables
    # create-if-missing, delete, recreate: in that order, before anything else
    statements = [line.strip() for line in code.splitlines() if line.strip()]
    assert statements[:3] == [
        f"table inet {TABLE} {{}}",
        f"delete table inet {TABLE}",
        f"table inet {TABLE} {{",
    ]

    rules = rule_lines_nft(code)
    assert len(rules) >= 15
    for rule in rules:
        assert re.search(r' comment "[^"]+"$', rule), f"rule without a comment: {rule}"
    for chain, policy in (("input", "drop"), ("forward", "drop"), ("output", "accept")):
        assert re.search(
            rf"chain {chain} \{{\n(?:\s*comment \"[^\"]+\"\n)?"
            rf"\s*type filter hook {chain} priority filter; policy {policy};",
            code,
        ), f"{chain} chain"

    for needed in (
        'iif "lo" accept',
        "ct state established,related accept",
        "ct state invalid drop",
        "icmp type echo-request limit rate",
        "packet-too-big",
        "nd-neighbor-solicit",
        "nd-neighbor-advert",
        "nd-router-advert",
        "nd-router-solicit",
        (
            f"tcp dport {SSH_PORT} ct state new update @ssh_meter_v4 "
            "{ ip saddr limit rate over 10/minute"
        ),
        f"tcp dport {SSH_PORT} ct state new update @ssh_meter_v6 ",
        f"tcp dport {SSH_PORT} accept",
        "tcp dport { 80, 443 } accept",
    ):
        assert any(needed in rule for rule in rules), f"missing: {needed}"

    for family, entries in (("v4", v4), ("v6", v6)):
        if entries:
            assert f"set trusted_clients_{family} {{" in code
            assert f"elements = {{ {', '.join(entries)} }}" in code
        else:
            assert f"trusted_clients_{family}" not in code
    if not (v4 or v6):
        assert not PORT_RE.search(text), (
            "internal port mentioned without trusted clients"
        )
    check_internal_port_nft(text, v4, v6)


@needs_root
@pytest.mark.parametrize("case", CLIENTS)
def test_nft_syntax_check(bake, case):
    """nft -c -f accepts the file (parsed and checked by the kernel, nothing applied)."""
    nft = tool("nft", "nftables")
    run([nft, "-c", "-f", str(bake("nftables", case) / f"{PROJECT}.nft")])


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


@needs_root
@pytest.mark.parametrize("case", CLIENTS)
def test_nft_loads_in_netns_beside_other_tables(bake, case, tmp_path):
    """Loaded for real in a throwaway namespace, twice, next to other tools' tables.

    The second load proves the delete-and-recreate idiom works when the table
    already exists; the other tables must come through both loads unchanged.
    """
    _, v4, v6 = CLIENTS[case]
    nft = tool("nft", "nftables")
    rules_file = bake("nftables", case) / f"{PROJECT}.nft"
    others = tmp_path / "others.nft"
    others.write_text(OTHER_TOOLS)

    with netns() as in_ns:
        in_ns(nft, "-f", str(others))
        before = in_ns(nft, "list", "table", "inet", "fwtest_f2b_like").stdout
        in_ns(nft, "-f", str(rules_file))
        in_ns(nft, "-f", str(rules_file))

        tables = {
            (item["table"]["family"], item["table"]["name"])
            for item in json.loads(in_ns(nft, "-j", "list", "tables").stdout)[
                "nftables"
            ]
            if "table" in item
        }
        assert tables == {
            ("ip", "fwtest_docker_like"),
            ("inet", "fwtest_f2b_like"),
            ("inet", TABLE),
        }
        assert in_ns(nft, "list", "table", "inet", "fwtest_f2b_like").stdout == before

        listing = in_ns(nft, "list", "table", "inet", TABLE).stdout
        objects = json.loads(in_ns(nft, "-j", "list", "table", "inet", TABLE).stdout)[
            "nftables"
        ]

        chains = {o["chain"]["name"]: o["chain"] for o in objects if "chain" in o}
        assert {name: (c["hook"], c["policy"]) for name, c in chains.items()} == {
            "input": ("input", "drop"),
            "forward": ("forward", "drop"),
            "output": ("output", "accept"),
        }
        rules = [o["rule"] for o in objects if "rule" in o]
        assert len(rules) >= 15
        for rule in rules:
            assert rule.get("comment"), (
                f"rule without a comment in chain {rule['chain']}"
            )

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


@needs_root
@pytest.mark.parametrize("backend", ["nftables", "iptables"])
def test_ipv6_neighbour_discovery_passes(bake, backend):
    """With the rules loaded, a neighbour can still resolve this host over IPv6.

    Two namespaces joined by a veth pair, no neighbour cache entries: the
    client's TCP connection to port 80 only works if the server accepts and
    answers neighbour solicitations. Not a port scan, just the ICMPv6 rules.
    """
    folder = bake(backend, "none")
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


def iptables_rules(path):
    return [line for line in path.read_text().splitlines() if line.startswith("-A ")]


@pytest.mark.parametrize("case", CLIENTS)
def test_iptables_files_text(bake, case):
    """Both files: filter table, DROP policies, commented rules, clients by family."""
    _, v4, v6 = CLIENTS[case]
    folder = bake("iptables", case)
    for name, clients in (("rules.v4", v4), ("rules.v6", v6)):
        text = (folder / name).read_text()
        code = [line for line in text.splitlines() if not line.startswith("#")]
        assert code[:4] == [
            "*filter",
            ":INPUT DROP [0:0]",
            ":FORWARD DROP [0:0]",
            ":OUTPUT ACCEPT [0:0]",
        ], name
        assert code[-1] == "COMMIT"
        rules = iptables_rules(folder / name)
        assert len(rules) == len(code) - 5, f"{name}: a line that is not a rule"
        for rule in rules:
            assert re.search(r'-m comment --comment "[^"]+"', rule), f"{name}: {rule}"
        ssh = [r for r in rules if f"--dport {SSH_PORT} " in r]
        assert len(ssh) == 2
        assert "-m hashlimit" in ssh[0]
        assert "--hashlimit-mode srcip" in ssh[0]
        assert "--hashlimit-above 10/minute" in ssh[0]
        assert ssh[0].endswith("-j DROP")
        assert ssh[1].endswith("-j ACCEPT")
        assert any("--dports 80,443" in r and r.endswith("-j ACCEPT") for r in rules)
        internal = [r for r in rules if PORT_RE.search(r)]
        assert [re.search(r"-s (\S+)", r).group(1) for r in internal] == clients
        if not clients:
            assert not PORT_RE.search(text), (
                f"{name}: internal port without trusted clients"
            )
    v6_text = (folder / "rules.v6").read_text()
    for icmpv6 in (
        "packet-too-big",
        "neighbour-solicitation",
        "neighbour-advertisement",
        "router-advertisement",
        "router-solicitation",
    ):
        assert f"--icmpv6-type {icmpv6} " in v6_text
    assert "--icmp-type" not in v6_text
    assert "icmpv6" not in (folder / "rules.v4").read_text()


@needs_root
@pytest.mark.parametrize("case", CLIENTS)
def test_iptables_restore_test(bake, case):
    """iptables-restore --test and ip6tables-restore --test accept the files."""
    folder = bake("iptables", case)
    run([tool("iptables-restore", "iptables"), "--test", str(folder / "rules.v4")])
    run([tool("ip6tables-restore", "iptables"), "--test", str(folder / "rules.v6")])


@needs_root
@pytest.mark.parametrize("case", CLIENTS)
def test_iptables_apply_in_netns(bake, case):
    """Both files load for real in a throwaway namespace and read back as written."""
    _, v4, v6 = CLIENTS[case]
    folder = bake("iptables", case)
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


def ufw_expected(v4, v6, ssh_port=SSH_PORT):
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


def ufw_defaults(tmp_path, ipv6):
    path = tmp_path / f"default-ufw-{ipv6}"
    path.write_text(f'# test copy\nIPV6={ipv6}\nDEFAULT_INPUT_POLICY="DROP"\n')
    return path


def fake_ufw(folder, ipv6="yes"):
    """An environment whose ufw only records its arguments (and says it is inactive).

    Every run of the script outside the sandbox test uses it, so that even a
    broken --dry-run can never change the host's firewall.
    """
    bin_dir = folder / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = folder / "ufw-calls"
    (bin_dir / "ufw").write_text(
        "#!/bin/sh\n"
        f"printf '%s\\037' \"$@\" >> '{log}'\n"
        f"printf '\\036' >> '{log}'\n"
        'if [ "$*" = status ]; then echo "Status: inactive"; fi\n'
    )
    (bin_dir / "ufw").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "UFW_DEFAULTS_FILE": str(ufw_defaults(folder, ipv6)),
    }
    return env, log


def ufw_calls(log):
    """The argument lists the fake ufw was called with (none if never called)."""
    if not log.exists():
        return []
    records = log.read_text().split("\x1e")[:-1]
    return [["ufw", *record.split("\x1f")[:-1]] for record in records]


@pytest.mark.parametrize("case", CLIENTS)
def test_ufw_script_shellcheck_and_dry_run(bake, case, tmp_path):
    """shellcheck is clean; --dry-run prints exactly the expected ufw commands and runs none."""
    _, v4, v6 = CLIENTS[case]
    script = bake("ufw", case) / "ufw-rules.sh"
    assert os.access(script, os.X_OK), "ufw-rules.sh is not executable"
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    run(
        [
            tool("shellcheck", "shellcheck"),
            "--shell=bash",
            "--severity=style",
            str(script),
        ]
    )

    # The fake ufw on PATH records any call: --dry-run must make none.
    env, log = fake_ufw(tmp_path, ipv6="yes")
    proc = run([str(script), "--dry-run"], env=env)
    printed = [shlex.split(line) for line in proc.stdout.splitlines()]
    assert printed == ufw_expected(v4, v6)
    assert proc.stderr == ""
    assert ufw_calls(log) == [], "--dry-run called ufw"
    if not (v4 or v6):
        assert not PORT_RE.search(proc.stdout)

    # IPV6=no: a warning on stderr, the same commands on stdout.
    env, log = fake_ufw(tmp_path, ipv6="no")
    proc = run([str(script), "-n"], env=env)
    printed = [shlex.split(line) for line in proc.stdout.splitlines()]
    assert printed == ufw_expected(v4, v6)
    assert "warning" in proc.stderr
    assert "IPV6=yes" in proc.stderr
    assert ufw_calls(log) == []


def test_ufw_script_help_and_bad_argument(bake, tmp_path):
    script = bake("ufw", "mixed") / "ufw-rules.sh"
    env, log = fake_ufw(tmp_path)
    proc = run([str(script), "--help"], env=env)
    assert proc.stdout.startswith("Usage: ufw-rules.sh [--dry-run] [--help]")
    assert str(SSH_PORT) in proc.stdout
    assert str(INTERNAL_PORT) in proc.stdout
    proc = run([str(script), "--bogus"], check=False, env=env)
    assert proc.returncode == 2
    assert (
        proc.stderr.splitlines()[0] == "ufw-rules.sh: error: unknown argument: --bogus"
    )
    assert ufw_calls(log) == []


def test_ufw_script_refuses_without_root(bake, tmp_path):
    """Without --dry-run an ordinary user gets one clear line and exit status 1."""
    script = bake("ufw", "mixed") / "ufw-rules.sh"
    if os.geteuid() == 0:
        # Run it as nobody from a copy that nobody can read: in /tmp itself,
        # since pytest's own temporary directories are private to root.
        setpriv = tool("setpriv", "util-linux")
        folder = Path(tempfile.mkdtemp(prefix="fwtest-", dir="/tmp"))
        try:
            folder.chmod(0o755)
            copy = folder / "ufw-rules.sh"
            shutil.copy(script, copy)
            copy.chmod(0o755)
            env, log = fake_ufw(folder)
            cmd = [
                setpriv,
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                str(copy),
            ]
            proc = run(cmd, check=False, cwd="/", env=env)
            calls = ufw_calls(log)
        finally:
            shutil.rmtree(folder)
    else:
        env, log = fake_ufw(tmp_path)
        proc = run([str(script)], check=False, env=env)
        calls = ufw_calls(log)
    assert calls == []
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        (
            "ufw-rules.sh: error: must run as root to change the firewall "
            "(or use --dry-run to only print the commands)"
        )
    ]


@needs_root
@pytest.mark.parametrize("case", ["none", "mixed"])
def test_ufw_script_runs_what_dry_run_prints(bake, case, tmp_path):
    """As root, the script runs exactly the commands --dry-run prints (against a fake ufw)."""
    _, v4, v6 = CLIENTS[case]
    script = bake("ufw", case) / "ufw-rules.sh"
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


def _digest(folder):
    digest = hashlib.sha256()
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            digest.update(str(path).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@needs_root
@pytest.mark.parametrize("case", ["none", "mixed"])
def test_ufw_script_with_real_ufw_in_sandbox(bake, case, tmp_path):
    """The real ufw, in a throwaway network and mount namespace over copies of its config.

    First run adds the rules, a second run adds nothing, then ufw is enabled
    and the loaded rules are read back. The host's /etc/ufw is left as it was.
    """
    if shutil.which("ufw", path=os.environ.get("PATH", "") + ":/usr/sbin") is None:
        pytest.skip(
            "ufw is not installed (apt-get install -y ufw); the dry-run test still ran"
        )
    _, v4, v6 = CLIENTS[case]
    script = bake("ufw", case) / "ufw-rules.sh"
    unshare = tool("unshare", "util-linux")
    etc_copy = tmp_path / "etc-ufw"
    shutil.copytree("/etc/ufw", etc_copy, symlinks=True)
    defaults_copy = tmp_path / "default-ufw"
    defaults = Path("/etc/default/ufw").read_text()
    defaults_copy.write_text(
        re.sub(r"^IPV6=.*$", "IPV6=yes", defaults, flags=re.MULTILINE)
    )
    host_before = _digest("/etc/ufw") + Path("/etc/default/ufw").read_text()

    steps = " && ".join(
        [
            f"mount --bind {shlex.quote(str(etc_copy))} /etc/ufw",
            f"mount --bind {shlex.quote(str(defaults_copy))} /etc/default/ufw",
            f"{shlex.quote(str(script))} > {tmp_path}/first.out",
            f"{shlex.quote(str(script))} > {tmp_path}/second.out",
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
        assert _digest("/etc/ufw") + Path("/etc/default/ufw").read_text() == host_before

    first = (tmp_path / "first.out").read_text()
    second = (tmp_path / "second.out").read_text()
    rule_count = 3 + len(v4) + len(v6)
    assert first.count("Rules updated") >= rule_count
    assert "Rules updated" not in second, "second run changed rules"
    assert second.count("Skipping adding existing rule") >= rule_count

    status = (tmp_path / "status.out").read_text()
    assert status.startswith("Status: active")
    assert re.search(
        rf"^{SSH_PORT}/tcp\s+LIMIT(?: IN)?\s+Anywhere\s+# ssh", status, re.MULTILINE
    )
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
