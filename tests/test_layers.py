"""The layering of STYLE.md, enforced: a module imports only from layers below it, and sibling
packages of one layer never import each other. Walks the AST of every module in the package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "skillbank"

# Top-level unit of the package -> layer. L0 is ordered within itself (errors < types/events <
# architectures/interfaces) because the Protocols and the registry need the data types.
LAYERS: dict[str, float] = {
    "errors": 0.0,
    "types": 0.1,
    "events": 0.1,
    "architectures": 0.2,
    "interfaces": 0.2,
    "memory": 1,
    "nn": 1,
    "envs": 1,
    "learning": 2,
    "agent": 3,
    "bench": 4,
    "cli": 5,
    "report": 5,
}


def _unit(module_path: Path) -> str:
    rel = module_path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imported_units(tree: ast.AST, module_path: Path) -> set[str]:
    units: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the module's package
                base = module_path.relative_to(PACKAGE).parts[: -node.level]
                if not base:
                    names = [f"skillbank.{alias.name}" for alias in node.names]
                    if node.module:
                        names = [f"skillbank.{node.module}"]
                else:
                    names = [f"skillbank.{base[0]}"]
            else:
                names = [node.module or ""]
                if node.module == "skillbank":
                    names = [f"skillbank.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "skillbank" and len(parts) > 1:
                units.add(parts[1])
    return units


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py")


def test_every_unit_has_a_layer() -> None:
    units = {_unit(p) for p in _modules()}
    assert units <= set(LAYERS), f"give these a layer in test_layers.py: {units - set(LAYERS)}"


@pytest.mark.parametrize("module_path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(module_path: Path) -> None:
    unit = _unit(module_path)
    tree = ast.parse(module_path.read_text(), filename=str(module_path))
    for imported in _imported_units(tree, module_path):
        if imported == unit or imported == "__version__":
            continue
        assert imported in LAYERS, f"{module_path.name} imports unknown unit {imported}"
        assert LAYERS[imported] < LAYERS[unit], (
            f"{module_path.relative_to(PACKAGE)} (layer {LAYERS[unit]}) imports "
            f"skillbank.{imported} (layer {LAYERS[imported]}): imports must point down"
        )
