"""The agent's bounded segment replay: the compact v3 record (v2 + call histories), v1 and v2
records, corruption, the bound, call histories mapped to key rows."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from skillbank.agent.replay import REPLAY_ARCH, REPLAY_POLICIES, SegmentReplay
from skillbank.errors import MemoryCorruptionError
from skillbank.learning.segment_set import SegmentSet
from skillbank.memory.packs import export_pack, import_pack
from skillbank.memory.store import SkillMemory
from skillbank.types import Provenance, RetrievalFilter

OBS = 23  # 4 constant columns, 12 binary (0/1), 4 integer (0..2), 3 standardised floats


def _features(rng: np.random.Generator, rows: int) -> npt.NDArray[np.float32]:
    """(rows, OBS) features with every kind of column, interleaved."""
    kinds = [
        np.full((rows, 2), 0.0),  # constant 0 (a one-hot slot never used)
        rng.integers(0, 2, (rows, 7)),  # binary
        np.full((rows, 1), 1.0),  # constant 1
        rng.normal(size=(rows, 3)) * 3.0,  # floats
        rng.integers(0, 2, (rows, 5)),  # binary
        rng.integers(0, 3, (rows, 4)),  # small counts (a bag of tokens)
        np.full((rows, 1), -0.37),  # constant, not 0/1
    ]
    return np.concatenate(kinds, axis=1).astype(np.float32)


def _replay(
    seed: int = 0,
    lengths: tuple[int, ...] = (3, 1, 5, 2, 4),
    calls: tuple[int, ...] | None = None,
    continuous: bool = False,
) -> SegmentReplay:
    rng = np.random.default_rng(seed)
    feats = tuple(_features(rng, t + 1) for t in lengths)
    acts: tuple[npt.NDArray[Any], ...] = tuple(
        rng.normal(size=(t, 2)).astype(np.float32) if continuous else rng.integers(0, 7, t)
        for t in lengths
    )
    ids = tuple(f"skill-{i % 3}" for i in range(len(lengths)))
    # each segment's history: the skills before it ("skill-9": one whose segments all left)
    histories = tuple(("skill-9", *ids[:i])[-i:] if i else () for i in range(len(lengths)))
    calls = calls if calls is not None else (0,) * len(lengths)
    return SegmentReplay(feats, acts, ids, calls, histories)


def _assert_same(a: SegmentReplay, b: SegmentReplay) -> None:
    assert a.skill_ids == b.skill_ids and a.calls == b.calls and a.histories == b.histories
    for x, y in zip(a.actions, b.actions, strict=True):
        np.testing.assert_array_equal(x, y)
        assert x.dtype == y.dtype
    for x, y in zip(a.features, b.features, strict=True):
        assert x.shape == y.shape and y.dtype == np.float32


# --- the v3 record (v2 columns + call histories) ---------------------------------------------


@pytest.mark.parametrize("continuous", [False, True])
def test_v2_round_trip_exact_for_binary_and_constant_columns(continuous: bool) -> None:
    replay = _replay(continuous=continuous, calls=(0, 0, 1, 1, 2))
    config, weights = replay.to_record(OBS)
    assert config["num_binary"] == 12 and config["num_float"] == 3 + 4
    back = SegmentReplay.from_record(config, weights)
    _assert_same(replay, back)
    exact = np.r_[0:10, 13:23]  # constant, binary, small counts (exact in float16 too)
    for x, y in zip(replay.features, back.features, strict=True):
        np.testing.assert_array_equal(x[:, exact], y[:, exact])
        np.testing.assert_allclose(x[:, 10:13], y[:, 10:13], rtol=1e-3, atol=1e-3)  # float16
        assert not np.array_equal(x[:, 10:13], y[:, 10:13])  # (so these really went float16)


def test_v2_packs_binary_columns_eight_to_a_byte() -> None:
    replay = _replay()
    _, weights = replay.to_record(OBS)
    rows = replay.num_steps + replay.num_segments
    assert weights["binary_bits"].shape == (rows, 2) and weights["binary_bits"].dtype == np.uint8
    assert weights["float_values"].shape == (rows, 7)
    assert weights["constants"].tolist() == pytest.approx([0.0, 0.0, 1.0, -0.37])
    v1_bytes = rows * OBS * 2  # v1 kept every column as float16
    packed = weights["binary_bits"].nbytes + weights["float_values"].nbytes
    assert packed < 0.5 * v1_bytes


def test_v2_record_is_accepted_by_the_memory_and_loads_back(tmp_path: Path) -> None:
    replay = _replay(calls=(0, 1, 1, 2, 2))
    config, weights = replay.to_record(OBS)
    with SkillMemory(tmp_path / "m") as memory:
        record = memory.add(
            "agent/replay", np.eye(4)[0], REPLAY_ARCH, config, weights, Provenance("test")
        )
        back = SegmentReplay.from_record(record.arch_config, memory.load_weights(record))
    _assert_same(replay, back)


@pytest.mark.parametrize("columns", [OBS, 9])  # 9: only constant and float columns
def test_v2_record_survives_a_pack_export_and_import(tmp_path: Path, columns: int) -> None:
    full = _replay()
    replay = SegmentReplay(
        tuple(f[:, np.r_[9:13, 18:23]] if columns == 9 else f for f in full.features),
        full.actions,
        full.skill_ids,
        (0, 0, 1, 2, 2),
    )
    config, weights = replay.to_record(columns)
    assert (config["num_binary"] == 0) == (columns == 9)
    with SkillMemory(tmp_path / "a") as memory:
        memory.add("agent/replay", np.eye(4)[0], REPLAY_ARCH, config, weights, Provenance("t"))
        export_pack(memory, tmp_path / "pack")
    with SkillMemory(tmp_path / "b") as memory:
        import_pack(memory, tmp_path / "pack")
        (record,) = memory.list(RetrievalFilter(arch_id=REPLAY_ARCH))
        back = SegmentReplay.from_record(record.arch_config, memory.load_weights(record))
    _assert_same(replay, back)


def test_v2_round_trip_of_an_empty_replay_and_one_without_binary_columns() -> None:
    empty = SegmentReplay.empty()
    assert SegmentReplay.from_record(*empty.to_record(OBS)).num_segments == 0
    rng = np.random.default_rng(1)
    floats = SegmentReplay(
        (rng.normal(size=(3, 5)).astype(np.float32),), (np.ones(2, int),), ("a",), (0,)
    )
    config, weights = floats.to_record(5)
    assert config["num_binary"] == 0 and weights["binary_bits"].shape == (3, 0)
    back = SegmentReplay.from_record(config, weights)
    np.testing.assert_allclose(back.features[0], floats.features[0], rtol=1e-3, atol=1e-3)


def test_v1_record_still_loads(tmp_path: Path) -> None:
    """A ``segment-replay-v1`` record (every column float16, no calls) as older memories hold."""
    replay = _replay()
    lengths = np.array([len(a) for a in replay.actions], np.int64)
    weights = {
        "features": np.concatenate(replay.features).astype(np.float16),
        "actions": np.concatenate(replay.actions).astype(np.int64),
        "lengths": lengths,
        "skills": np.array([int(s[-1]) for s in replay.skill_ids], np.int64),
    }
    config = {
        "obs_dim": OBS,
        "num_segments": len(lengths),
        "num_steps": int(lengths.sum()),
        "action_kind": "discrete",
        "action_size": 1,
        "skill_ids": ["skill-0", "skill-1", "skill-2"],
    }
    with SkillMemory(tmp_path / "m") as memory:
        record = memory.add(
            "agent/replay", np.eye(4)[0], "segment-replay-v1", config, weights, Provenance("t")
        )
        back = SegmentReplay.from_record(record.arch_config, memory.load_weights(record))
    _assert_same(dataclasses.replace(replay, histories=()), back)  # calls 0, no histories
    for x, y in zip(replay.features, back.features, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-3)
    weights["features"] = weights["features"][:-1]  # a row short
    with pytest.raises(MemoryCorruptionError, match="rows"):
        SegmentReplay.from_record(config, weights)


def test_v2_record_still_loads_with_no_histories(tmp_path: Path) -> None:
    """A ``segment-replay-v2`` record (no call histories): every segment reads as the first."""
    replay = _replay(calls=(0, 1, 1, 2, 2))
    config, weights = replay.to_record(OBS)
    del weights["history_lengths"], weights["history_skills"], config["num_history"]
    with SkillMemory(tmp_path / "m") as memory:
        record = memory.add(
            "agent/replay", np.eye(4)[0], "segment-replay-v2", config, weights, Provenance("t")
        )
        back = SegmentReplay.from_record(record.arch_config, memory.load_weights(record))
    assert back.histories == ((),) * 5
    _assert_same(dataclasses.replace(replay, histories=()), back)


def test_histories_follow_the_episode_and_map_to_key_rows() -> None:
    # episode 0: A then B then A; episode 1: B alone (spans out of order on purpose)
    feats = tuple(np.zeros((7, 2), np.float32) for _ in range(2))
    acts = tuple(np.zeros(6, np.int64) for _ in range(2))
    spans = ((0, 4, 6), (1, 0, 6), (0, 0, 2), (0, 2, 4))
    segments = SegmentSet(feats, acts, spans)
    replay = SegmentReplay.from_segments(segments, [0, 1, 0, 1], ["A", "B"])
    assert replay.histories == (("A", "B"), (), (), ("A",))
    # later, the rows have moved ("C" came first) and "B" is no longer offered
    later = SegmentSet(feats[:1], acts[:1], ((0, 0, 3), (0, 3, 6)))
    merged, labels = replay.merged_with(later, [2, 0], ["C", "X", "A"])
    histories = replay.merged_histories(later, [2, 0], ["C", "X", "A"])
    assert labels.tolist() == [2, 0, 2, 2] and merged.num_segments == 4
    assert histories == [(), (2,), (2,), ()]  # "B" left out: not a skill of this controller
    assert replay.union(replay).histories == replay.histories * 2
    kept = replay.bounded(8, seed=0)  # a subset keeps each segment's own history
    assert kept.num_segments < replay.num_segments
    for f, h in zip(kept.features, kept.histories, strict=True):
        (i,) = [j for j, g in enumerate(replay.features) if g is f]
        assert h == replay.histories[i]
    with pytest.raises(ValueError, match="histories"):
        SegmentReplay(feats, acts, ("A", "B"), (0, 0), ((),))


# --- corrupt records ----------------------------------------------------------------------------


def _corrupt(name: str, weights: dict[str, npt.NDArray[Any]]) -> None:
    if name == "kinds":
        weights["column_kinds"] = weights["column_kinds"].copy()
        weights["column_kinds"][3] = 7
    elif name == "bits":
        weights["binary_bits"] = weights["binary_bits"][:-1]
    elif name == "floats":
        weights["float_values"] = weights["float_values"][:, :-1]
    elif name == "lengths":
        weights["lengths"] = weights["lengths"] + 1
    elif name == "skills":
        weights["skills"] = weights["skills"] + 5
    elif name == "missing":
        del weights["calls"]
    elif name == "history":
        weights["history_skills"] = weights["history_skills"][:-1]
    elif name == "history_ids":
        weights["history_skills"] = weights["history_skills"] + 50
    elif name == "nan":
        weights["float_values"] = weights["float_values"].copy()
        weights["float_values"][0, 0] = np.nan


@pytest.mark.parametrize(
    "damage",
    ["kinds", "bits", "floats", "lengths", "skills", "missing", "history", "history_ids", "nan"],
)
def test_corrupt_v2_record_raises_a_clear_error_and_loses_nothing(
    tmp_path: Path, damage: str
) -> None:
    replay = _replay()
    config, weights = replay.to_record(OBS)
    with SkillMemory(tmp_path / "m") as memory:
        record = memory.add(
            "agent/replay", np.eye(4)[0], REPLAY_ARCH, config, weights, Provenance("test")
        )
        stored = memory.load_weights(record)
        _corrupt(damage, stored)
        with pytest.raises(MemoryCorruptionError, match="segment-replay record") as raised:
            SegmentReplay.from_record(record.arch_config, stored)
        assert "skillbank verify" in raised.value.hint
        # the memory still holds the intact record
        (again,) = memory.list(RetrievalFilter(arch_id=REPLAY_ARCH))
        _assert_same(
            replay, SegmentReplay.from_record(again.arch_config, memory.load_weights(again))
        )


# --- the bound and the replay policies ----------------------------------------------------------


def test_union_numbers_later_calls_after_earlier_ones() -> None:
    first = _replay(lengths=(2, 3), calls=(0, 1))
    second = _replay(seed=1, lengths=(4,))
    merged = first.union(second).union(second)
    assert merged.calls == (0, 1, 2, 3) and merged.num_calls == 4
    assert SegmentReplay.empty().union(second).calls == (0,)


@pytest.mark.parametrize("policy", REPLAY_POLICIES)
def test_bound_respected_with_whole_segments_and_seeded(policy: str) -> None:
    lengths = tuple(int(t) for t in np.random.default_rng(2).integers(1, 9, 60))
    replay = _replay(lengths=lengths, calls=tuple(i % 4 for i in range(60)))
    for bound in (0, 7, 50, 120, sum(lengths)):
        kept = replay.bounded(bound, seed=3, policy=policy)
        assert kept.num_steps <= bound
        for f in kept.features:  # every kept segment is one of the originals, whole
            assert any(f is g for g in replay.features)
        again = replay.bounded(bound, seed=3, policy=policy)
        assert again.skill_ids == kept.skill_ids and again.calls == kept.calls
    assert replay.bounded(sum(lengths), seed=3, policy=policy) is replay


def test_call_policy_keeps_an_equal_share_per_learn_call() -> None:
    # call 0: 10 steps, call 1: 200, call 2: 400 (2-step segments); the bound is 120
    calls = (0,) * 5 + (1,) * 100 + (2,) * 200
    replay = _replay(lengths=(2,) * len(calls), calls=calls)

    def steps_per_call(r: SegmentReplay) -> list[int]:
        return [
            sum(len(a) for a, c in zip(r.actions, r.calls, strict=True) if c == k) for k in range(3)
        ]

    balanced = steps_per_call(replay.bounded(120, seed=0, policy="call"))
    assert balanced == [10, 54, 56] or balanced == [10, 56, 54]  # call 0 whole, the rest shared
    uniform = steps_per_call(replay.bounded(120, seed=0, policy="uniform"))
    assert uniform[0] < 10 and uniform[2] > 60  # proportional to the data: early calls fade
    with pytest.raises(ValueError, match="policy"):
        replay.bounded(10, seed=0, policy="newest")
