"""Baking the template: its answers, pytest-cookies bakes, and the real cookiecutter CLI.

The template is the repository root. Every bake and every cookiecutter run
writes into pytest's tmp dirs (pytest-cookies does so by itself; the CLI
helper here passes --output-dir and a config file whose replay and clone
directories are tmp dirs too), so the tests never write into the repository
or into ~/.cookiecutter*.
"""

import itertools
import json
import sys
from pathlib import Path

from cookiecutter.environment import StrictEnvironment

from support.processes import clean_env, run

TEMPLATE_DIR = Path(__file__).resolve().parent.parent.parent
COOKIECUTTER_JSON = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text("utf-8"))

# The options that change what is generated, and the values tried of each.
FIREWALLS = COOKIECUTTER_JSON["firewall"]
TRUSTED_CLIENTS = ["", "192.0.2.10, 2001:db8::/64"]
OPTIONS = {
    "harden": [True, False],
    "firewall": FIREWALLS,
    "trusted_clients": TRUSTED_CLIENTS,
    "anonymous_reads": [False, True],
    "database": COOKIECUTTER_JSON["database"],
}


def combination_id(answers):
    """A readable test id: harden=True-nftables-trusted=none-anonymous_reads=False."""
    parts = []
    for name, value in answers.items():
        if name == "firewall":
            parts.append(value)
        elif name == "trusted_clients":
            parts.append(f"trusted={'yes' if value else 'none'}")
        else:
            parts.append(f"{name}={value}")
    return "-".join(parts)


def combinations(*names):
    """Every combination of the named options (default: all of OPTIONS), as answer
    dicts, and their test ids."""
    names = names or tuple(OPTIONS)
    found = [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(OPTIONS[name] for name in names))
    ]
    return found, [combination_id(answers) for answers in found]


# Every combination of the options that change what is generated.
COMBINATIONS, COMBINATION_IDS = combinations()


def default_answers(**overrides):
    """Every answer as cookiecutter would record it with --no-input, plus overrides.

    The derived values (__package, __trusted_clients, ...) are rendered from
    cookiecutter.json's own expressions, as cookiecutter renders them, unless
    overridden: a replay file must hold them too.
    """
    answers = {}
    for key, value in COOKIECUTTER_JSON.items():
        if key.startswith("_"):
            continue
        answers[key] = value[0] if isinstance(value, list) else value
    answers.update(overrides)
    if "service_user" not in overrides:
        answers["service_user"] = answers["project"]
    environment = StrictEnvironment(context={"cookiecutter": COOKIECUTTER_JSON})
    for key, expression in COOKIECUTTER_JSON.items():
        if key.startswith("__") and isinstance(expression, str) and key not in overrides:
            answers[key] = environment.from_string(expression).render(cookiecutter=answers)
    return answers


def bake_ok(cookies, **answers):
    """Bake with the given answers and insist that it worked."""
    result = cookies.bake(extra_context=answers)
    assert result.exception is None, result.exception
    assert result.exit_code == 0
    assert result.project_path.is_dir()
    return result


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


def _answers_source(work, answers, replay):
    """The command line's end: key=value answers, or a replay file holding replay."""
    if replay is None:
        return ["--no-input", str(TEMPLATE_DIR), *answers]
    replay_file = work / "answers.json"
    replay_file.write_text(
        json.dumps({"cookiecutter": replay}, ensure_ascii=False), encoding="utf-8"
    )
    return ["--replay-file", str(replay_file), str(TEMPLATE_DIR)]


def cookiecutter_cli(work, *answers, replay=None, env=None, flags=(), output_dir=None):
    """Run the real cookiecutter CLI on the template in a subprocess, all in work.

    answers are key=value strings, as a user types them; replay=dict instead
    hands the hooks exact values that cookiecutter itself never renders or
    converts (the way a replay file or the Python API can); env adds
    environment variables.
    """
    if output_dir is None:
        output_dir = work / "out"
        output_dir.mkdir(parents=True)
    # cookiecutter writes each hook to a temp file it never deletes: keep them here.
    temp_dir = work / "tmp"
    temp_dir.mkdir(parents=True)
    config = work / "config.yaml"
    config.write_text(
        f'cookiecutters_dir: "{work / "cookiecutters"}"\nreplay_dir: "{work / "replay"}"\n',
        encoding="utf-8",
    )
    command = [sys.executable, "-m", "cookiecutter", "--config-file", config]
    command += ["--output-dir", output_dir, *flags, *_answers_source(work, answers, replay)]
    completed = run(
        command,
        check=False,
        cwd=work,
        env={**clean_env(), "TMPDIR": str(temp_dir), **(env or {})},
        encoding="utf-8",
        errors="replace",
        timeout=300,
    )
    return CookiecutterRun(completed, output_dir)
