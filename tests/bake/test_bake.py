"""Every combination of options bakes a clean, lint-free project with its secrets."""

import ast
import fnmatch
import os
import re
import stat
import sys
import tomllib

import jinja2
import pytest

from support.baking import COMBINATION_IDS, COMBINATIONS, COOKIECUTTER_JSON, FIREWALLS, bake_ok
from support.processes import clean_env, code_and_output, run
from support.tools import tool


def text_files(root):
    """(relative path, text) of every file that decodes as UTF-8 text."""
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            yield path.relative_to(root).as_posix(), data.decode("utf-8")
        except UnicodeDecodeError:
            continue


def copy_without_render_patterns(context):
    """The template's _copy_without_render globs, rendered for this bake."""
    patterns = COOKIECUTTER_JSON.get("_copy_without_render", [])
    environment = jinja2.Environment(undefined=jinja2.StrictUndefined)
    return [environment.from_string(pattern).render(cookiecutter=context) for pattern in patterns]


def shell_scripts(root):
    """Every *.sh file, and every other file that starts with a sh/bash shebang."""
    found = []
    for relative, text in text_files(root):
        first_line = text.split("\n", 1)[0]
        if relative.endswith(".sh") or re.match(r"#!\s*/\S*/(env\s+)?(ba|da)?sh\b", first_line):
            found.append(relative)
    return found


# The style guide's bound for one function of the generated code.
MAX_FUNCTION_LINES = 40


def long_functions(source_dir):
    """(file:function, lines) of each function under source_dir longer than the bound,
    its decorators included."""
    found = []
    for path in sorted(source_dir.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                lines = node.end_lineno - first + 1
                if lines > MAX_FUNCTION_LINES:
                    found.append((f"{path.relative_to(source_dir)}:{node.name}", lines))
    return found


SECRET = re.compile(r"[A-Za-z0-9_-]{32,}")


def env_secrets(project_path, package):
    """The generated .env's two secrets, checked for their form:
    {"INTERNAL_TOKEN": ..., "ADMIN_TOKEN": ...}."""
    env_file = project_path / ".env"
    assert env_file.is_file(), ".env was not generated"
    mode = stat.S_IMODE(env_file.stat().st_mode)
    assert mode == 0o600, f".env has mode {mode:o}, not 600"
    lines = env_file.read_text("utf-8").splitlines()
    assert lines[0].startswith("#"), "the .env should open with a comment line"
    secrets = {}
    for key in ("INTERNAL_TOKEN", "ADMIN_TOKEN"):
        name = f"{package.upper()}_{key}"
        values = [line.split("=", 1)[1] for line in lines if line.startswith(f"{name}=")]
        assert len(values) == 1, f"{name} should be set exactly once in .env"
        assert SECRET.fullmatch(values[0]), f"{name}: too short, or not URL-safe base64"
        secrets[key] = values[0]
    # The API drops the admin secret; the same value would hand it the admin's powers.
    assert secrets["ADMIN_TOKEN"] != secrets["INTERNAL_TOKEN"]
    return secrets


def anonymous_reads_default(project, package):
    """The ANONYMOUS_READS default baked into config.py, and the one README's table gives."""
    config = (project / "src" / package / "config.py").read_text("utf-8")
    baked = re.findall(r'^\s*"ANONYMOUS_READS": (True|False),$', config, re.MULTILINE)
    assert len(baked) == 1, "config.py should set the ANONYMOUS_READS default once"
    readme = (project / "README.md").read_text("utf-8")
    row = re.findall(rf"^\| `{package.upper()}_ANONYMOUS_READS` \| `(true|false)` \|", readme, re.M)
    assert len(row) == 1, "README.md should give the ANONYMOUS_READS default once"
    assert row[0] == baked[0].lower()
    return baked[0] == "True"


@pytest.mark.parametrize("answers", COMBINATIONS, ids=COMBINATION_IDS)
def test_every_option_combination_bakes_a_clean_project(cookies, answers):
    result = bake_ok(cookies, **answers)
    project = result.project_path
    package = result.context["__package"]
    firewall, trusted_clients = answers["firewall"], answers["trusted_clients"]

    # Nothing of the template language is left over.
    unrendered = copy_without_render_patterns(result.context)
    for relative, text in text_files(project):
        assert "{{ cookiecutter." not in text, f"{relative}: unrendered variable"
        assert "{{cookiecutter." not in text, f"{relative}: unrendered variable"
        if any(fnmatch.fnmatch(relative, pattern) for pattern in unrendered):
            continue
        assert "{{" not in text, f"{relative}: leftover '{{{{'"
        assert "{%" not in text, f"{relative}: leftover '{{%'"

    # The generated Python passes its own linter and formatter settings.
    ruff = [sys.executable, "-m", "ruff"]
    code, output = code_and_output([*ruff, "check", "--no-cache", "."], cwd=project, timeout=300)
    assert code == 0, f"ruff check failed:\n{output}"
    ruff_format = [*ruff, "format", "--check", "--no-cache", "."]
    code, output = code_and_output(ruff_format, cwd=project, timeout=300)
    assert code == 0, f"ruff format --check failed:\n{output}"

    # Small functions: none in the generated package is over the bound.
    assert long_functions(project / "src") == []

    # Every shell script passes shellcheck (CI installs it: missing is a failure there).
    scripts = shell_scripts(project)
    if scripts:
        shellcheck = tool("shellcheck", "shellcheck")
        lint = [shellcheck, "--external-sources", *scripts]
        code, output = code_and_output(lint, cwd=project, timeout=300)
        assert code == 0, f"shellcheck failed:\n{output}"

    # The secrets exist, private, and are never committed.
    env_secrets(project, package)
    gitignore = (project / ".gitignore").read_text("utf-8").splitlines()
    assert {".env", "/.env"} & {line.strip() for line in gitignore}

    # Only the chosen firewall backend is shipped.
    firewall_dir = project / "deploy" / "firewall"
    for backend in FIREWALLS:
        present = (firewall_dir / backend).exists()
        assert present == (backend == firewall), f"deploy/firewall/{backend}"

    # Anonymous reads are what was answered, and nothing else.
    assert anonymous_reads_default(project, package) is answers["anonymous_reads"]

    # The trusted clients made it into the project.
    if trusted_clients:
        everything = "\n".join(text for _, text in text_files(project))
        assert "192.0.2.10" in everything
        assert "2001:db8::/64" in everything


def test_each_bake_gets_its_own_secrets(cookies):
    first = bake_ok(cookies)
    second = bake_ok(cookies)
    package = first.context["__package"]
    first_secrets = env_secrets(first.project_path, package)
    second_secrets = env_secrets(second.project_path, package)
    for key in ("INTERNAL_TOKEN", "ADMIN_TOKEN"):
        assert first_secrets[key] != second_secrets[key], key


def test_regenerating_over_a_project_keeps_its_secrets(run_cookiecutter):
    """cookiecutter -f over an existing project: the running token and the admin
    secret stay valid."""
    first = run_cookiecutter()
    assert first.returncode == 0, first
    project = first.output_dir / "myservice"
    secrets = env_secrets(project, "myservice")
    (project / ".env").chmod(0o644)
    again = run_cookiecutter(flags=["--overwrite-if-exists"], output_dir=first.output_dir)
    assert again.returncode == 0, again
    assert env_secrets(project, "myservice") == secrets
    assert again.stderr.strip().splitlines() == ["kept the existing .env and its token"]


def test_regenerating_over_a_symlinked_env_is_refused(run_cookiecutter, tmp_path):
    first = run_cookiecutter()
    env_file = first.output_dir / "myservice" / ".env"
    env_file.unlink()
    target = tmp_path / "elsewhere"
    env_file.symlink_to(target)
    again = run_cookiecutter(flags=["--overwrite-if-exists"], output_dir=first.output_dir)
    assert again.returncode != 0
    assert "error: .env exists and is not a regular file; remove it" in again.stderr
    assert not target.exists()


# Free text that tries every way out of a TOML, Python or Markdown string.
# cookiecutter renders command-line and extra_context values as Jinja, so the
# braces are wrapped in {% raw %}: the value that reaches the files holds them.
TRICKY = (
    'It\'s "quoted" \'\'\' """ back\\slash \\n \\u0041 '
    "{% raw %}{{ cookiecutter.project }} {% if x %}{% endraw %} "
    "__import__('os').system('touch \"$BASTION_INJECTION_MARKER\"') "
    "é ü ß 中文 😀 <b>&amp;</b> `tick` $HOME # [x](y)"
)
TRICKY_RENDERED = TRICKY.replace("{% raw %}", "").replace("{% endraw %}", "")


def test_quotes_backslashes_braces_and_unicode_in_free_text_stay_data(
    cookies, tmp_path, monkeypatch
):
    marker = tmp_path / "MARKER"
    monkeypatch.setenv("BASTION_INJECTION_MARKER", str(marker))
    description = "Desc: " + TRICKY
    author = 'Ålice Ö\'Brien "the" author \\ ' + TRICKY
    result = bake_ok(cookies, description=description, author=author)
    project = result.project_path
    package = result.context["__package"]

    # The value that the files must hold, as cookiecutter rendered it.
    assert result.context["description"] == "Desc: " + TRICKY_RENDERED
    expected_author = 'Ålice Ö\'Brien "the" author \\ ' + TRICKY_RENDERED
    assert result.context["author"] == expected_author

    metadata = tomllib.loads((project / "pyproject.toml").read_text("utf-8"))
    assert metadata["project"]["description"] == "Desc: " + TRICKY_RENDERED
    authors = metadata["project"]["authors"]
    assert authors[0]["name"] == expected_author

    # Every module of the generated package imports (which compiles it).
    importer = (
        "import importlib, pkgutil, sys\n"
        f"package = importlib.import_module({package!r})\n"
        "for module in pkgutil.walk_packages(package.__path__, package.__name__ + '.'):\n"
        "    if not module.name.endswith('__main__'):\n"
        "        importlib.import_module(module.name)\n"
        "print('imported', package.__name__)\n"
    )
    env = {**clean_env(), "PYTHONPATH": str(project / "src")}
    env["BASTION_INJECTION_MARKER"] = str(marker)
    run([sys.executable, "-c", importer], cwd=project, env=env, timeout=120)

    # ruff still parses every file (a broken string literal would not).
    ruff_check = [sys.executable, "-m", "ruff", "check", "--no-cache", "."]
    code, output = code_and_output(ruff_check, cwd=project, timeout=300)
    assert code == 0, f"ruff check failed:\n{output}"

    assert not marker.exists(), "text from an answer was executed"
    assert not os.path.exists(project / "MARKER")
