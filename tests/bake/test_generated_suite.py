"""A generated project installs from its own pyproject.toml and passes its own tests.

Each case runs the project's own CI script, `.ci/run`, as a user's CI would: a
fresh venv, `pip install -e '.[dev]'` (pip's cache is used, so a second run is
quick), ruff, and the whole suite.
"""

import sys

import pytest

from support.processes import run

INSTALL_TIMEOUT = 900
SUITE_TIMEOUT = 1800

CASES = {
    "defaults": {},
    # Also the one case with anonymous reads on: GETs without a token, writes with one.
    "ufw-no-harden-trusted-other-ports-anonymous-reads": {
        "harden": False,
        "firewall": "ufw",
        "trusted_clients": "192.0.2.10, 2001:db8::/64",
        "public_port": "9080",
        "internal_port": "9081",
        "ssh_port": "2222",
        "anonymous_reads": True,
    },
    # The whole suite again on PostgreSQL: private clusters the suite makes itself.
    "postgresql": {"database": "postgresql"},
}


@pytest.mark.parametrize("answers", CASES.values(), ids=CASES.keys())
def test_generated_project_installs_and_passes_its_own_tests(cookies, tmp_path, answers):
    result = cookies.bake(extra_context=answers)
    assert result.exception is None, result.exception
    project = result.project_path

    ci = ["bash", ".ci/run", "--python", sys.executable, "--venv", tmp_path / "venv"]
    # support.run fails the test with everything a failed step printed.
    suite = run(ci, cwd=project, timeout=INSTALL_TIMEOUT + SUITE_TIMEOUT)
    output = suite.stdout + suite.stderr
    print(output[-5000:])
    assert " passed" in output
