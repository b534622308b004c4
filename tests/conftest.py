"""pytest hooks and the fixtures both tiers use; the helpers live in support/.

tests/bake/ bakes the template and checks what it generates, as any user can.
tests/system/ runs what it generates for real: servers, nginx, chromium,
firewall rules in network namespaces, system accounts; much of it needs root.
"""

import tempfile
from pathlib import Path

import pytest

from support.baking import TEMPLATE_DIR
from support.firewall import firewall_baker
from support.rule_files import rules_baker


def pytest_configure(config):
    """Point pytest-cookies at the repository root, wherever pytest was started."""
    if Path(config.option.template).resolve() == Path.cwd().resolve():
        config.option.template = str(TEMPLATE_DIR)


@pytest.fixture(scope="session", autouse=True)
def hook_temp_files(tmp_path_factory):
    """cookiecutter never deletes the hook scripts it writes to the temp directory;
    for bakes in this process (pytest-cookies), that is a directory pytest cleans."""
    saved = tempfile.tempdir
    tempfile.tempdir = str(tmp_path_factory.mktemp("cookiecutter-hooks"))
    yield
    tempfile.tempdir = saved


@pytest.fixture(scope="session")
def default_project(cookies_session):
    """One project baked with the default answers, shared by the tests that run it."""
    result = cookies_session.bake()
    assert result.exception is None, result.exception
    return result.project_path


@pytest.fixture(scope="session")
def postgresql_project(cookies_session):
    """One project baked with database=postgresql, for the tests that run it on PostgreSQL."""
    result = cookies_session.bake(extra_context={"database": "postgresql"})
    assert result.exception is None, result.exception
    return result.project_path


@pytest.fixture(scope="session")
def rules_dir(cookies_session):
    """rules_dir(backend, case, **answers) -> deploy/firewall/<backend> of a project
    baked for the rule file tests, with the trusted clients of CLIENTS[case] (cached)."""
    return rules_baker(cookies_session)


@pytest.fixture(scope="session")
def firewall_dir(cookies_session):
    """firewall_dir(backend) -> deploy/firewall of a project baked for the
    whitelist tests in network namespaces (cached)."""
    return firewall_baker(cookies_session)
