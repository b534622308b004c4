"""Fixtures of the bake tier."""

import itertools

import pytest

from support.baking import cookiecutter_cli


@pytest.fixture
def run_cookiecutter(tmp_path):
    """Run the real cookiecutter CLI on the template, in a subprocess.

    Call it with key=value answers (as a user types them), or with
    replay=dict to hand the hooks exact values that cookiecutter itself never
    renders or converts (the way a replay file or the Python API can); env
    adds environment variables. Each call works in a directory of its own.
    """
    counter = itertools.count()

    def cli(*answers, replay=None, env=None, flags=(), output_dir=None):
        work = tmp_path / f"run{next(counter)}"
        return cookiecutter_cli(
            work, *answers, replay=replay, env=env, flags=flags, output_dir=output_dir
        )

    return cli
