"""ufw without touching the host's firewall: a recording fake, or the real one over
private copies of its files in a mount namespace of its own.
"""

import contextlib
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from support.files import digest
from support.processes import read_line
from support.tools import tool

# What ufw reads and writes, by the name of its copy.
UFW_FILES = {
    "etc-ufw": Path("/etc/ufw"),
    "default-ufw": Path("/etc/default/ufw"),
    "lib-ufw": Path("/lib/ufw"),
}


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


def private_copies(work, names):
    """Copies in work of the UFW_FILES named, IPV6=yes in the defaults; the shell
    commands that bind-mount them over the originals (in a private mount namespace)."""
    for name in names:
        source = UFW_FILES[name]
        if source.is_dir():
            shutil.copytree(source, work / name, symlinks=True)
        else:
            shutil.copy2(source, work / name)
    defaults = work / "default-ufw"
    if defaults.exists():
        text = re.sub(r"^IPV6=.*$", "IPV6=yes", defaults.read_text(), flags=re.MULTILINE)
        defaults.write_text(text)
    return [
        f"mount --bind {shlex.quote(str(work / name))} {shlex.quote(str(UFW_FILES[name]))}"
        for name in names
    ]


@contextlib.contextmanager
def ufw_sandbox(topo, work):
    """A mount namespace inside the server's network namespace with private copies
    of /etc/ufw, /etc/default/ufw, /lib/ufw and an empty /run; from now on the
    server role runs commands in there. The host's files must not change."""
    nsenter = tool("nsenter", "util-linux")
    tool("ufw", "ufw")
    host_before = digest(*UFW_FILES.values())
    mounts = private_copies(work, UFW_FILES)
    script = (
        "set -e; "
        + "; ".join(mounts)
        + "; mount -t tmpfs -o mode=0755 fwtest-run /run; echo ready $$; exec sleep 100000"
    )
    unshare = ["unshare", "--mount", "--propagation", "private", "sh", "-c"]
    holder = topo.popen(
        "server",
        *unshare,
        script,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = read_line(holder, 15) or ""
        if not line.startswith("ready "):
            holder.kill()
            pytest.fail(f"ufw sandbox did not start: {line!r}\n{holder.stderr.read()}")
        pid = line.split()[1]
        topo.prefix["server"] = [nsenter, f"--target={pid}", "--mount", "--net", "--"]
        yield [work / name for name in UFW_FILES]
    finally:
        holder.kill()
        holder.wait(timeout=10)
        assert digest(*UFW_FILES.values()) == host_before, "the host's ufw files changed"
