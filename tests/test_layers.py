"""The package's import graph: no module imports one that imports it back (a cycle makes the
order of imports matter and hides which layer depends on which), and the torch-free core
(images, preprocess, infer, system, errors) never reaches the torch engine, by any import path."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """artstyle modules imported anywhere in ``path`` (lazy imports inside functions included)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(parse(path)):
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


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def third_party_imports(path: Path) -> set[str]:
    """Top-level names of the non-artstyle packages ``path`` imports, lazy imports included."""
    found = set()
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
    return found - {"artstyle"}


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
    assert "artstyle.commands.predict" not in graph["artstyle.engine.gradcam"]
    assert "artstyle.data.scanner" not in graph["artstyle.data.manifest"]
    # The dataset tools sit below the Ray scale-out, which uses them, never the other way round.
    assert not {m: graph[m] & {"artstyle.ray"} for m in graph if m.startswith("artstyle.data") and "artstyle.ray" in graph[m]}


CORE = ("artstyle", "artstyle.errors", "artstyle.images", "artstyle.preprocess", "artstyle.system", "artstyle.infer")
ENGINE = ("artstyle.engine", "artstyle.models", "artstyle.commands", "artstyle.serve", "artstyle.data")


def in_package(name: str, packages) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def reachable_from_core(graph: dict[str, set[str]]) -> set[str]:
    """Every artstyle module the core imports, directly or through others (lazily included)."""
    seen = {m for m in graph if m == "artstyle" or in_package(m, CORE[1:])}
    todo = list(seen)
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_the_core_never_reaches_the_engine():
    """What predicting needs stays apart from training, export and Grad-CAM: the core imports
    no engine, models, CLI, server or dataset module, however deep or lazy the import."""
    graph = import_graph()
    reached = reachable_from_core(graph)
    assert "artstyle.infer.predictor" in reached and "artstyle.preprocess" in reached  # the walk sees the core
    assert not sorted(m for m in reached if in_package(m, ENGINE))


def test_the_core_never_imports_torch():
    graph = import_graph()
    modules = {module_name(p): p for p in (SRC / "artstyle").rglob("*.py")}
    offenders = {m: sorted(third_party_imports(modules[m]) & {"torch", "timm", "torchvision", "safetensors"})
                 for m in reachable_from_core(graph)}
    assert not {m: names for m, names in offenders.items() if names}


def test_the_engine_holds_export_and_grad_cam():
    """Layers visible in the tree: export, int8 quantisation and Grad-CAM live in the engine,
    and the predict --explain command only calls the Grad-CAM library."""
    graph = import_graph()
    for name in ("artstyle.export", "artstyle.quantize", "artstyle.explain"):
        assert name not in graph
    assert {"artstyle.engine.export", "artstyle.engine.quantize", "artstyle.engine.gradcam"} <= set(graph)
    assert "artstyle.engine.gradcam" in graph["artstyle.commands.explain"]


def modules_loaded_by(statements: str) -> set[str]:
    """The top-level names in sys.modules after ``statements`` in a fresh interpreter."""
    code = f"import json, sys\n{statements}\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout))


@pytest.mark.parametrize("module, needs, heavy", [
    ("artstyle.engine.calibration", "scipy", {"torch", "timm", "torchvision", "pandas"}),  # numpy and scipy only
    ("artstyle.data.manifest", "pandas", {"torch", "timm", "imagehash", "scipy", "sklearn", "matplotlib"}),  # pandas only
])
def test_a_light_module_of_a_package_imports_only_what_it_needs(module, needs, heavy):
    """The packages' __init__ load their names on first use (PEP 562): importing one module
    does not import its siblings' dependencies."""
    pytest.importorskip(needs, reason=f"{module} needs {needs} (an extra: pip install 'artstyle[data]')")
    loaded = modules_loaded_by(f"import {module}")
    assert "artstyle" in loaded and not loaded & heavy, sorted(loaded & heavy)


def test_the_lazy_packages_keep_their_public_names():
    pytest.importorskip("pandas", reason="needs the data extra: pip install 'artstyle[data]'")
    pytest.importorskip("torch", reason="needs the train extra: pip install 'artstyle[train]'")
    import artstyle.data
    import artstyle.engine

    for package in (artstyle.data, artstyle.engine):
        assert set(package.__all__) <= set(dir(package))
        with pytest.raises(AttributeError):
            package.no_such_name  # noqa: B018
    assert artstyle.data.scan.__module__ == "artstyle.data.scanner"
    assert artstyle.data.SPLITS == ("train", "val", "test")
    # The function, not the module of the same name, even after something imported that module.
    code = ("import types, artstyle.engine.trainer\nfrom artstyle.engine import evaluate, train\n"
            "assert callable(evaluate) and not isinstance(evaluate, types.ModuleType), evaluate\n"
            "assert evaluate.__module__ == 'artstyle.engine.evaluate' and train.__module__ == 'artstyle.engine.trainer'")
    assert modules_loaded_by(code) >= {"torch"}
