"""A generated project installs from its own pyproject.toml and passes its own tests.

Each case builds a fresh venv, installs the project with `pip install -e
'.[dev]'` (pip's cache is used, so a second run is quick) and runs
`python -m pytest -q` inside the project, as its README tells a user to.
"""

import subprocess
import sys

import pytest
from conftest import clean_env

INSTALL_TIMEOUT = 900
SUITE_TIMEOUT = 1800

CASES = {
    "defaults": {},
    "ufw-no-harden-trusted-other-ports": {
        "harden": False,
        "firewall": "ufw",
        "trusted_clients": "192.0.2.10, 2001:db8::/64",
        "public_port": "9080",
        "internal_port": "9081",
        "ssh_port": "2222",
    },
}


def run_step(command, cwd, timeout):
    """Run one step; on failure, fail the test with everything it printed."""
    try:
        completed = subprocess.run(
            command,
            cwd=cwd,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        output = expired.stdout or ""
        if isinstance(output, bytes):  # POSIX hands back the raw partial output
            output = output.decode("utf-8", "replace")
        pytest.fail(f"{command} timed out after {timeout}s\n{output[-20000:]}")
    output = completed.stdout + completed.stderr
    if completed.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, command))} exited {completed.returncode}\n"
            f"{output[-20000:]}",
            pytrace=False,
        )
    return output


@pytest.mark.parametrize("answers", CASES.values(), ids=CASES.keys())
def test_generated_project_installs_and_passes_its_own_tests(
    cookies, tmp_path, answers
):
    result = cookies.bake(extra_context=answers)
    assert result.exception is None, result.exception
    project = result.project_path

    venv = tmp_path / "venv"
    run_step([sys.executable, "-m", "venv", str(venv)], tmp_path, 300)
    python = str(venv / "bin" / "python")
    run_step(
        [
            python,
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-e",
            ".[dev]",
        ],
        project,
        INSTALL_TIMEOUT,
    )
    output = run_step([python, "-m", "pytest", "-q"], project, SUITE_TIMEOUT)
    print(output[-5000:])
    assert " passed" in output
