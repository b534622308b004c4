"""The hardened systemd units in deploy/systemd/, for every combination of options.

Each bake's units go through systemd's own offline checks, which need no
running systemd and no root:

* `systemd-analyze verify` must print nothing. It runs against a root tree
  made here: the units installed where deploy/install.sh puts them, the
  host's own unit files (sysinit.target, network.target, ... that the units
  depend on) and stand-ins for the venv's executables, which verify insists
  exist and are executable.
* `systemd-analyze security --offline=true` must rate the API at most 1.0 and
  the internal service at most 0.5 (0 is fully sandboxed, 10 not at all).

The claims the security model relies on (user, read-only file system,
writable state directory only, no capabilities, IP allow lists, system call
filter, no --user for gunicorn, the admin secret's file named by the internal
unit alone and hidden from the API) are checked by reading the unit files.

anonymous_reads changes no unit: the combinations are those of the other options.
"""

import re
import shutil
from pathlib import Path

import pytest

from support.baking import bake_ok, combinations
from support.processes import clean_env, run
from support.systemd import Unit
from support.tools import tool

PROJECT = "unit-check"
PACKAGE = "unit_check"
SERVICE_USER = "unitcheck_svc"  # not the project name: User= must follow the answer
PUBLIC_PORT = 8472
INTERNAL_PORT = 8473

API = f"{PROJECT}-api.service"
INTERNAL = f"{PROJECT}-internal.service"
SOCKET = f"{PROJECT}-internal.socket"
UNITS = (API, INTERNAL, SOCKET)
VENV_BIN = Path("/opt") / PROJECT / "venv" / "bin"
STATE_DIR = f"/var/lib/{PROJECT}"
ENV_FILE = f"/etc/{PROJECT}/{PROJECT}.env"
ADMIN_ENV = f"/etc/{PROJECT}/admin.env"
UNIT_COMBINATIONS, UNIT_COMBINATION_IDS = combinations("harden", "firewall", "trusted_clients")

# Highest overall exposure systemd-analyze security may report.
MAX_EXPOSURE = {API: 1.0, INTERNAL: 0.5}
EXPOSURE_RE = re.compile(r"Overall exposure level for (\S+): (\d+\.\d)\b")

# Debian 12 merges /lib into /usr/lib; older layouts have only the first.
SYSTEM_UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))

# Set to "yes" in both services.
SANDBOX_FLAGS = (
    "NoNewPrivileges",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "PrivateMounts",
    "PrivateUsers",
    "PrivateIPC",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectClock",
    "ProtectControlGroups",
    "ProtectHostname",
    "RestrictNamespaces",
    "RestrictRealtime",
    "RestrictSUIDSGID",
    "LockPersonality",
    "MemoryDenyWriteExecute",
    "RemoveIPC",
)


# ---------------------------------------------------------------- helpers


def system_unit_dir():
    for directory in SYSTEM_UNIT_DIRS:
        if (directory / "sysinit.target").is_file():
            return directory
    pytest.fail(f"no systemd unit directory with sysinit.target in {SYSTEM_UNIT_DIRS}")


def analyze(*args):
    """Run systemd-analyze with a plain environment: no pager, no colours."""
    env = clean_env()
    env.update({"SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0", "LC_ALL": "C.UTF-8"})
    return run([tool("systemd-analyze", "systemd"), *args], env=env, timeout=60, check=False)


def install_root(tmp_path, project):
    """A root tree holding the units as install.sh leaves them, for verify."""
    root = tmp_path / "root"
    shutil.copytree(system_unit_dir(), root / "usr/lib/systemd/system", symlinks=True)
    unit_dir = root / "etc/systemd/system"
    unit_dir.mkdir(parents=True)
    for name in UNITS:
        shutil.copy2(project / "deploy/systemd" / name, unit_dir / name)
    venv_bin = root / VENV_BIN.relative_to("/")
    venv_bin.mkdir(parents=True)
    for executable in ("gunicorn", "python"):
        stand_in = venv_bin / executable
        stand_in.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
        stand_in.chmod(0o755)
    return root, unit_dir


def trusted_entries(trusted_clients):
    return [entry.strip() for entry in trusted_clients.split(",") if entry.strip()]


# ---------------------------------------------------------------- the test


@pytest.mark.parametrize("answers", UNIT_COMBINATIONS, ids=UNIT_COMBINATION_IDS)
def test_units_verify_clean_and_are_sandboxed(cookies, tmp_path, capsys, answers):
    tool("systemd-analyze", "systemd")
    result = bake_ok(
        cookies,
        project=PROJECT,
        service_user=SERVICE_USER,
        public_port=PUBLIC_PORT,
        internal_port=INTERNAL_PORT,
        **answers,
    )
    harden, firewall = answers["harden"], answers["firewall"]
    trusted_clients = answers["trusted_clients"]
    project = result.project_path
    unit_files = sorted(path.name for path in (project / "deploy/systemd").iterdir())
    assert unit_files == sorted(UNITS)
    root, unit_dir = install_root(tmp_path, project)
    paths = [str(unit_dir / name) for name in UNITS]

    # systemd's own parser: every directive known, every value valid, every
    # executable present. Anything it prints is a problem.
    verify = analyze("verify", f"--root={root}", "--recursive-errors=no", "--no-pager", *paths)
    assert (verify.stdout, verify.stderr) == ("", ""), (
        f"systemd-analyze verify printed:\n{verify.stdout}{verify.stderr}"
    )
    assert verify.returncode == 0

    scores = {}
    for name, limit in MAX_EXPOSURE.items():
        threshold = round(limit * 10)  # --threshold counts tenths
        security = analyze(
            "security",
            "--offline=true",
            f"--root={root}",
            f"--threshold={threshold}",
            "--no-pager",
            str(unit_dir / name),
        )
        found = EXPOSURE_RE.findall(security.stdout)
        assert len(found) == 1, (
            f"no overall exposure for {name}:\n{security.stdout}{security.stderr}"
        )
        unit, score = found[0]
        assert unit == name
        scores[name] = float(score)
        assert scores[name] <= limit, (
            f"{name}: exposure {score} > {limit}:\n{security.stdout}{security.stderr}"
        )
        assert security.returncode == 0, security.stdout + security.stderr
    with capsys.disabled():
        mode = "several hosts" if trusted_clients else "one host"
        print(
            f"\n  systemd-analyze security ({mode}, harden={harden}, {firewall}): "
            + ", ".join(f"{name} {score}" for name, score in scores.items())
        )

    check_unit_structure(unit_dir, trusted_entries(trusted_clients))


def check_unit_structure(unit_dir, clients):
    api = Unit(unit_dir / API)
    internal = Unit(unit_dir / INTERNAL)
    socket = Unit(unit_dir / SOCKET)

    for service in (api, internal):
        name = service.name

        def value(key, service=service):
            return service.value("Service", key)

        def items(key, service=service):
            return service.items("Service", key)

        assert value("User") == SERVICE_USER, name
        assert value("Group") == SERVICE_USER, name
        for flag in SANDBOX_FLAGS:
            assert value(flag) == "yes", f"{name}: {flag}={value(flag)}"
        assert value("ProtectSystem") == "strict", name
        assert value("ProtectProc") == "invisible", name
        assert value("ProcSubset") == "pid", name
        assert value("DevicePolicy") == "closed", name
        assert value("KeyringMode") == "private", name
        # Present and empty: no capability in the bounding or the ambient set.
        for key in ("CapabilityBoundingSet", "AmbientCapabilities"):
            assert service.assignments("Service", key) == [""], f"{name}: {key}"
        assert value("UMask") == "0077", name
        assert set(items("RestrictAddressFamilies")) <= {"AF_INET", "AF_INET6", "AF_UNIX"}, name
        assert items("RestrictAddressFamilies"), name
        assert service.assignments("Service", "SystemCallFilter") == [
            "@system-service",
            "~@privileged @resources",
        ], name
        assert value("SystemCallArchitectures") == "native", name
        assert items("IPAddressDeny") == ["any"], name
        assert value("WorkingDirectory") == "/", name
        assert value("RuntimeDirectory") == PROJECT, name
        assert value("RuntimeDirectoryMode") == "0750", name
        assert value("Restart") == "on-failure", name
        assert value("Type") == "exec", name

    # The API: gunicorn as the service user from the start, nothing writable,
    # loopback peers only.
    exec_start = api.value("Service", "ExecStart").split()
    assert exec_start == [
        str(VENV_BIN / "gunicorn"),
        "-c",
        f"python:{PACKAGE}.gunicorn_api",
    ]
    assert not {"--user", "-u", "--group", "-g"} & set(exec_start)
    assert not any(arg.startswith(("--user=", "--group=")) for arg in exec_start)
    assert api.items("Service", "ReadWritePaths") == []
    assert api.items("Service", "StateDirectory") == []
    assert api.items("Service", "IPAddressAllow") == ["localhost"]
    # The settings, and never the admin secret: its file is not even visible inside.
    assert api.assignments("Service", "EnvironmentFile") == [ENV_FILE]
    assert api.items("Service", "InaccessiblePaths") == [f"-{ADMIN_ENV}"]
    assert SOCKET in api.items("Unit", "After")
    assert SOCKET in api.items("Unit", "Wants")

    # The internal service: writes only its state directory, has no network of
    # its own, and (like its socket) admits loopback and the trusted clients.
    assert internal.value("Service", "ExecStart").split() == [
        str(VENV_BIN / "python"),
        "-m",
        f"{PACKAGE}.internal",
    ]
    assert internal.items("Service", "ReadWritePaths") == [STATE_DIR]
    # The settings, then the admin secret, from the root-only file systemd reads for it.
    assert internal.assignments("Service", "EnvironmentFile") == [ENV_FILE, ADMIN_ENV]
    assert ADMIN_ENV not in " ".join(internal.items("Service", "InaccessiblePaths"))
    assert internal.value("Service", "StateDirectory") == PROJECT
    assert internal.value("Service", "StateDirectoryMode") == "0750"
    assert internal.value("Service", "PrivateNetwork") == "yes"
    assert internal.items("Service", "IPAddressAllow") == ["localhost", *clients]
    assert SOCKET in internal.items("Unit", "Requires")
    assert SOCKET in internal.items("Unit", "After")

    # One listening socket, on loopback; the private address of the
    # several-hosts mode is set at deploy time, never a wildcard here.
    assert socket.items("Socket", "ListenStream") == [f"127.0.0.1:{INTERNAL_PORT}"]
    assert socket.items("Socket", "IPAddressDeny") == ["any"]
    assert socket.items("Socket", "IPAddressAllow") == ["localhost", *clients]
    assert socket.value("Socket", "FreeBind") == ("yes" if clients else None)
    assert socket.value("Socket", "Accept") in (None, "no")
