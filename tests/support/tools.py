"""The system tools and privileges some tests need, with one policy for each.

A missing tool fails the test in CI (the CI environment variable is set), since
.ci/run installs every one of them, and skips it elsewhere, saying which
package to install. A test that needs root skips, saying why, when not run as
root; CI runs as root, so there every such test runs.
"""

import os
import shutil
from pathlib import Path

import pytest

# Where root's tools live, searched after PATH: a test may run with a user's PATH.
SBIN = ("/usr/sbin", "/sbin")
NOBODY = 65534  # uid and gid of nobody and nogroup on Debian


def missing(what, package):
    """Fail in CI, skip elsewhere: what is not installed."""
    message = f"{what} not found: install it (apt-get install -y {package})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must have it")
    pytest.skip(message)


def tool(name, package):
    """Path of a command (a name looked up on PATH and in sbin, or a path)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), *SBIN])
    path = shutil.which(name, path=search)
    if path is None:
        missing(name, package)
    return path


def system_file(path, package):
    """A file a package installs that is not a command, such as an nginx module."""
    if not Path(path).exists():
        missing(path, package)
    return str(path)


def needs_root(why):
    """A mark that skips the test unless it runs as root; why: what needs root."""
    return pytest.mark.skipif(
        os.geteuid() != 0,
        reason=f"needs root: {why}; run the tests as root (CI does)",
    )


def as_user(command, user=NOBODY, *, confined=False):
    """argv that runs command with user's uid and gid (a name or a number), no other group.

    confined: also no capabilities, and no new privileges from setuid programs.
    """
    argv = [
        tool("setpriv", "util-linux"),
        f"--reuid={user}",
        f"--regid={user}",
        "--clear-groups",
    ]
    if confined:
        argv += ["--no-new-privs", "--inh-caps=-all", "--bounding-set=-all"]
    return [*argv, *command]
