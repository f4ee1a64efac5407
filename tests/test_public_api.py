"""`__all__` is the public API: every name in it exists, and nothing public is left out."""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

import skillbank


def _public_modules() -> list[types.ModuleType]:
    mods = [skillbank]
    for info in pkgutil.walk_packages(skillbank.__path__, "skillbank."):
        if info.name.startswith("skillbank.cli"):
            continue
        try:
            mods.append(importlib.import_module(info.name))
        except ImportError as exc:  # an optional extra that is not installed
            pytest.skip(f"{info.name}: {exc}")
    return mods


def test_top_level_all_is_importable() -> None:
    for name in skillbank.__all__:
        assert hasattr(skillbank, name), f"skillbank.__all__ names missing {name}"


@pytest.mark.parametrize("module", _public_modules(), ids=lambda m: m.__name__)
def test_module_all_matches_public_definitions(module: types.ModuleType) -> None:
    if module.__name__.endswith("__init__") or not hasattr(module, "__file__"):
        return
    exported = set(getattr(module, "__all__", []))
    for name in exported:
        assert hasattr(module, name), f"{module.__name__}.__all__ names missing {name}"
    if module.__file__ and module.__file__.endswith("__init__.py") and module is not skillbank:
        return
    defined = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and getattr(value, "__module__", None) == module.__name__
        and isinstance(value, type | types.FunctionType)
    }
    assert defined <= exported, (
        f"{module.__name__}: public but not in __all__: {defined - exported}"
    )
