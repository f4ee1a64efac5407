"""SkillMemory: records round-trip, versions never overwrite, ids never collide, usage survives."""

from __future__ import annotations

import multiprocessing as mp
import os
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from skillbank.errors import (
    ArchitectureError,
    MemoryCorruptionError,
    SkillMemoryError,
    SkillNotFoundError,
)
from skillbank.memory import SkillMemory, SkillSpec, keyview, new_id
from skillbank.memory.keymatrix import load_cache
from skillbank.types import Provenance, RetrievalFilter, SkillRecord
from tests.memory.store_helpers import (
    ARCH,
    CONFIG,
    KEY_DIM,
    key_for,
    same_weights,
    spec_for,
    weights_for,
)


@pytest.fixture
def memory(tmp_path: Path) -> SkillMemory:
    mem = SkillMemory(tmp_path / "mem")
    yield mem
    mem.close()


def _add(memory: SkillMemory, seed: int, **kw: Any) -> SkillRecord:
    return memory.add(
        f"skill-{seed}",
        key_for(seed),
        ARCH,
        CONFIG,
        weights_for(seed),
        Provenance("test", task=f"task-{seed % 3}"),
        **kw,
    )


# --- records --------------------------------------------------------------------------------------


def test_add_get_round_trip_is_bit_identical(memory: SkillMemory) -> None:
    rec = memory.add(
        "reach",
        key_for(1),
        ARCH,
        CONFIG,
        weights_for(1),
        Provenance("bot", task="reach", dataset_hash="a" * 64, extra={"cmd": "x"}),
        tags=("nav", "fast"),
    )
    got = memory.get(rec.skill_id)
    assert got.version == 1 and got.parent_version_id is None
    assert got.key.tobytes() == key_for(1).tobytes()
    assert got.name == "reach" and got.tags == ("nav", "fast")
    assert got.provenance == Provenance(
        "bot", task="reach", dataset_hash="a" * 64, extra={"cmd": "x"}
    )
    assert got.arch_config == CONFIG and got.weights_sha256 == rec.weights_sha256
    assert same_weights(memory.load_weights(got), weights_for(1))
    blob = memory.path / "blobs" / rec.weights_sha256[:2] / f"{rec.weights_sha256}.safetensors"
    assert blob.is_file()
    assert memory.key_dim == KEY_DIM and len(memory) == 1 and rec.skill_id in memory


def test_identical_weights_share_one_blob(memory: SkillMemory) -> None:
    a = memory.add("a", key_for(1), ARCH, CONFIG, weights_for(5), Provenance("t"))
    b = memory.add("b", key_for(2), ARCH, CONFIG, weights_for(5), Provenance("t"))
    assert a.weights_sha256 == b.weights_sha256
    assert len(list((memory.path / "blobs").rglob("*.safetensors"))) == 1


def test_key_dimension_is_fixed_by_the_first_skill(memory: SkillMemory) -> None:
    _add(memory, 1)
    with pytest.raises(ValueError, match="dimension"):
        memory.add("x", np.ones(KEY_DIM + 1), ARCH, CONFIG, weights_for(2), Provenance("t"))
    with pytest.raises(ValueError, match="finite"):
        memory.add("x", np.full(KEY_DIM, np.nan), ARCH, CONFIG, weights_for(2), Provenance("t"))
    assert len(memory) == 1


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda w: w.pop("net.0.bias"), "missing"),
        (lambda w: w.update(extra=np.zeros(1, np.float32)), "unexpected"),
        (lambda w: w.update({"net.0.weight": np.zeros((4, 4), np.float32)}), "expects"),
        (lambda w: w.update({"net.0.weight": np.zeros((4, 3), np.float64)}), "expects"),
        (lambda w: w["net.0.weight"].__setitem__((0, 0), np.inf), "NaN or infinite"),
    ],
)
def test_weights_that_do_not_fit_the_architecture_are_refused(
    memory: SkillMemory, mutate: object, match: str
) -> None:
    weights = weights_for(1)
    mutate(weights)  # type: ignore[operator]
    with pytest.raises(ArchitectureError, match=match):
        memory.add("x", key_for(1), ARCH, CONFIG, weights, Provenance("t"))
    assert len(memory) == 0
    assert not list((memory.path / "blobs").rglob("*.safetensors"))


def test_unknown_architecture_and_bad_bytes_are_refused(memory: SkillMemory) -> None:
    with pytest.raises(ArchitectureError, match="allow-list"):
        memory.add("x", key_for(1), "evil-v1", CONFIG, weights_for(1), Provenance("t"))
    with pytest.raises(ArchitectureError, match="safetensors"):
        memory.add("x", key_for(1), ARCH, CONFIG, b"\x80\x04not safetensors", Provenance("t"))


def test_safetensors_bytes_are_stored_as_given(memory: SkillMemory) -> None:
    from safetensors.numpy import save

    data = save(weights_for(3), metadata={"source": "elsewhere"})
    rec = memory.add("x", key_for(3), ARCH, CONFIG, data, Provenance("t"))
    assert memory.read_blob(rec.weights_sha256) == data


def test_missing_memory_and_closed_memory(tmp_path: Path) -> None:
    with pytest.raises(SkillMemoryError, match="no skill memory"):
        SkillMemory(tmp_path / "nowhere", create=False)
    mem = SkillMemory(tmp_path / "m")
    mem.close()
    with pytest.raises(SkillMemoryError, match="closed"):
        len(mem)


def test_unknown_ids_raise(memory: SkillMemory) -> None:
    for call in (
        lambda: memory.get("nope"),
        lambda: memory.get_version("nope"),
        lambda: memory.versions("nope"),
        lambda: memory.add_version("nope", name="x"),
        lambda: memory.delete("nope"),
        lambda: memory.record_usage("nope", executed=1),
    ):
        with pytest.raises(SkillNotFoundError):
            call()


# --- versions -------------------------------------------------------------------------------------


def test_versions_never_overwrite(memory: SkillMemory) -> None:
    v1 = _add(memory, 1)
    v2 = memory.add_version(v1.skill_id, weights=weights_for(2), key=key_for(2))
    v3 = memory.add_version(v1.skill_id, name="renamed", tags=("new",))
    chain = memory.versions(v1.skill_id)
    assert [r.version for r in chain] == [1, 2, 3]
    assert [r.parent_version_id for r in chain] == [None, chain[0].version_id, chain[1].version_id]
    assert chain[0].key.tobytes() == key_for(1).tobytes()
    assert same_weights(memory.load_weights(chain[0]), weights_for(1))
    assert same_weights(memory.load_weights(chain[1]), weights_for(2))
    assert v3.weights_sha256 == v2.weights_sha256 and v3.key.tobytes() == key_for(2).tobytes()
    assert memory.get(v1.skill_id).version_id == v3.version_id
    assert memory.get(v1.skill_id, 1).version_id == chain[0].version_id
    assert memory.get_version(chain[1].version_id).version == 2
    assert memory.get(v1.skill_id).name == "renamed" and len(memory) == 1


def test_add_version_checks_kept_weights_against_a_new_config(memory: SkillMemory) -> None:
    rec = _add(memory, 1)
    bigger = {"in_dim": 3, "hidden_dims": [5], "out_dim": 2}
    with pytest.raises(ArchitectureError):
        memory.add_version(rec.skill_id, arch_config=bigger)
    ok = memory.add_version(rec.skill_id, arch_config=bigger, weights=weights_for(9, bigger))
    assert ok.version == 2 and ok.arch_config == bigger


def test_usage_counters_survive_versions_and_reopen(tmp_path: Path) -> None:
    with SkillMemory(tmp_path / "m") as mem:
        rec = _add(mem, 1)
        sid = rec.skill_id
        mem.record_usage(sid, executed=3, succeeded=2)
        mem.retrieve(key_for(1), k=1)  # counted in memory, flushed on close
        assert mem.get(sid).usage.num_retrieved == 1
        mem.add_version(sid, weights=weights_for(2))
        mem.record_usage_many({sid: (0, 1, 1)})
    with SkillMemory(tmp_path / "m") as mem:
        usage = mem.get(sid).usage
        assert (usage.num_retrieved, usage.num_executed, usage.num_succeeded) == (1, 4, 3)
        assert usage.last_used is not None
        assert mem.get(sid, 1).usage == usage  # usage belongs to the skill
        with pytest.raises(ValueError):
            mem.record_usage(sid, executed=-1)


def test_retrieval_usage_is_batched(memory: SkillMemory) -> None:
    sid = _add(memory, 1).skill_id
    for _ in range(5):
        memory.retrieve(key_for(1), k=1)
    memory.retrieve(key_for(1), k=1, record=False)
    raw = sqlite3.connect(memory.db_path).execute("SELECT num_retrieved FROM skills").fetchone()
    assert raw[0] == 0  # not yet written: batched
    assert memory.get(sid).usage.num_retrieved == 5  # but visible
    memory.close()
    raw = sqlite3.connect(memory.db_path).execute("SELECT num_retrieved FROM skills").fetchone()
    assert raw[0] == 5


# --- ids, batches, import support -------------------------------------------------------------


def test_given_ids_are_kept_and_never_collide(memory: SkillMemory) -> None:
    rec = _add(memory, 1, skill_id="pack-skill-1", created_at=123.0, version_id="v-abc")
    assert (rec.skill_id, rec.created_at, rec.version_id) == ("pack-skill-1", 123.0, "v-abc")
    with pytest.raises(SkillMemoryError, match="skill id 'pack-skill-1'"):
        _add(memory, 2, skill_id="pack-skill-1")
    with pytest.raises(SkillMemoryError, match="version id 'v-abc'"):
        _add(memory, 3, version_id="v-abc")
    with pytest.raises(ValueError, match="skill_id"):
        _add(memory, 4, skill_id="../escape")
    assert len(memory) == 1


def test_add_many_is_all_or_nothing(memory: SkillMemory) -> None:
    _add(memory, 0, skill_id="taken")
    specs = [spec_for(i) for i in range(1, 5)] + [spec_for(9, skill_id="taken")]
    with pytest.raises(SkillMemoryError):
        memory.add_many(specs)
    assert len(memory) == 1
    bad = [spec_for(1), spec_for(2, weights={"net.0.weight": np.zeros(1, np.float32)})]
    with pytest.raises(ArchitectureError):
        memory.add_many(bad)
    assert len(memory) == 1


def test_add_many_writes_version_chains(memory: SkillMemory) -> None:
    sid = new_id()
    specs = [
        spec_for(1, skill_id=sid, created_at=10.0, version_id="a1"),
        spec_for(2, version_of=sid, created_at=20.0, version_id="a2"),
        spec_for(3, version_of=sid, created_at=30.0, version_id="a3"),
        spec_for(4),
    ]
    records = memory.add_many(specs)
    assert [r.version for r in records] == [1, 2, 3, 1]
    chain = memory.versions(sid)
    assert [(r.version_id, r.parent_version_id, r.created_at) for r in chain] == [
        ("a1", None, 10.0),
        ("a2", "a1", 20.0),
        ("a3", "a2", 30.0),
    ]
    more = memory.add_many([spec_for(5, version_of=sid)])
    assert more[0].version == 4 and more[0].parent_version_id == "a3"
    assert len(memory) == 2
    with pytest.raises(SkillNotFoundError):
        memory.add_many([spec_for(6, version_of="missing")])
    with pytest.raises(ValueError, match="not both"):
        spec_for(7, skill_id="a", version_of="b")


# --- list, keys, delete, gc -----------------------------------------------------------------------


def test_list_and_keys_with_filters(memory: SkillMemory) -> None:
    records = memory.add_many([spec_for(i) for i in range(6)])
    assert [r.skill_id for r in memory.list()] == [r.skill_id for r in records]
    t0 = memory.list(RetrievalFilter(tags=("t0",)))
    assert {r.skill_id for r in t0} == {r.skill_id for r in records[0::2]}
    task1 = memory.list(RetrievalFilter(task="task-1"))
    assert {r.skill_id for r in task1} == {records[1].skill_id, records[4].skill_id}
    assert memory.list(RetrievalFilter(arch_id="other")) == []
    ids, keys = memory.keys()
    assert ids == [r.skill_id for r in records] and keys.shape == (6, KEY_DIM)
    assert keys[2].tobytes() == key_for(2).tobytes()
    ids, keys = memory.keys(RetrievalFilter(tags=("t1",), task="task-0"))
    assert ids == [records[3].skill_id] and keys.shape == (1, KEY_DIM)


def test_delete_then_gc_reclaims_only_unreferenced_blobs(memory: SkillMemory) -> None:
    a = _add(memory, 1)
    b = memory.add("b", key_for(2), ARCH, CONFIG, weights_for(1), Provenance("t"))  # shares blob
    memory.add_version(a.skill_id, weights=weights_for(3))
    shared, own = a.weights_sha256, memory.get(a.skill_id).weights_sha256
    memory.delete(a.skill_id)
    assert a.skill_id not in memory and len(memory) == 1
    report = memory.gc()
    assert report.removed_sha256 == (own,) and report.bytes_freed > 0
    assert memory.load_weights(memory.get(b.skill_id)) and memory.read_blob(shared)
    assert memory.gc().num_blobs_removed == 0
    assert memory.retrieve(key_for(1), k=5).skill_ids == (b.skill_id,)
    assert memory.verify() == []


def test_load_weights_detects_a_corrupted_blob(memory: SkillMemory) -> None:
    rec = _add(memory, 1)
    path = next((memory.path / "blobs").rglob("*.safetensors"))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(MemoryCorruptionError, match="SHA-256"):
        memory.load_weights(rec)


# --- processes ------------------------------------------------------------------------------------


def _child_adds(path: str, seed: int) -> None:
    global _forked_memory
    mem = _forked_memory
    assert mem is not None
    mem.add("child", key_for(seed), ARCH, CONFIG, weights_for(seed), Provenance("child"))
    os._exit(0)


_forked_memory: SkillMemory | None = None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_reconnects(tmp_path: Path) -> None:
    global _forked_memory
    mem = SkillMemory(tmp_path / "m")
    _add(mem, 1)
    _forked_memory = mem
    ctx = mp.get_context("fork")
    proc = ctx.Process(target=_child_adds, args=(str(mem.path), 2))
    proc.start()
    proc.join(30)
    _forked_memory = None
    assert proc.exitcode == 0
    assert len(mem) == 2 and len(mem.list()) == 2  # the parent's connection still works
    assert mem.verify() == []
    mem.close()


def test_two_instances_see_each_others_writes(tmp_path: Path) -> None:
    with SkillMemory(tmp_path / "m") as a, SkillMemory(tmp_path / "m") as b:
        first = _add(a, 1)
        assert b.retrieve(key_for(1), k=3, record=False).skill_ids == (first.skill_id,)
        second = _add(b, 2)
        a.add_version(first.skill_id, key=-key_for(1))
        hits = b.retrieve(key_for(1), k=3, record=False)
        assert set(hits.skill_ids) == {first.skill_id, second.skill_id}
        ids, keys = b.keys()
        assert keys[ids.index(first.skill_id)].tobytes() == (-key_for(1)).tobytes()
        a.delete(second.skill_id)
        assert b.retrieve(key_for(2), k=3, record=False).skill_ids == (first.skill_id,)


def _truth_top(mem: SkillMemory, query: np.ndarray, k: int) -> tuple[str, ...]:
    """Top-k ids by dot product computed from the database records, not from any cache."""
    records = mem.list()
    scores = np.array([float(r.key @ query) for r in records])
    return tuple(records[i].skill_id for i in np.argsort(-scores, kind="stable")[:k])


def test_key_cache_is_used_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyview, "CACHE_MIN_KEYS", 1)
    with SkillMemory(tmp_path / "m") as mem:
        records = mem.add_many([spec_for(i) for i in range(20)])
        assert mem.retrieve(key_for(3), k=5, record=False).skill_ids == _truth_top(
            mem, key_for(3), 5
        )
    caches = list((tmp_path / "m" / "index").glob("keys-*.bin"))
    assert len(caches) == 1
    cached = load_cache(caches[0])  # the file round-trips (a bad one would be silently rebuilt)
    assert cached is not None and len(cached) == 20
    assert [cached.skill_id(i) for i in range(20)] == [r.skill_id for r in records]
    assert cached.keys.tobytes() == np.stack([r.key for r in records]).tobytes()
    with SkillMemory(tmp_path / "m") as mem:  # writes leave the cache stale ...
        mem.delete(records[0].skill_id)
        mem.add_version(records[1].skill_id, key=key_for(3))
        mem.add_many([spec_for(100)])
    with SkillMemory(tmp_path / "m") as mem:  # ... and opening brings it up to date
        ids, _ = mem.keys()
        assert records[0].skill_id not in ids and len(ids) == 20
        for seed in (3, 5, 100):
            got = mem.retrieve(key_for(seed), k=5, record=False).skill_ids
            assert got == _truth_top(mem, key_for(seed), 5)
    caches[0].write_bytes(caches[0].read_bytes()[:-7] + b"garbage")  # corrupt: ignored, rebuilt
    with SkillMemory(tmp_path / "m") as mem:
        assert mem.retrieve(key_for(3), k=5, record=False).skill_ids == _truth_top(
            mem, key_for(3), 5
        )
        assert len(mem.keys()[0]) == 20


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="name"):
        spec_for(1, name="")
    with pytest.raises(ValueError, match="1-D"):
        spec_for(1, key=np.ones((2, 2)))
    with pytest.raises(ValueError, match="tags"):
        spec_for(1, tags=("",))
    spec = SkillSpec("n", [1, 2], ARCH, CONFIG, weights_for(1), Provenance("t"))
    assert spec.key.dtype == np.float32 and spec.key.shape == (2,)
