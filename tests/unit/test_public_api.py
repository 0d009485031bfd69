"""eda's public API is what `from eda import ...` offers and a few documented modules; the reference shop
(contracts/, workers/, producers/) is built on that alone, as any team's service is."""

import ast
import re
from pathlib import Path

import pytest

import eda

ROOT = Path(__file__).resolve().parents[2]
SHOP = ("contracts", "workers", "producers")
PUBLIC_MODULES = {"eda", "eda.fields", "eda.testing", "eda.errors", "eda.commands", "eda.memory"}


def non_public_imports(path: Path) -> list[str]:
    """Each import of eda in a file (at any depth) that reaches past the public API, as written."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "eda" and a.name not in PUBLIC_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "eda":
            if node.module not in PUBLIC_MODULES:
                found.append(f"from {node.module} import ...")
            elif node.module == "eda":
                found += [f"from eda import {a.name}" for a in node.names
                          if a.name not in eda.__all__ and f"eda.{a.name}" not in PUBLIC_MODULES]
    return found


@pytest.mark.parametrize("path", sorted(p for folder in SHOP for p in (ROOT / folder).rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_the_shop_imports_only_eda_public_api(path):
    assert non_public_imports(path) == []


def test_the_check_sees_an_import_past_the_public_api(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("import eda.runtime.runner\nfrom eda import Worker, tail, fields\n"
                      "def f():\n    from eda.store import open_store\n    from eda.testing import TestBus\n")
    assert non_public_imports(module) == ["eda.runtime.runner", "from eda import tail", "from eda.store import ..."]


def test_every_name_eda_offers_loads():
    assert sorted(eda.__all__) == eda.__all__ and set(eda.__all__) <= set(dir(eda))
    for name in eda.__all__:
        assert getattr(eda, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'Runner'"):
        eda.Runner


def test_type_checkers_see_the_names_eda_offers_where_they_load_from():
    """eda's names load lazily (a module __getattr__, opaque to type checkers); its TYPE_CHECKING block
    imports each one, from the module it loads from at run time, so that annotations reach the user."""
    tree = ast.parse((ROOT / "eda" / "__init__.py").read_text())
    [block] = [n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING"]
    seen = {a.name: node.module for node in block.body for a in node.names}
    assert seen == eda._API


def test_the_public_api_is_documented():
    doc = (ROOT / "docs" / "api.md").read_text()
    for module in PUBLIC_MODULES - {"eda"}:
        assert f"`{module}`" in doc or f"{module}." in doc, f"docs/api.md says nothing of {module}"
    for name in eda.__all__:
        assert re.search(rf"\*\*`(eda\.)?{name}\b", doc), f"docs/api.md has no entry for eda.{name}"


def test_the_api_reference_presents_only_public_api():
    # An entry of docs/api.md (**`eda.X...`**) is a name eda offers or a public module, never a path
    # into the machinery (it was eda.tracing.stamp, eda.publishing.partitioning.partition_headers)
    doc = (ROOT / "docs" / "api.md").read_text()
    entries = re.findall(r"\*\*`(eda(?:\.\w+)+)", doc)
    assert entries
    for entry in entries:
        name = entry.split(".")[1]
        assert name in eda.__all__ or f"eda.{name}" in PUBLIC_MODULES and entry.count(".") == 1, entry
    assert "eda.outbox.outbox" not in doc and "eda.tracing.stamp" not in doc


def test_what_the_docs_name_for_events_published_another_way_is_eda_s():
    from eda.outbox.outbox import Scheduled
    from eda.publishing.partitioning import partition_headers
    from eda.tracing import stamp

    assert (eda.stamp, eda.partition_headers, eda.Scheduled) == (stamp, partition_headers, Scheduled)
