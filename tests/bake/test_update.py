"""A generated project takes a later template's change with `cruft update`.

The template, as committed, is copied into a git repository of its own; a
project is made from it with `cruft create` and given an edit of its own; a
later commit changes a template file; `cruft update` must bring that change,
keep the project's edit and its secrets, and leave a project whose suite passes.
"""

import shutil
import sys

from support.baking import TEMPLATE_DIR
from support.processes import clean_env, run

PAGES = "{{cookiecutter.project}}/src/{{cookiecutter.__package}}/api/pages.py"
LATER = "A later release of the template says so here."
GIT = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci"]


def template_repository(work):
    """The template's files as they are now, committed in a repository of their own."""
    repo = work / "template"
    ignored = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".pytest_cache")
    shutil.copytree(TEMPLATE_DIR, repo, ignore=ignored)
    run([*GIT, "init", "-q", "-b", "main"], cwd=repo)
    run([*GIT, "add", "-A"], cwd=repo)
    run([*GIT, "commit", "-q", "-m", "release 1"], cwd=repo)
    return repo


def cruft(*args, cwd):
    return run([sys.executable, "-m", "cruft", *args], cwd=cwd, env=clean_env(), check=False)


def test_cruft_update_brings_a_template_change_and_keeps_the_projects_own(tmp_path):
    repo = template_repository(tmp_path)
    made = cruft("create", "--no-input", f"file://{repo}", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    project = tmp_path / "myservice"
    secrets = (project / ".env").read_text()
    run([*GIT, "init", "-q"], cwd=project)
    run([*GIT, "add", "-A"], cwd=project)
    run([*GIT, "commit", "-q", "-m", "made"], cwd=project)
    with (project / "README.md").open("a") as readme:
        readme.write("\nOur own notes stay.\n")
    run([*GIT, "commit", "-q", "-am", "our edit"], cwd=project)
    assert cruft("check", cwd=project).returncode == 0

    pages = repo / PAGES
    pages.write_text(pages.read_text().replace('"""\n', f'\n\n{LATER}\n"""\n', 1))
    run([*GIT, "commit", "-q", "-am", "release 2"], cwd=repo)
    assert cruft("check", cwd=project).returncode != 0
    updated = cruft("update", "--skip-apply-ask", cwd=project)
    assert updated.returncode == 0, updated.stdout + updated.stderr

    assert LATER in (project / "src" / "myservice" / "api" / "pages.py").read_text()
    assert "Our own notes stay." in (project / "README.md").read_text()
    assert (project / ".env").read_text() == secrets
    assert not list(project.rglob("*.rej"))
    assert cruft("check", cwd=project).returncode == 0
    env = {**clean_env(), "PYTHONPATH": str(project / "src")}
    suite = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x"]
    run(suite, cwd=project, env=env, timeout=900)
