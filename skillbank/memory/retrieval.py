"""Retrieval scoring as pure functions of arrays: similarity, top-k, attention weights.

Scaled dot-product attention (Vaswani et al., 2017, "Attention Is All You Need") scores a query
q (Z,) against keys K (N, Z) as ``K q / sqrt(Z)``; cosine scores ``K q / (|K| |q|)``. The top k
scores become attention weights by a softmax over the k.

Example:
    >>> import numpy as np
    >>> keys = np.eye(3, dtype=np.float32)
    >>> scores = score_keys(np.array([0, 1, 0], np.float32), keys, metric="dot")
    >>> int(top_k(scores, 2)[0])
    1
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["METRICS", "Metric", "attention_weights", "key_norms", "score_keys", "top_k"]

Metric = Literal["dot", "cosine"]
METRICS: tuple[str, ...] = ("dot", "cosine")

FloatArray = npt.NDArray[np.float32]


def key_norms(keys: FloatArray) -> FloatArray:
    """Euclidean norms (N,) of keys (N, Z), floored at a tiny positive value."""
    norms: FloatArray = np.sqrt(np.einsum("nz,nz->n", keys, keys, dtype=np.float32))
    return np.maximum(norms, np.float32(1e-12))


def score_keys(
    query: FloatArray, keys: FloatArray, *, metric: Metric = "dot", norms: FloatArray | None = None
) -> FloatArray:
    """Score a query (Z,) against keys (N, Z).

    Args:
        query: (Z,) float32.
        keys: (N, Z) float32, C-contiguous for speed.
        metric: ``"dot"`` for ``K q / sqrt(Z)``, ``"cosine"`` for ``K q / (|K| |q|)``.
        norms: (N,) precomputed key norms for cosine (computed when ``None``).

    Returns:
        (N,) float32 scores.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    dots: FloatArray = keys @ query  # (N,)
    if metric == "dot":
        dots *= np.float32(1.0 / math.sqrt(query.shape[0]))
        return dots
    q_norm = max(float(np.linalg.norm(query)), 1e-12)
    if norms is None:
        norms = key_norms(keys)
    dots /= norms
    dots *= np.float32(1.0 / q_norm)
    return dots


def top_k(scores: FloatArray, k: int) -> npt.NDArray[np.int64]:
    """Indices (K,) of the k largest scores, best first (ties: lower index first).

    Uses ``argpartition`` so the cost is O(N + K log K).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n = scores.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if k >= n:
        candidates = np.arange(n, dtype=np.int64)
    else:
        candidates = np.argpartition(-scores, k - 1)[:k].astype(np.int64)
    # sort by (-score, index): lexsort's last key is the primary one
    order = np.lexsort((candidates, -scores[candidates]))
    result: npt.NDArray[np.int64] = candidates[order]
    return result


def attention_weights(scores: FloatArray, temperature: float = 1.0) -> FloatArray:
    """Softmax of scores (K,) / temperature: (K,) float32 weights summing to 1."""
    if not temperature > 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")
    if scores.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    logits = scores.astype(np.float64) / temperature
    logits -= logits.max()
    exp = np.exp(logits)
    weights: FloatArray = (exp / exp.sum()).astype(np.float32)
    return weights
