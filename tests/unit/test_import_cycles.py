"""No import circle inside eda/: a module never imports, even inside a function, a module that comes
back to it. An import moved into a function hides a circle from Python, not from this test. Imports
under ``if TYPE_CHECKING:`` are not counted: they never run, and type checkers follow circles."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def module_names(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of a package folder (``eda/__init__.py`` is ``eda``)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _type_checking_only(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING" or \
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def import_statements(tree: ast.AST):
    """Every import statement, at any depth (functions, classes, try, if), but type checkers' own."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif _type_checking_only(node):
            for child in node.orelse:
                yield from import_statements(ast.Module(body=[child], type_ignores=[]))
        else:
            yield from import_statements(node)


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that ``name`` imports anywhere in its file (functions included):
    ``from a import b`` is an import of module ``a.b`` where that is a module, else of ``a``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in import_statements(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package, one level up per extra dot
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            targets = [f"{origin}.{alias.name}" if f"{origin}.{alias.name}" in modules else origin
                       for alias in node.names]
        for target in targets:
            while target and target not in modules:  # `import eda.x.y` of a name inside eda.x
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    modules = module_names(package)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle through each module that is on one (as a path that ends where it starts), if any."""
    found, done = [], set()
    for start in sorted(graph):
        if start in done:
            continue
        stack, path, on_path = [(start, iter(sorted(graph[start])))], [start], {start}
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
            elif child in on_path:
                found.append(path[path.index(child):] + [child])
            elif child not in done:
                stack.append((child, iter(sorted(graph.get(child, ())))))
                path.append(child)
                on_path.add(child)
    return found


def test_eda_has_no_import_circle():
    circles = cycles(import_graph(ROOT / "eda"))
    assert circles == [], "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_the_check_sees_a_circle_hidden_in_a_function_and_through_relative_imports(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("from . import c\n")
    (package / "sub" / "c.py").write_text("def late():\n    from ..a import thing\n")
    (package / "d.py").write_text("import pkg.a\n")
    (package / "e.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n")
    assert import_graph(package)["pkg.sub.c"] == {"pkg.a"}
    assert import_graph(package)["pkg.e"] == set()  # for type checkers only
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.sub.b", "pkg.sub.c", "pkg.a"]]


def test_a_package_importing_a_name_from_its_own_submodule_is_no_circle_unless_that_comes_back(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from pkg.impl import thing\n")
    (package / "impl.py").write_text("thing = 1\n")
    assert cycles(import_graph(package)) == []
    (package / "impl.py").write_text("from pkg import helper\n")  # back to the package: a circle
    assert cycles(import_graph(package)) == [["pkg", "pkg.impl", "pkg"]]


def rooms_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph of ``graph``'s rooms: a top-level module or subpackage each (``eda.runtime.consumer`` is
    in ``eda.runtime``), an arrow where a module of one imports a module of another."""
    def room(name: str) -> str:
        return ".".join(name.split(".")[:2])

    rooms: dict[str, set[str]] = {}
    for name, imported in graph.items():
        rooms.setdefault(room(name), set()).update(room(i) for i in imported if room(i) != room(name))
    return rooms


def test_no_folder_or_module_of_eda_imports_one_that_imports_it_back():
    # eda.outbox's relay publishes with eda.publishing, so eda.publishing may not write to the outbox
    # (the Producer, which does, stands above both in eda.producer)
    circles = cycles(rooms_graph(import_graph(ROOT / "eda")))
    assert circles == [], "circles between eda's folders and modules:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_the_rooms_check_sees_two_folders_importing_each_other(tmp_path):
    package = tmp_path / "pkg"
    for folder in ("a", "b"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "a" / "one.py").write_text("from pkg.b import two\n")
    (package / "b" / "two.py").write_text("def late():\n    from pkg.a import three\n")
    (package / "a" / "three.py").write_text("")
    assert cycles(import_graph(package)) == []  # no module comes back to itself
    assert cycles(rooms_graph(import_graph(package))) == [["pkg.a", "pkg.b", "pkg.a"]]
