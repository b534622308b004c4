"""The template's own Python (its tests and the benchmark) stays clean under ruff.

The generated project is linted as baked, by tests/bake/test_bake.py.
"""

import sys

from support.baking import TEMPLATE_DIR
from support.processes import run

OWN_CODE = ["tests", "bench"]


def test_the_templates_own_python_passes_ruff():
    ruff = [sys.executable, "-m", "ruff"]
    run([*ruff, "check", "--no-cache", *OWN_CODE], cwd=TEMPLATE_DIR)
    run([*ruff, "format", "--check", "--no-cache", *OWN_CODE], cwd=TEMPLATE_DIR)
