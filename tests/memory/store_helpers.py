"""Deterministic skills for the store tests (also imported by the crash-test writer process)."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import numpy.typing as npt

from skillbank.memory import SkillSpec
from skillbank.types import Provenance

ARCH = "mlp-v1"
CONFIG: dict[str, Any] = {"in_dim": 3, "hidden_dims": [4], "out_dim": 2}
KEY_DIM = 8


def weights_for(seed: int, config: dict[str, Any] | None = None) -> dict[str, npt.NDArray[Any]]:
    """mlp-v1 weights drawn from ``seed`` (same seed, same bits)."""
    cfg = CONFIG if config is None else config
    dims = [cfg["in_dim"], *cfg["hidden_dims"], cfg["out_dim"]]
    rng = np.random.default_rng([seed, 7])
    weights: dict[str, npt.NDArray[Any]] = {}
    for i, (d_in, d_out) in enumerate(itertools.pairwise(dims)):
        weights[f"net.{2 * i}.weight"] = rng.normal(size=(d_out, d_in)).astype(np.float32)
        weights[f"net.{2 * i}.bias"] = rng.normal(size=(d_out,)).astype(np.float32)
    return weights


def key_for(seed: int, dim: int = KEY_DIM) -> npt.NDArray[np.float32]:
    """A (Z,) key drawn from ``seed``."""
    return np.random.default_rng([seed, 11]).normal(size=dim).astype(np.float32)


def spec_for(seed: int, **overrides: Any) -> SkillSpec:
    """A SkillSpec whose key and weights are drawn from ``seed``."""
    fields: dict[str, Any] = {
        "name": f"skill-{seed}",
        "key": key_for(seed),
        "arch_id": ARCH,
        "arch_config": CONFIG,
        "weights": weights_for(seed),
        "provenance": Provenance("test", task=f"task-{seed % 3}", dataset_hash="d" * 64),
        "tags": (f"t{seed % 2}",),
    }
    fields.update(overrides)
    return SkillSpec(**fields)


def same_weights(a: dict[str, npt.NDArray[Any]], b: dict[str, npt.NDArray[Any]]) -> bool:
    """Bit-for-bit equality of two weight dicts."""
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes()
        for k in a
    )
