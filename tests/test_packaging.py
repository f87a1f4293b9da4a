"""What pyproject.toml declares matches what the code imports."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).parents[1]
SRC = ROOT / "src" / "artstyle"


def declared_requirements() -> dict[str, str]:
    """Normalised distribution name -> its version specifier, core and every extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    found = {}
    for line in lines:
        name, spec = re.match(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*(.*)", line).groups()
        found[re.sub(r"[-_.]+", "-", name).lower()] = spec
    return found


def imported_top_level_modules() -> set[str]:
    names = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"artstyle", "__future__"}


def test_every_third_party_import_is_declared():
    declared = declared_requirements()
    distributions = packages_distributions()
    missing = {}
    for module in sorted(imported_top_level_modules()):
        if module not in distributions and importlib.util.find_spec(module) is None:
            continue  # an extra not installed here: its distribution is unknown (the full install checks it)
        dists = {re.sub(r"[-_.]+", "-", d).lower() for d in distributions.get(module, [module])}
        if not dists & declared.keys():
            missing[module] = sorted(dists)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_numpy_floor_matches_the_numpy_features_used():
    uses_numpy2 = any("bitwise_count" in p.read_text() for p in SRC.rglob("*.py"))
    floor = re.search(r">=\s*(\d+)", declared_requirements()["numpy"])
    assert not uses_numpy2 or int(floor.group(1)) >= 2, "np.bitwise_count needs numpy>=2"


def test_virtual_environments_are_ignored_by_git():
    assert ".venv/" in (ROOT / ".gitignore").read_text().splitlines()
