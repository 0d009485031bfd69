"""The framework stands alone: nothing under eda/ imports the reference shop or the CLI module."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOP_AND_CLI = {"contracts", "workers", "producers", "cli"}


def imported_top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", sorted((ROOT / "eda").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_framework_module_imports_the_shop_or_the_cli(path):
    assert not imported_top_level_names(path) & SHOP_AND_CLI


def test_the_check_sees_an_import_of_the_shop(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from workers.payment import Payment\nimport contracts.events\n")
    assert imported_top_level_names(module) == {"workers", "contracts"}
