"""Approximate indexes: the VectorIndex Protocol, persistence, and the cache kept in step with the
database (loaded when fresh, extended after writes, rebuilt when stale or unreadable)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from skillbank.errors import MissingExtraError
from skillbank.interfaces import VectorIndex
from skillbank.memory import FaissHnswIndex, SkillMemory, UsearchIndex, make_index
from skillbank.types import RetrievalFilter
from tests.memory.store_helpers import key_for, spec_for

KINDS = ["faiss", "usearch"]


def _clustered(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, dim))
    return (centres[rng.integers(8, size=n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)


@pytest.mark.parametrize("kind", KINDS)
def test_index_implements_the_protocol_and_round_trips(kind: str, tmp_path: Path) -> None:
    index = make_index(kind, 16)
    assert isinstance(index, VectorIndex) and index.dim == 16 and len(index) == 0
    keys = _clustered(500, 16, 0)
    labels = np.arange(1000, 1500, dtype=np.int64)
    index.add(labels, keys)
    assert len(index) == 500
    found, scores = index.search(keys[:5], 3)
    assert found.shape == (5, 3) and scores.shape == (5, 3) and found.dtype == np.int64
    exact = np.argsort(-(keys[:5] @ keys.T), axis=1)[:, 0] + 1000
    assert (found[:, 0] == exact).mean() >= 0.8
    np.testing.assert_allclose(scores[:, 0], np.sum(keys[:5] * keys[found[:, 0] - 1000], 1), 1e-4)
    path = tmp_path / f"{kind}.bin"
    index.save(str(path))
    cls = FaissHnswIndex if kind == "faiss" else UsearchIndex
    again = cls.load(str(path))
    np.testing.assert_array_equal(again.search(keys[:5], 3)[0], found)
    missing, _ = make_index(kind, 16).search(keys[:1], 2)
    assert (missing == -1).all()


def test_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(MissingExtraError) as info:
        make_index("faiss", 4)
    assert "skillbank[index]" in info.value.hint
    with pytest.raises(ValueError):
        make_index("annoy", 4)


def _fill(path: Path, num: int) -> list[str]:
    with SkillMemory(path) as mem:
        return [r.skill_id for r in mem.add_many([spec_for(i) for i in range(num)])]


@pytest.mark.parametrize("kind", KINDS)
def test_approximate_retrieval_agrees_with_exact(kind: str, tmp_path: Path) -> None:
    _fill(tmp_path / "m", 300)
    with SkillMemory(tmp_path / "m", index=kind) as mem:
        agree = 0
        for seed in range(1000, 1030):
            exact = mem.retrieve(key_for(seed), 10, record=False)
            approx = mem.retrieve(key_for(seed), 10, approximate=True, record=False)
            agree += len(set(exact.skill_ids) & set(approx.skill_ids))
            assert np.all(np.diff(approx.scores) <= 0)
            assert abs(float(approx.weights.sum()) - 1) < 1e-4
        assert agree / 300 >= 0.9
        flt = RetrievalFilter(tags=("t0",))
        hits = mem.retrieve(key_for(5), 10, filters=flt, approximate=True, record=False)
        assert all("t0" in mem.get(s).tags for s in hits.skill_ids) and len(hits.skill_ids) == 10
        cos = mem.retrieve(key_for(5), 5, metric="cosine", approximate=True, record=False)
        assert cos.skill_ids == mem.retrieve(key_for(5), 5, metric="cosine", record=False).skill_ids


@pytest.mark.parametrize("kind", KINDS)
def test_index_cache_follows_the_database(kind: str, tmp_path: Path) -> None:
    ids = _fill(tmp_path / "m", 200)
    directory = tmp_path / "m" / "index"
    with SkillMemory(tmp_path / "m", index=kind) as mem:
        built = sorted(directory.glob(f"{kind}-*.bin"))
    assert len(built) == 1
    with SkillMemory(tmp_path / "m") as writer:  # an exact-only process writes meanwhile
        new = writer.add_many([spec_for(5000)])[0].skill_id
        writer.delete(ids[0])
    with SkillMemory(tmp_path / "m", index=kind) as mem:  # stale: extended, not rebuilt
        assert mem._view.index is not None and mem._view.index.index is not None
        assert len(mem._view.index.index) == 201 and mem._view.index.num_stale == 1
        for seed in (5000, 0, 1):
            exact = mem.retrieve(key_for(seed), 5, record=False).skill_ids
            approx = mem.retrieve(key_for(seed), 5, approximate=True, record=False).skill_ids
            assert approx == exact and ids[0] not in approx
        assert new in mem.retrieve(key_for(5000), 200, approximate=True, record=False).skill_ids
        # writes through this instance are seen too
        newer = mem.add_many([spec_for(6000)])[0].skill_id
        assert len(mem.retrieve(key_for(1), 200, approximate=True, record=False).skill_ids) == 200
        exact = mem.retrieve(key_for(6000), 5, record=False).skill_ids
        assert mem.retrieve(key_for(6000), 5, approximate=True, record=False).skill_ids == exact
        assert len(mem._view.index.index) == 202 and newer in mem
    with SkillMemory(tmp_path / "m") as writer:  # most entries stale: the next open rebuilds
        for sid in ids[1:150]:
            writer.delete(sid)
    for path in directory.glob(f"{kind}-*.bin"):
        path.write_bytes(b"not an index")  # unreadable: rebuilt, results still right
    with SkillMemory(tmp_path / "m", index=kind) as mem:
        assert mem._view.index is not None and mem._view.index.num_stale == 0
        assert len(mem._view.index.index or []) == len(mem)
        for seed in (160, 170, 5000):
            exact = mem.retrieve(key_for(seed), 3, record=False).skill_ids
            approx = mem.retrieve(key_for(seed), 3, approximate=True, record=False).skill_ids
            assert exact == approx
