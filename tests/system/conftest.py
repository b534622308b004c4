"""Fixtures of the system tier: the default project's servers, running."""

import pytest

from support.baking import default_answers
from support.nginx import front
from support.stack import Stack


def _running_stack(default_project, tmp_path_factory, harden):
    package = default_answers()["__package"]
    work = tmp_path_factory.mktemp("hardened" if harden else "plain")
    stack = Stack(default_project, package, work, harden)
    try:
        yield stack.start()
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def hardened_stack(default_project, tmp_path_factory):
    """The default project's API (harden on) and internal service, running on loopback."""
    yield from _running_stack(default_project, tmp_path_factory, True)


@pytest.fixture(scope="session")
def plain_stack(default_project, tmp_path_factory):
    """The same with harden off, to show that the tests can see the difference."""
    yield from _running_stack(default_project, tmp_path_factory, False)


@pytest.fixture
def make_stack(default_project, tmp_path):
    """make_stack(**settings) -> a Stack of the default project with those extra
    settings, not started yet; all of them stopped at the end, whatever happened."""
    stacks = []

    def make(**settings):
        work = tmp_path / f"stack{len(stacks)}"
        stack = Stack(default_project, default_answers()["__package"], work, True, settings)
        stacks.append(stack)
        return stack

    try:
        yield make
    finally:
        for stack in stacks:
            stack.stop()


@pytest.fixture(scope="module")
def nginx_front(hardened_stack, default_project):
    """nginx with two test copies of the site file: one before the stack, one
    before nothing (support/nginx.py); one per module, with its own rate limit."""
    with front(hardened_stack, default_project) as running_front:
        yield running_front
