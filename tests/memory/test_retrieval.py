"""Retrieval: pure scoring functions, and SkillMemory.retrieve against a brute-force reference."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from skillbank.memory import SkillMemory, attention_weights, score_keys, top_k
from skillbank.types import RetrievalFilter
from tests.memory.store_helpers import KEY_DIM, key_for, spec_for

# --- pure functions -------------------------------------------------------------------------------


def test_scaled_dot_and_cosine_scores() -> None:
    rng = np.random.default_rng(0)
    keys = rng.normal(size=(50, 16)).astype(np.float32)
    q = rng.normal(size=16).astype(np.float32)
    np.testing.assert_allclose(score_keys(q, keys), keys @ q / 4.0, rtol=1e-5)
    cos = keys @ q / (np.linalg.norm(keys, axis=1) * np.linalg.norm(q))
    np.testing.assert_allclose(score_keys(q, keys, metric="cosine"), cos, rtol=1e-5)
    with pytest.raises(ValueError, match="metric"):
        score_keys(q, keys, metric="l2")  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(
    scores=arrays(
        np.float32,
        st.integers(1, 200),
        elements=st.floats(-1e3, 1e3, width=32, allow_nan=False),
    ),
    k=st.integers(1, 250),
)
def test_top_k_matches_a_full_sort(scores: np.ndarray, k: int) -> None:
    got = top_k(scores, k)
    assert len(got) == min(k, len(scores))
    assert np.all(np.diff(scores[got]) <= 0)  # descending
    want = np.sort(scores)[::-1][: len(got)]
    np.testing.assert_array_equal(scores[got], want)  # the same multiset of top scores


@settings(max_examples=60, deadline=None)
@given(
    scores=arrays(np.float32, st.integers(1, 20), elements=st.floats(-50, 50, width=32)),
    temperature=st.floats(0.05, 20),
)
def test_attention_weights_are_a_softmax(scores: np.ndarray, temperature: float) -> None:
    w = attention_weights(scores, temperature)
    assert w.dtype == np.float32 and math.isclose(float(w.sum()), 1.0, rel_tol=1e-5)
    e = np.exp((scores.astype(np.float64) - scores.max()) / temperature)
    np.testing.assert_allclose(w, e / e.sum(), rtol=1e-4, atol=1e-7)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        top_k(np.zeros(3, np.float32), 0)
    with pytest.raises(ValueError):
        attention_weights(np.zeros(3, np.float32), 0.0)
    assert top_k(np.zeros(0, np.float32), 3).shape == (0,)


# --- SkillMemory.retrieve -------------------------------------------------------------------------


@pytest.fixture
def filled(tmp_path: Path) -> tuple[SkillMemory, list[str]]:
    mem = SkillMemory(tmp_path / "m")
    ids = [r.skill_id for r in mem.add_many([spec_for(i) for i in range(40)])]
    yield mem, ids
    mem.close()


@pytest.mark.parametrize("metric", ["dot", "cosine"])
def test_retrieve_matches_brute_force(filled: tuple[SkillMemory, list[str]], metric: str) -> None:
    mem, ids = filled
    keys = np.stack([key_for(i) for i in range(40)])
    for seed in range(100, 110):
        q = key_for(seed)
        want = score_keys(q, keys, metric=metric)  # type: ignore[arg-type]
        order = np.argsort(-want, kind="stable")[:7]
        got = mem.retrieve(q, 7, metric=metric, temperature=0.5)  # type: ignore[arg-type]
        assert got.skill_ids == tuple(ids[i] for i in order)
        np.testing.assert_allclose(got.scores, want[order], rtol=1e-5)
        np.testing.assert_allclose(got.weights, attention_weights(want[order], 0.5), rtol=1e-5)


def test_retrieve_filters(filled: tuple[SkillMemory, list[str]]) -> None:
    mem, ids = filled
    q = key_for(7)
    hits = mem.retrieve(q, 40, filters=RetrievalFilter(tags=("t1",), task="task-0"))
    want = {ids[i] for i in range(40) if i % 2 == 1 and i % 3 == 0}
    assert set(hits.skill_ids) == want and len(hits.skill_ids) == len(want)
    assert mem.retrieve(q, 3, filters=RetrievalFilter(arch_id="nope")).skill_ids == ()
    only = mem.retrieve(q, 3, filters=RetrievalFilter(arch_id="mlp-v1"))
    assert only.skill_ids == mem.retrieve(q, 3).skill_ids


def test_retrieve_edge_cases(tmp_path: Path, filled: tuple[SkillMemory, list[str]]) -> None:
    mem, _ = filled
    assert len(mem.retrieve(key_for(1), 100).skill_ids) == 40
    with pytest.raises(ValueError, match="dimension"):
        mem.retrieve(np.ones(KEY_DIM + 1), 3)
    with pytest.raises(ValueError, match="k must"):
        mem.retrieve(key_for(1), 0)
    with pytest.raises(ValueError, match="index"):
        mem.retrieve(key_for(1), 3, approximate=True)
    with SkillMemory(tmp_path / "empty") as empty:
        got = empty.retrieve(np.ones(4), 3)
        assert got.skill_ids == () and got.weights.shape == (0,)


def test_retrieve_counts_usage(filled: tuple[SkillMemory, list[str]]) -> None:
    mem, _ = filled
    hits = mem.retrieve(key_for(3), 4)
    mem.retrieve(key_for(3), 4)
    for sid in hits.skill_ids:
        assert mem.get(sid).usage.num_retrieved == 2
