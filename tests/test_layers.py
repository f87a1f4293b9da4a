"""The package's import graph: no module imports one that imports it back (a cycle makes the
order of imports matter and hides which layer depends on which)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).parents[1] / "src"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """artstyle modules imported anywhere in ``path`` (lazy imports inside functions included)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.startswith("artstyle"):
                found.add(base)
                found |= {f"{base}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("artstyle")}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in (SRC / "artstyle").rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def test_no_two_modules_import_each_other():
    graph = import_graph()
    pairs = sorted({tuple(sorted((a, b))) for a, targets in graph.items() for b in targets if a in graph.get(b, ())})
    # A package's __init__ re-exporting its modules is not a cycle of code.
    pairs = [p for p in pairs if not any(graph_is_package(m) for m in p)]
    assert not pairs, f"modules that import each other: {pairs}"


def graph_is_package(name: str) -> bool:
    return (SRC / Path(*name.split(".")) / "__init__.py").is_file()


def test_the_known_cycles_stay_broken():
    graph = import_graph()
    assert "artstyle.commands.predict" not in graph["artstyle.explain"]
    assert "artstyle.data.scanner" not in graph["artstyle.data.manifest"]
