"""The generated README's "Adding a resource", followed word for word.

A fresh project gets the notes resource exactly as the guide writes it: each
code block whose first line reads `python file=PATH` becomes that file, each
`python append=PATH` goes at the end of that file. Nothing else is edited.
Then the project's own suite must pass (its new tests included), and the
real servers, started on a database the project made before it had notes,
must migrate it, keep its items and serve the notes, document included.
"""

import re
import sqlite3
import sys

from support.baking import bake_ok, default_answers
from support.processes import clean_env, run
from support.stack import Stack

PACKAGE = default_answers()["__package"]
# The budget for a CRUD resource with its tests.
MAX_FILES = 4
MAX_LINES = 160
BLOCK = re.compile(r"^( *)```python (file|append)=(\S+)\n(.*?)^\1```$", re.DOTALL | re.MULTILINE)

SEED = f"""
import sys
from {PACKAGE}.internal import migrations, operations
from {PACKAGE}.internal.runner import Runner
from {PACKAGE}.internal.storage import Storage

storage = Storage(sys.argv[1], migrations.collect(operations.load_units()))
for title in ("made before notes", "still here"):
    Runner(storage).run("items.create", {{"title": title}})
storage.close()
"""


def guide_blocks(readme):
    """(mode, path, text) of each marked block of the guide, dedented as a reader would copy it."""
    section = readme.split("\n## Adding a resource\n", 1)[1].split("\n## ", 1)[0]
    blocks = []
    for indent, mode, path, body in BLOCK.findall(section):
        lines = [line.removeprefix(indent) for line in body.splitlines()]
        blocks.append((mode, path, "\n".join(lines) + "\n"))
    return blocks


def follow_the_guide(project):
    """Write or append each block where it says; {path: lines written}."""
    written = {}
    for mode, path, text in guide_blocks((project / "README.md").read_text("utf-8")):
        target = project / path
        if mode == "append":
            target.write_text(target.read_text("utf-8").rstrip("\n") + "\n\n" + text, "utf-8")
        else:
            assert not target.exists(), f"the guide would overwrite {path}"
            target.write_text(text, "utf-8")
        written[path] = written.get(path, 0) + len(text.strip("\n").splitlines())
    return written


def test_the_guide_adds_a_notes_resource_that_works_end_to_end(cookies, tmp_path, capsys):
    project = bake_ok(cookies).project_path
    state = tmp_path / "stack" / "state"
    env = {**clean_env(), "PYTHONPATH": str(project / "src")}
    run([sys.executable, "-c", SEED, state], env=env, cwd=tmp_path)

    written = follow_the_guide(project)
    with capsys.disabled():
        print(f"\nnotes resource: {len(written)} files, {sum(written.values())} lines: {written}")
    assert len(written) <= MAX_FILES and sum(written.values()) <= MAX_LINES
    assert f"src/{PACKAGE}/contract.py" in written and "tests/test_notes.py" in written

    # The project's own checks, as its README runs them, with the new tests among them.
    ruff = [sys.executable, "-m", "ruff"]
    run([*ruff, "check", "--no-cache", "."], cwd=project)
    run([*ruff, "format", "--check", "--no-cache", "."], cwd=project)
    pytest = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    notes = run([*pytest, "tests/test_notes.py"], env=env, cwd=project)
    assert re.search(r"\b5 passed\b", notes.stdout), notes.stdout
    run(pytest, env=env, cwd=project)

    check_the_running_stack(project, tmp_path / "stack")


def check_the_running_stack(project, work):
    """The real servers on the database made before notes: migrated, items kept, notes
    served. The stack's token has every scope of the contract, the notes' included;
    one minted with the items' scopes alone is refused the notes."""
    stack = Stack(project, PACKAGE, work, harden=True)
    try:
        stack.start()
        assert stack.request("GET", "/api/v1/items/1")[1]["title"] == "made before notes"
        assert stack.request("GET", "/api/v1/items")[1]["total"] == 2
        status, note = stack.request("POST", "/api/v1/notes", {"text": "migrated"})
        assert status == 201 and note["done"] is False
        note_path = f"/api/v1/notes/{note['id']}"
        status, done = stack.request("PUT", note_path, {"text": "migrated", "done": True})
        assert (status, done["done"]) == (200, True)
        assert stack.request("GET", "/api/v1/notes")[1]["notes"] == [done]
        document = stack.request("GET", "/api/v1/openapi.json")[1]
        assert {"/api/v1/notes", "/api/v1/notes/{id}"} <= set(document["paths"])
        assert {"NoteIn", "Note", "NoteList"} <= set(document["components"]["schemas"])
        assert stack.request("DELETE", note_path)[0] == 204
        assert {"notes:read", "notes:write"} <= set(stack.scopes())
        items_only = stack.mint(["items:read", "items:write"])
        refused = stack.fetch("GET", "/api/v1/notes", token=items_only)
        assert (refused.status, refused.json["error"]["code"]) == (403, "insufficient_scope")
        assert stack.fetch("GET", "/api/v1/notes", token=None).status == 401
    finally:
        stack.stop()
    with sqlite3.connect(work / "state" / "items.sqlite3") as conn:
        applied = {row[0] for row in conn.execute("SELECT id FROM schema_migrations")}
    assert {"items.0001", "notes.0001"} <= applied
