"""The deployment scripts, run for real as root.

setup-user.sh creates a real system account, install.sh builds a real venv
from the system python3, and then both servers run as that account with the
command lines and env files of the systemd units: the internal service gets
the root-only admin.env too, the API does not. root then makes an API token
with the admin command as the installed wrapper runs it, and the API takes it.
Every account, directory and process made here is removed afterwards, and
names are unique per run.

Paths go below a fresh directory in /tmp (both scripts take --root), which
the service account can traverse: pytest's own temporary directories are
private to root.
"""

import json
import os
import pwd
import secrets
import shlex
import shutil
import stat
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from support.baking import default_answers
from support.files import shared_tmp_dir
from support.processes import free_port, run, stop_process, wait_for
from support.systemd import Unit
from support.tools import as_user, needs_root

pytestmark = needs_root("it creates system accounts and runs processes as them")

PROJECT = default_answers()["project"]
PACKAGE = default_answers()["__package"]
PREFIX = PACKAGE.upper()
SYSTEM_PYTHON = "/usr/bin/python3"
UNITS = ("internal", "api")


def owner_and_mode(path):
    info = Path(path).stat()
    user = pwd.getpwuid(info.st_uid).pw_name
    group = Path(path).group()
    return f"{user}:{group} {stat.S_IMODE(info.st_mode):o}"


def shadow_password(name):
    for line in Path("/etc/shadow").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            return fields[1]
    raise AssertionError(f"{name} is not in /etc/shadow")


@pytest.fixture
def deploy_root():
    """The --root of both scripts: a directory the service account can traverse."""
    with shared_tmp_dir("bastion-deploy-") as root:
        yield root


def remove_account(name):
    """Stop whatever runs as name, then remove the account and its group."""
    run(["pkill", "-KILL", "-u", name], check=False)
    run(["userdel", name], check=False)
    run(["groupdel", name], check=False)


@pytest.fixture
def account():
    """A unique account name; the account is removed at the end if it was made."""
    name = "bt" + secrets.token_hex(4)
    try:
        yield name
    finally:
        remove_account(name)


@pytest.fixture
def scripts(default_project, deploy_root):
    """The generated deploy/ scripts, and a world-readable copy of setup-user.sh."""
    deploy = default_project / "deploy"
    readable = deploy_root / "setup-user.sh"
    shutil.copy(deploy / "setup-user.sh", readable)
    readable.chmod(0o755)
    return {"setup": deploy / "setup-user.sh", "install": deploy / "install.sh", "copy": readable}


def test_setup_user_makes_a_locked_system_account_and_a_second_run_changes_nothing(
    scripts, deploy_root, account
):
    first = run([scripts["setup"], "--root", deploy_root, "--user", account], check=False)
    assert first.returncode == 0, first.stderr
    assert "change: useradd --system" in first.stdout

    entry = pwd.getpwnam(account)
    assert entry.pw_shell == "/usr/sbin/nologin"
    assert entry.pw_uid < 1000
    assert entry.pw_dir == str(deploy_root / "var/lib" / PROJECT)
    assert shadow_password(account).startswith(("!", "*"))
    assert run(["id", "-Gn", account], check=False).stdout.split() == [account]
    assert owner_and_mode(deploy_root / "opt" / PROJECT) == "root:root 755"
    assert owner_and_mode(deploy_root / "etc" / PROJECT) == f"root:{account} 750"
    assert owner_and_mode(deploy_root / "var/lib" / PROJECT) == f"{account}:{account} 750"

    second = run([scripts["setup"], "--root", deploy_root, "--user", account], check=False)
    assert second.returncode == 0, second.stderr
    assert not [line for line in second.stdout.splitlines() if line.startswith("change:")]
    assert second.stdout.splitlines()[-1].startswith("nothing to change")


def test_setup_user_dry_run_lists_changes_and_makes_none(scripts, deploy_root, account):
    result = run(
        [scripts["setup"], "--dry-run", "--root", deploy_root, "--user", account], check=False
    )
    assert result.returncode == 0, result.stderr
    assert "would: useradd --system" in result.stdout
    assert run(["getent", "passwd", account], check=False).returncode != 0
    assert sorted(path.name for path in deploy_root.iterdir()) == ["setup-user.sh"]


@pytest.mark.parametrize(
    ("options", "why"),
    [
        (["--shell", "/bin/bash"], "login account"),
        (["--shell", "/usr/sbin/nologin", "--uid", "4242"], "regular account"),
    ],
    ids=["real-shell", "regular-uid"],
)
def test_setup_user_refuses_an_existing_login_account_and_changes_nothing(
    scripts, deploy_root, account, options, why
):
    made = run(["useradd", *options, "--no-create-home", account], check=False)
    assert made.returncode == 0, made.stderr
    before = run(["getent", "passwd", account], check=False).stdout

    result = run([scripts["setup"], "--root", deploy_root, "--user", account], check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("setup-user.sh: error:"), result.stderr
    assert why in lines[0] and account in lines[0]
    assert run(["getent", "passwd", account], check=False).stdout == before
    assert sorted(path.name for path in deploy_root.iterdir()) == ["setup-user.sh"]


def test_setup_user_refuses_to_run_without_root(scripts, deploy_root):
    result = run(as_user([scripts["copy"], "--root", deploy_root]), check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"setup-user.sh: error: run it as root (sudo {scripts['copy']}), or see --dry-run"
    ]


def env_file_values(path):
    values = {}
    for line in Path(path).read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values[key] = value
    return values


def wait_ready(url, processes, timeout=30.0):
    """Wait until url answers 200; a process that exits meanwhile fails the test."""

    def ready():
        for process in processes:
            if process.poll() is not None:
                raise AssertionError(f"{process.args} exited: {process.stderr.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # loopback only
                return answer.status == 200
        except OSError:
            return False

    if not wait_for(ready, timeout, 0.2):
        raise AssertionError(f"{url} not ready after {timeout}s")


@pytest.fixture
def started():
    """Processes started by the test; stopped at the end, even on failure."""
    processes = []
    yield processes
    for process in processes:
        stop_process(process)
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()


def installed_paths(root):
    """Where install.sh puts things, below root."""
    etc = root / "etc" / PROJECT
    return SimpleNamespace(
        opt=root / "opt" / PROJECT,
        etc=etc,
        state=root / "var/lib" / PROJECT,
        env_file=etc / f"{PROJECT}.env",
        admin_env=etc / "admin.env",
        wrapper=root / "usr/local/sbin" / f"{PROJECT}-admin",
        units=root / "etc/systemd/system",
        nginx=root / "etc/nginx",
    )


def check_installed_files(default_project, paths, account):
    """The env files with their secrets, the admin wrapper, units, site and snippets;
    returns the values of both env files."""
    assert owner_and_mode(paths.env_file) == f"root:{account} 640"
    values = env_file_values(paths.env_file)
    assert len(values[f"{PREFIX}_INTERNAL_TOKEN"]) >= 32
    # The admin secret: root's alone, strong, and not the API's secret.
    assert owner_and_mode(paths.admin_env) == "root:root 600"
    admin = env_file_values(paths.admin_env)
    assert list(admin) == [f"{PREFIX}_ADMIN_TOKEN"], admin
    assert len(admin[f"{PREFIX}_ADMIN_TOKEN"]) >= 32
    assert admin[f"{PREFIX}_ADMIN_TOKEN"] != values[f"{PREFIX}_INTERNAL_TOKEN"]
    assert owner_and_mode(paths.wrapper) == "root:root 755"
    for unit in (f"{PROJECT}-api.service", f"{PROJECT}-internal.service"):
        expected = (default_project / "deploy/systemd" / unit).read_text()
        assert (paths.units / unit).read_text() == expected
    site = paths.nginx / "sites-enabled" / f"{PROJECT}.conf"
    assert site.is_symlink() and site.resolve().is_file()
    for scheme in ("https", "http"):
        snippet = paths.nginx / "snippets" / f"{PROJECT}-headers-{scheme}.conf"
        assert owner_and_mode(snippet) == "root:root 644"
        assert "add_header X-Content-Type-Options" in snippet.read_text()
    return values, admin


def admin_command(paths):
    """What the wrapper runs, as it runs it: both env files sourced, then the venv's
    console script (its path mapped below the test root)."""
    lines = paths.wrapper.read_text().splitlines()
    assert lines[0] == "#!/bin/sh"
    assert f". /etc/{PROJECT}/{PROJECT}.env" in lines and f". /etc/{PROJECT}/admin.env" in lines
    assert (
        lines.index("set -a") < lines.index(f". /etc/{PROJECT}/admin.env") < lines.index("set +a")
    )
    execs = [line for line in lines if line.startswith("exec ")]
    assert execs == [f'exec /opt/{PROJECT}/venv/bin/{PROJECT}-admin "$@"'], lines
    console_script = Path(str(paths.opt) + execs[0].split()[1].removeprefix(f"/opt/{PROJECT}"))
    assert console_script.is_file() and os.access(console_script, os.X_OK)
    return [str(console_script)]


def unit_command(default_project, name, paths, account):
    """ExecStart= of a unit, with the paths below the test root."""
    unit = Unit(default_project / f"deploy/systemd/{PROJECT}-{name}.service")
    assert unit.assignments("Service", "User") in ([account], [default_answers()["service_user"]])
    command = shlex.split(unit.assignments("Service", "ExecStart")[0].lstrip("-@:+!"))
    command[0] = command[0].replace(f"/opt/{PROJECT}", str(paths.opt))
    return command


def start_as_account(started, command, account, env):
    started.append(
        subprocess.Popen(
            as_user(command, account, confined=True),
            env=env,
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    )


def post_item(base, title, token=None):
    """POST an item; the status (an error status too)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps({"title": title}).encode()
    request = urllib.request.Request(base + "/api/v1/items", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # loopback only
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def test_install_then_both_servers_run_confined_as_the_service_account(
    default_project, scripts, deploy_root, account, started
):
    install = [scripts["install"], "--root", deploy_root, "--user", account]
    first = run(install, timeout=900, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    paths = installed_paths(deploy_root)
    # The venv's interpreter is the system one, which ProtectHome leaves visible.
    assert os.path.realpath(paths.opt / "venv/bin/python").startswith("/usr/")
    values, admin = check_installed_files(default_project, paths, account)

    second = run(install, timeout=900, check=False)
    assert second.returncode == 0, second.stdout + second.stderr
    assert not [line for line in second.stdout.splitlines() if line.startswith("change:")]
    assert second.stdout.splitlines()[-1].startswith("nothing to change")
    assert env_file_values(paths.env_file) == values
    assert env_file_values(paths.admin_env) == admin

    # The units' command lines and env files, as systemd passes them: both files to
    # the internal service, only the first to the API. Free ports, not the defaults.
    ports = {"PUBLIC_PORT": free_port(), "INTERNAL_PORT": free_port()}
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **values}
    env.update({f"{PREFIX}_{key}": str(value) for key, value in ports.items()})
    commands = {name: unit_command(default_project, name, paths, account) for name in UNITS}
    start_as_account(started, commands["internal"], account, {**env, **admin})
    start_as_account(started, commands["api"], account, env)
    base = f"http://127.0.0.1:{ports['PUBLIC_PORT']}"
    wait_ready(base + "/api/v1/ready", started)

    # root makes a token with the wrapper's command; the API takes it, and nothing without.
    made = run(
        [*admin_command(paths), "tokens", "create", "--name", "deploy test",
         "--scope", "items:read", "--scope", "items:write"],
        env={**env, **admin}, cwd="/", timeout=60,
    )  # fmt: skip
    token = made.stdout.splitlines()[-1]
    assert post_item(base, "refused without a token") == 401
    assert post_item(base, "written by the service account", token) == 201

    # It keeps its data in the state directory.
    uid = pwd.getpwnam(account).pw_uid
    written = [path for path in paths.state.rglob("*") if path.is_file()]
    assert written and all(path.stat().st_uid == uid for path in written)

    # Its processes run with its uid, every gunicorn worker included.
    for process in started:
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
        assert {p.uids().real for p in tree} == {uid}
        assert {p.uids().effective for p in tree} == {uid}

    check_what_the_account_may_touch(deploy_root, paths, account)


def check_what_the_account_may_touch(deploy_root, paths, account):
    secret = deploy_root / "someone-elses.txt"
    secret.write_text("not for the service\n")
    secret.chmod(0o600)
    package_dir = run(
        [paths.opt / "venv/bin/python", "-c",
         f"import {PACKAGE}, os; print(os.path.dirname({PACKAGE}.__file__))"],
        check=False,
    )  # fmt: skip
    probes = {
        "write the state directory": (f"touch {paths.state}/probe", True),
        "write the code": (f"touch {paths.opt}/probe", False),
        "change the installed package": (
            f"echo x >> {package_dir.stdout.strip()}/__init__.py",
            False,
        ),
        "write the configuration": (f"touch {paths.etc}/probe", False),
        "change the env file": (f"echo x >> {paths.env_file}", False),
        "read the env file": (f"cat {paths.env_file} > /dev/null", True),
        "read the admin secret": (f"cat {paths.admin_env} > /dev/null", False),
        "change the admin command": (f"echo x >> {paths.wrapper}", False),
        "read another account's file": (f"cat {secret}", False),
        "read /etc/shadow": ("cat /etc/shadow", False),
    }
    for what, (shell, allowed) in probes.items():
        result = run(as_user(["/bin/sh", "-c", shell], account, confined=True), check=False)
        assert (result.returncode == 0) == allowed, f"{what}: {result.stderr}"


def test_install_dry_run_lists_changes_and_makes_none(scripts, deploy_root, account):
    result = run(
        [scripts["install"], "--dry-run", "--root", deploy_root, "--user", account], check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "would:" in result.stdout
    assert result.stdout.splitlines()[-1] == "dry run: nothing was changed"
    assert run(["getent", "passwd", account], check=False).returncode != 0
    assert sorted(path.name for path in deploy_root.iterdir()) == ["setup-user.sh"]


def test_install_refuses_an_interpreter_under_root_or_home(scripts, deploy_root, account):
    """A venv records where its interpreter lives; ProtectHome would hide it."""
    home = Path(tempfile.mkdtemp(prefix="bastion-python-", dir="/home"))
    try:
        python = home / "python3"
        python.symlink_to(SYSTEM_PYTHON)
        result = run(
            [scripts["install"], "--root", deploy_root, "--user", account, "--python", python],
            check=False,
        )
    finally:
        shutil.rmtree(home)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"install.sh: error: --python: {python} lives under /root or /home, "
        "which the units cannot see"
    ]
    assert sorted(path.name for path in deploy_root.iterdir()) == ["setup-user.sh"]
