"""Shared helpers for the template's own tests.

The template is the repository root. Every bake and every cookiecutter run
writes into pytest's tmp dirs (pytest-cookies does so by itself; the CLI
helpers here pass --output-dir and a config file whose replay and clone
directories are tmp dirs too), so the tests never write into the repository
or into ~/.cookiecutter*.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

TEMPLATE_DIR = Path(__file__).resolve().parent.parent
COOKIECUTTER_JSON = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text("utf-8"))


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


def clean_env():
    """The environment for child processes: ours, less what would redirect Python."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"):
        env.pop(name, None)
    return env


def default_answers(**overrides):
    """Every answer as cookiecutter would record it with --no-input, plus overrides."""
    answers = {}
    for key, value in COOKIECUTTER_JSON.items():
        if key.startswith("_"):
            continue
        answers[key] = value[0] if isinstance(value, list) else value
    answers.update(overrides)
    if "service_user" not in overrides:
        answers["service_user"] = answers["project"]
    if "__package" not in overrides:
        answers["__package"] = str(answers["project"]).replace("-", "_")
    return answers


class CookiecutterRun:
    """The outcome of one `python -m cookiecutter` process."""

    def __init__(self, completed, output_dir):
        self.returncode = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr
        self.output_dir = output_dir

    def error_lines(self, variable):
        """The hook's error lines about one variable."""
        prefix = f"error: {variable}="
        return [line for line in self.stderr.splitlines() if line.startswith(prefix)]

    def left_behind(self):
        """Whatever the run left in its output directory."""
        return sorted(path.name for path in self.output_dir.iterdir())

    def __repr__(self):
        return (
            f"<cookiecutter exit {self.returncode}>\n"
            f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )


@pytest.fixture
def run_cookiecutter(tmp_path):
    """Run the real cookiecutter CLI on the template, in a subprocess.

    Call it with key=value answers (as a user types them), or with
    replay=dict to hand the hooks exact values that cookiecutter itself never
    renders or converts (the way a replay file or the Python API can); env
    adds environment variables.
    """
    counter = iter(range(1000))

    def run(*answers, replay=None, env=None, flags=(), output_dir=None):
        work = tmp_path / f"run{next(counter)}"
        if output_dir is None:
            output_dir = work / "out"
            output_dir.mkdir(parents=True)
        # cookiecutter writes each hook to a temp file it never deletes: keep them here.
        temp_dir = work / "tmp"
        temp_dir.mkdir(parents=True)
        config = work / "config.yaml"
        config.write_text(
            f'cookiecutters_dir: "{work / "cookiecutters"}"\n'
            f'replay_dir: "{work / "replay"}"\n',
            encoding="utf-8",
        )
        command = [
            sys.executable,
            "-m",
            "cookiecutter",
            "--config-file",
            str(config),
            "--output-dir",
            str(output_dir),
            *flags,
        ]
        if replay is None:
            command += ["--no-input", str(TEMPLATE_DIR), *answers]
        else:
            replay_file = work / "answers.json"
            replay_file.write_text(
                json.dumps({"cookiecutter": replay}, ensure_ascii=False),
                encoding="utf-8",
            )
            command += ["--replay-file", str(replay_file), str(TEMPLATE_DIR)]
        completed = subprocess.run(
            command,
            cwd=work,
            env={**clean_env(), "TMPDIR": str(temp_dir), **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=300,
            check=False,
        )
        return CookiecutterRun(completed, output_dir)

    return run


@pytest.fixture(scope="session")
def default_project(cookies_session):
    """One project baked with the default answers, shared by the tests that run it."""
    result = cookies_session.bake()
    assert result.exception is None, result.exception
    return result.project_path


def _running_stack(default_project, tmp_path_factory, harden):
    from stack import Stack

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
