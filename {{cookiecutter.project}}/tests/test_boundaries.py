"""The process boundary, read from the imports: the two sides share only the contract.

The public API (api/, internal_client.py) never imports the internal service's
modules, and the internal service never imports the API's. What both need
lives in contract.py, protocol.py and the settings modules.
"""

import ast
from pathlib import Path

import pytest

import {{ cookiecutter.__package }} as package

SOURCE = Path(package.__file__).parent
NAME = package.__name__

# module (relative to the package) -> packages it must not import
FORBIDDEN = {
    "api": {f"{NAME}.internal"},
    "internal_client": {f"{NAME}.internal", f"{NAME}.api"},
    "protocol": {f"{NAME}.internal", f"{NAME}.api", f"{NAME}.internal_client"},
    "contract": {f"{NAME}.internal", f"{NAME}.api", f"{NAME}.internal_client"},
    "internal": {f"{NAME}.api", f"{NAME}.internal_client", f"{NAME}.gunicorn_api"},
}


def dotted(path):
    """The module name of a file under the package."""
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path):
    """Every module a file imports, absolute, relative imports resolved."""
    module = dotted(path)
    here = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = here.rsplit(".", node.level - 1)[0] if node.level else ""
            target = ".".join(part for part in (base, node.module) if part)
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def files_of(scope):
    folder = SOURCE / scope
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [SOURCE / f"{scope}.py"]


@pytest.mark.parametrize("scope", FORBIDDEN)
def test_a_side_never_imports_the_other(scope):
    for path in files_of(scope):
        for name in imported(path):
            for forbidden in FORBIDDEN[scope]:
                assert not (name == forbidden or name.startswith(forbidden + ".")), (
                    f"{path.relative_to(SOURCE)} imports {name}"
                )


def test_the_rule_sees_relative_imports():
    # internal/items.py imports "from .. import contract" and "from .tables import Table".
    names = imported(SOURCE / "internal" / "items.py")
    assert {f"{NAME}.contract", f"{NAME}.internal.tables.Table"} <= names
