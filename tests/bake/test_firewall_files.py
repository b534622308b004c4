"""The firewall rules in deploy/firewall/ for each backend, read as text: nftables,
iptables, ufw.

Every case bakes the real template with pytest-cookies. None of it needs root:
the files are read, and the ufw script runs only with --dry-run or as an
ordinary user, against a recording fake ufw first on PATH. What needs the
kernel is in tests/system/test_firewall_rules.py. Addresses are documentation
ranges.
"""

import os
import re
import shlex
import shutil

import pytest

from support.files import shared_tmp_dir
from support.processes import run
from support.rule_files import (
    BACKENDS,
    CLIENTS,
    INTERNAL_PORT,
    PORT_RE,
    PROJECT,
    SSH_PORT,
    TABLE,
    check_internal_port_nft,
    iptables_rules,
    rule_lines_nft,
    ufw_expected,
)
from support.tools import as_user, tool
from support.ufw import fake_ufw, ufw_calls

# ---------------------------------------------------------------- all backends


@pytest.mark.parametrize("case", CLIENTS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_rendered_files_are_clean(rules_dir, backend, case):
    """No Jinja left over, tidy whitespace, a README, and the port numbers filled in."""
    folder = rules_dir(backend, case)
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
        if path.suffix != ".md" and path.name != "backend.sh":
            assert str(SSH_PORT) in text


@pytest.mark.parametrize("backend", BACKENDS)
def test_only_the_chosen_backend_is_kept(rules_dir, backend):
    """The post-generation hook leaves just one backend's folder under deploy/firewall."""
    firewall = rules_dir(backend, "mixed").parent
    assert sorted(p.name for p in firewall.iterdir() if p.is_dir()) == [backend]


@pytest.mark.parametrize("backend", BACKENDS)
def test_default_context_renders(rules_dir, backend, tmp_path):
    """The defaults of cookiecutter.json (ssh 22, internal 8001, no clients) render too."""
    folder = rules_dir(backend, "none", ssh_port=22, internal_port=8001)
    text = "".join(p.read_text() for p in folder.iterdir() if p.name != "README.md")
    assert "{{" not in text
    assert "{%" not in text
    if backend == "ufw":
        # The script knows the port (--help shows it); the commands must not use it.
        env, log = fake_ufw(tmp_path)
        text = run([str(folder / "ufw-rules.sh"), "--dry-run"], env=env).stdout
        assert ufw_calls(log) == []
    assert re.search(r"\b22/tcp\b" if backend == "ufw" else r"\b22\b", text)
    assert not re.search(r"\b8001\b", text), "internal port opened without trusted clients"


# ---------------------------------------------------------------- nftables


@pytest.mark.parametrize("case", CLIENTS)
def test_nft_file_text(rules_dir, case):
    """Own table only, no flush, every rule commented, the internal port only with the sets."""
    _, v4, v6 = CLIENTS[case]
    text = (rules_dir("nftables", case) / f"{PROJECT}.nft").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))

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
        assert not PORT_RE.search(text), "internal port mentioned without trusted clients"
    check_internal_port_nft(text, v4, v6)


# ---------------------------------------------------------------- iptables


@pytest.mark.parametrize("case", CLIENTS)
def test_iptables_files_text(rules_dir, case):
    """Both files: filter table, DROP policies, commented rules, clients by family."""
    _, v4, v6 = CLIENTS[case]
    folder = rules_dir("iptables", case)
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
            assert not PORT_RE.search(text), f"{name}: internal port without trusted clients"
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


# ---------------------------------------------------------------- ufw


@pytest.mark.parametrize("case", CLIENTS)
def test_ufw_script_shellcheck_and_dry_run(rules_dir, case, tmp_path):
    """shellcheck is clean; --dry-run prints exactly the expected ufw commands and runs none."""
    _, v4, v6 = CLIENTS[case]
    script = rules_dir("ufw", case) / "ufw-rules.sh"
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


def test_ufw_script_help_and_bad_argument(rules_dir, tmp_path):
    script = rules_dir("ufw", "mixed") / "ufw-rules.sh"
    env, log = fake_ufw(tmp_path)
    proc = run([str(script), "--help"], env=env)
    assert proc.stdout.startswith("Usage: ufw-rules.sh [--dry-run] [--help]")
    assert str(SSH_PORT) in proc.stdout
    assert str(INTERNAL_PORT) in proc.stdout
    proc = run([str(script), "--bogus"], check=False, env=env)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[0] == "ufw-rules.sh: error: unknown argument: --bogus"
    assert ufw_calls(log) == []


def test_ufw_script_refuses_without_root(rules_dir, tmp_path):
    """Without --dry-run an ordinary user gets one clear line and exit status 1."""
    script = rules_dir("ufw", "mixed") / "ufw-rules.sh"
    if os.geteuid() == 0:
        # Run it as nobody from a copy that nobody can read.
        with shared_tmp_dir("fwtest-") as folder:
            copy = folder / "ufw-rules.sh"
            shutil.copy(script, copy)
            copy.chmod(0o755)
            env, log = fake_ufw(folder)
            proc = run(as_user([copy]), check=False, cwd="/", env=env)
            calls = ufw_calls(log)
    else:
        env, log = fake_ufw(tmp_path)
        proc = run([script], check=False, env=env)
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
