"""The package by floors: imports point down a floor, never into another module's private name.

Each folder of ``lib/memrecall`` (and each top-level module) is a floor; a module may import from
its own folder and from the floors below it. The floors, lowest first, are the README's "Layout".
The imports are read with ``ast``, so a violation is found without running anything.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lib" / "memrecall"

FLOORS: tuple[tuple[str, ...], ...] = (
    ("_io",),
    ("runmode", "profiles", "cache"),
    ("data",),
    ("models",),
    ("probes",),
    ("forward",),
    ("lenses",),
    ("interventions",),
    ("analysis",),
    ("report",),
    ("figures",),
    ("jupyter",),
    ("pipeline",),
    ("rendered",),
    ("reproduce",),
)
"""Units (a folder or a top-level module) by floor, lowest first."""

FLOOR = {unit: level for level, units in enumerate(FLOORS) for unit in units}


def _unit(path: Path, package: Path) -> str | None:
    """The unit a source file belongs to; None for the package's own ``__init__``."""
    parts = path.relative_to(package).with_suffix("").parts
    return None if parts == ("__init__",) else parts[0]


def _imported(node: ast.ImportFrom, module_parts: list[str]) -> list[tuple[str, list[str]]]:
    """``(dotted module, names)`` of one ``from`` import, resolved against the importer."""
    if node.level:
        base = module_parts[: len(module_parts) - node.level]
        target = [*base, *(node.module.split(".") if node.module else [])]
    else:
        target = (node.module or "").split(".")
    if target[:1] != ["memrecall"]:
        return []
    names = [alias.name for alias in node.names]
    if node.module is None:  # ``from . import a, b``: each name may be a module
        return [(".".join([*target, name]), []) for name in names]
    return [(".".join(target), names)]


def violations(package: Path = PACKAGE) -> list[str]:
    """Every import of ``package`` that runs up a floor, sideways, or into a private name."""
    found = []
    for path in sorted(package.rglob("*.py")):
        unit = _unit(path, package)
        where = path.relative_to(package.parent)
        if unit is not None and unit not in FLOOR:
            found.append(f"{where}: {unit!r} has no floor (add it to FLOORS and the README)")
            continue
        parts = ["memrecall", *path.relative_to(package).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1] + ["__init__"]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            imports = []
            if isinstance(node, ast.ImportFrom):
                imports = _imported(node, parts)
            elif isinstance(node, ast.Import):
                imports = [(alias.name, []) for alias in node.names
                           if alias.name.split(".")[0] == "memrecall"]
            for module, names in imports:
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                if private:
                    found.append(f"{where}:{node.lineno}: imports private {module}.{private[0]}")
                target = module.split(".")[1:2]
                if unit is None or not target or target[0] == unit:
                    continue  # the package's facade; a module of its own folder
                if target[0] not in FLOOR:
                    found.append(f"{where}:{node.lineno}: imports {module}, which has no floor")
                elif FLOOR[target[0]] >= FLOOR[unit]:
                    found.append(f"{where}:{node.lineno}: {unit} (floor {FLOOR[unit]}) imports "
                                 f"{module} (floor {FLOOR[target[0]]}): imports point down")
    return found


def test_every_import_points_down_and_never_into_a_private_name():
    assert violations() == []


def test_every_folder_and_module_has_a_floor():
    units = {_unit(p, PACKAGE) for p in PACKAGE.rglob("*.py")} - {None}
    assert units <= set(FLOOR)
    assert set(FLOOR) <= units, f"floors without code: {set(FLOOR) - units}"


@pytest.fixture
def copy(tmp_path):
    target = tmp_path / "memrecall"
    shutil.copytree(PACKAGE, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.mark.parametrize(("file", "line", "expected"), [
    ("models/lm.py", "from ..pipeline import runs", "models (floor 3) imports memrecall.pipeline"),
    ("lenses/base.py", "from ..interventions.sweep import SweepConfig", "imports point down"),
    ("analysis/clusters.py", "import memrecall.figures.style", "analysis (floor 8) imports"),
    ("report/paper.py", "from ..analysis.projection import _memorization_groups",
     "imports private memrecall.analysis.projection._memorization_groups"),
    ("figures/style.py", "from .. import pipeline", "imports memrecall.pipeline"),
    ("cache.py", "from .profiles import PROFILES", "cache (floor 1) imports memrecall.profiles"),
])
def test_a_planted_violation_is_found(copy, file, line, expected):
    assert violations(copy) == []
    path = copy / file
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    found = violations(copy)
    assert len(found) == 1 and expected in found[0], found


def test_a_new_folder_must_be_given_a_floor(copy):
    (copy / "extras").mkdir()
    (copy / "extras" / "__init__.py").write_text("")
    assert violations(copy) == ["memrecall/extras/__init__.py: 'extras' has no floor "
                                "(add it to FLOORS and the README)"]
