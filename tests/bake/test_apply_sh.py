"""apply.sh of each firewall backend, without root: its arguments, its refusal to
run, and the plan --dry-run prints.

What it does as root, in network namespaces, is tested in
tests/system/test_firewall_netns.py. Run as root, these tests run apply.sh as
nobody.
"""

import os
import shutil

import pytest

from support.files import shared_tmp_dir
from support.firewall import BACKENDS, PROJECT, TABLE
from support.processes import run
from support.tools import as_user


@pytest.mark.parametrize("backend", BACKENDS)
def test_apply_sh_help_and_bad_arguments(firewall_dir, backend):
    """--help, and exactly one error line with exit status 2 for each bad argument."""
    script = firewall_dir(backend) / "apply.sh"
    assert os.access(script, os.X_OK), "apply.sh is not executable"
    assert script.read_text().startswith("#!/usr/bin/env bash\n")
    proc = run([script, "--help"])
    assert proc.stdout.startswith("Usage: apply.sh [--check | --confirm-within SECONDS")
    for word in (
        "--check",
        "--confirm-within",
        "--confirm",
        "--rollback",
        "--state-dir",
        "--dry-run",
        f"/run/{PROJECT}-firewall",
    ):
        assert word in proc.stdout
    bad = {
        ("--bogus",): "unknown option: --bogus",
        ("--confirm-within",): "--confirm-within needs a number of seconds",
        ("--confirm-within", "0"): "--confirm-within wants whole seconds from 1 to",
        ("--confirm-within", "soon"): "--confirm-within wants whole seconds",
        ("--check", "--confirm"): "--check and --confirm cannot be combined",
        ("--confirm", "extra.file"): "--confirm takes no files",
        ("--state-dir", "relative"): "--state-dir needs an absolute path",
        ("--check", "a", "b", "c"): "wrong number of files",
    }
    for args, message in bad.items():
        proc = run([script, *args], check=False)
        assert proc.returncode == 2, (args, proc)
        assert proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"apply.sh: error: {message}"), lines
        assert lines[0].endswith("(see --help)")


def run_as_nobody(folder, *args):
    """Run a copy of apply.sh (and its rules) as nobody; without root, as we are."""
    if os.geteuid() != 0:
        return run([folder / "apply.sh", *args], check=False)
    with shared_tmp_dir("fwtest-") as copy:
        shutil.copytree(folder, copy / "firewall")
        for path in [copy / "firewall", *(copy / "firewall").rglob("*")]:
            path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
        return run(as_user([copy / "firewall" / "apply.sh", *args]), check=False, cwd="/")


@pytest.mark.parametrize("backend", BACKENDS)
def test_apply_sh_needs_root_except_dry_run(firewall_dir, backend):
    """Without root: one clear line and exit 1; --dry-run prints the plan and changes nothing."""
    folder = firewall_dir(backend)
    for args in (
        [],
        ["--check"],
        ["--confirm-within", "60"],
        ["--confirm"],
        ["--rollback"],
    ):
        proc = run_as_nobody(folder, *args)
        assert proc.returncode == 1, (args, proc.stderr)
        assert proc.stdout == ""
        assert proc.stderr.splitlines() == [
            "apply.sh: error: must run as root (--dry-run shows what it would do)"
        ]
    proc = run_as_nobody(folder, "--dry-run", "--confirm-within", "60")
    assert proc.returncode == 0, proc.stderr
    plan = proc.stdout
    assert plan.startswith("Dry run: nothing is changed. apply.sh --confirm-within would:")
    assert "rollback timer (setsid nohup)" in plan and "in 60 s" in plan
    expected = {
        "nftables": ["nft -c -f ", f"nft list table inet {TABLE}", "nft -f "],
        "iptables": [
            "iptables-restore --test ",
            "ip6tables-restore --test ",
            "iptables-save -t filter",
            "ip6tables-restore ",
        ],
        "ufw": ["ufw-rules.sh", "ufw --dry-run", "ufw reload"],
    }[backend]
    for fragment in expected:
        assert fragment in plan, fragment
    assert "flush" not in plan
