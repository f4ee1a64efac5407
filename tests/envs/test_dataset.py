"""Demonstration datasets on disk: lossless round trips, byte-identical files, resume, and every
way a dataset can be broken."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from skillbank.envs.dataset import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    Dataset,
    DatasetWriter,
    dataset_hash,
    dataset_info,
    decode_episode,
    encode_episode,
    episode_filename,
    load_dataset,
)
from skillbank.envs.toy import ToyDemonstrator
from skillbank.errors import DatasetError
from skillbank.interfaces import DemoSource
from skillbank.types import Episode, SubgoalAnnotation, TaskSpec

ENV = "toy/fetch"
WHO = "toy-scripted"


def make_episode(seed: int, *, state_only: bool = False, num_steps: int = 5) -> Episode:
    rng = np.random.default_rng(seed)
    return Episode(
        observations={
            "obs": rng.standard_normal((num_steps + 1, 3)).astype(np.float32),
            "image": rng.integers(0, 256, (num_steps + 1, 6, 6, 3), dtype=np.uint8),
            "direction": rng.integers(0, 4, num_steps + 1).astype(np.int64),
        },
        actions=None if state_only else rng.integers(0, 6, num_steps).astype(np.int64),
        rewards=rng.random(num_steps).astype(np.float32),
        terminations=np.arange(num_steps) == num_steps - 1,
        truncations=np.zeros(num_steps, dtype=np.bool_),
        task=TaskSpec(ENV, mission="put the red ball next to the blue key"),
        success=True,
        seed=seed,
        demonstrator=WHO,
        annotations=SubgoalAnnotation((0, 2, 3), ("GoTo", "Pickup", "GoTo")),
    )


def assert_same(a: Episode, b: Episode) -> None:
    assert list(a.observations) == list(b.observations)
    for key in a.observations:
        assert a.observations[key].dtype == b.observations[key].dtype
        np.testing.assert_array_equal(a.observations[key], b.observations[key])
    if a.actions is None:
        assert b.actions is None
    else:
        assert b.actions is not None and a.actions.dtype == b.actions.dtype
        np.testing.assert_array_equal(a.actions, b.actions)
    for name in ("rewards", "terminations", "truncations"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)
    assert (a.task, a.success, a.seed, a.demonstrator, a.annotations) == (
        b.task,
        b.success,
        b.seed,
        b.demonstrator,
        b.annotations,
    )


def write_dataset(root: Path, seeds: range = range(4), **kwargs: bool) -> Dataset:
    writer = DatasetWriter(root, env_id=ENV, demonstrator=WHO, meta={"command": "test"})
    for seed in seeds:
        writer.write(make_episode(seed, **kwargs))
    writer.close()
    return load_dataset(root)


# --- round trips ----------------------------------------------------------------------------------


def test_round_trip_is_lossless(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "ds")
    assert len(dataset) == 4
    for seed, episode in zip(range(4), dataset, strict=True):
        assert_same(make_episode(seed), episode)
    assert dataset.info.meta == {"command": "test"}
    assert dataset.info.success_rate == 1.0
    assert dataset.info.num_steps == 20


def test_state_only_round_trip(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "ds", state_only=True)
    assert dataset.info.state_only
    for seed in range(4):
        episode = dataset.by_seed(seed)
        assert episode.state_only
        assert_same(make_episode(seed, state_only=True), episode)


def test_files_are_plain_npz_without_pickle(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds", seeds=range(1))
    with np.load(tmp_path / "ds" / episode_filename(0), allow_pickle=False) as npz:
        assert set(npz.files) == {
            "observations/obs",
            "observations/image",
            "observations/direction",
            "actions",
            "rewards",
            "terminations",
            "truncations",
            "meta",
        }
        assert npz["observations/image"].dtype == np.uint8
        meta = json.loads(npz["meta"].tobytes())
    assert meta["format_version"] == FORMAT_VERSION and meta["seed"] == 0


@settings(max_examples=25, deadline=None)
@given(
    obs=hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64, np.uint8, np.int64, np.bool_]),
        shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4),
    ),
    mission=st.one_of(st.none(), st.text(max_size=20)),
)
def test_encode_decode_any_array(obs: np.ndarray, mission: str | None) -> None:
    num_steps = len(obs) - 1
    episode = Episode(
        observations={"x": obs},
        actions=np.zeros((num_steps, 2), dtype=np.float32),
        rewards=np.zeros(num_steps, dtype=np.float32),
        terminations=np.zeros(num_steps, dtype=np.bool_),
        truncations=np.zeros(num_steps, dtype=np.bool_),
        task=TaskSpec(ENV, mission),
        success=False,
        seed=3,
        demonstrator=WHO,
    )
    data = encode_episode(episode)
    assert encode_episode(episode) == data
    assert_same(episode, decode_episode(data))


# --- determinism ----------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    for name in ("a", "b"):
        demo = ToyDemonstrator("open-then-fetch")
        writer = DatasetWriter(tmp_path / name, env_id=demo.env_id, demonstrator=WHO)
        for seed in (5, 1, 3):  # the order of writing does not matter
            writer.write(demo.demonstrate(seed))
        writer.close()
    a, b = tmp_path / "a", tmp_path / "b"
    for seed in (1, 3, 5):
        assert (a / episode_filename(seed)).read_bytes() == (
            b / episode_filename(seed)
        ).read_bytes()
    assert (a / MANIFEST_NAME).read_bytes() == (b / MANIFEST_NAME).read_bytes()
    assert dataset_hash(a) == dataset_hash(b) == dataset_info(a).hash
    assert dataset_info(a).seeds == (1, 3, 5)


def test_dataset_hash_changes_with_content(tmp_path: Path) -> None:
    write_dataset(tmp_path / "a", seeds=range(3))
    write_dataset(tmp_path / "b", seeds=range(4))
    assert dataset_hash(tmp_path / "a") != dataset_hash(tmp_path / "b")


# --- writing, resuming ----------------------------------------------------------------------------


def test_resume_after_interruption(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    writer = DatasetWriter(root, env_id=ENV, demonstrator=WHO)
    for seed in range(3):
        writer.write(make_episode(seed))
    writer.log_failure(7, "bot failed: stuck\nbehind a door")
    del writer  # interrupted: never closed

    writer = DatasetWriter(root, env_id=ENV, demonstrator=WHO)
    assert [writer.has(s) for s in range(4)] == [True, True, True, False]
    assert writer.has_failure(7) and not writer.has_failure(1)
    writer.write(make_episode(3))
    info = writer.close()
    assert info.seeds == (0, 1, 2, 3)
    assert info.failures == {7: "bot failed: stuck behind a door"}
    assert info.success_rate == pytest.approx(4 / 5)
    assert len(load_dataset(root)) == 4


def test_failure_then_success_counts_once(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path / "ds", env_id=ENV, demonstrator=WHO)
    writer.log_failure(2, "timeout")
    writer.write(make_episode(2))
    assert writer.close().failures == {}


def test_context_manager_closes(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path / "ds", env_id=ENV, demonstrator=WHO) as writer:
        writer.write(make_episode(0))
    assert dataset_info(tmp_path / "ds").seeds == (0,)
    with pytest.raises(ValueError, match="closed"):
        writer.write(make_episode(1))


def test_reopen_other_env_is_refused(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds", seeds=range(1))
    with pytest.raises(DatasetError, match="holds toy/fetch"):
        DatasetWriter(tmp_path / "ds", env_id="toy/goto", demonstrator=WHO)


def test_non_dataset_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "stuff.txt").write_text("x")
    with pytest.raises(DatasetError, match="not empty"):
        DatasetWriter(tmp_path, env_id=ENV, demonstrator=WHO)


def test_two_writers_on_one_dataset(tmp_path: Path) -> None:
    # As when collector workers each open the dataset: both list every file on close.
    first = DatasetWriter(tmp_path / "ds", env_id=ENV, demonstrator=WHO)
    second = DatasetWriter(tmp_path / "ds", env_id=ENV, demonstrator=WHO)
    first.write(make_episode(0))
    second.write(make_episode(1))
    second.log_failure(2, "stuck")
    assert second.close().seeds == (0, 1)
    info = first.close()
    assert info.seeds == (0, 1) and info.failures == {2: "stuck"}
    assert len(load_dataset(tmp_path / "ds")) == 2


def test_large_seeds_sort_numerically(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "ds", seeds=range(10**10 - 1, 10**10 + 2))
    assert dataset.seeds == (10**10 - 1, 10**10, 10**10 + 1)
    assert dataset[0].seed == 10**10 - 1


def test_write_checks_episode(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path / "ds", env_id="toy/goto", demonstrator=WHO)
    with pytest.raises(ValueError, match="toy/fetch"):
        writer.write(make_episode(0))
    writer = DatasetWriter(tmp_path / "ds2", env_id=ENV, demonstrator="someone")
    with pytest.raises(ValueError, match="someone"):
        writer.write(make_episode(0))
    episode = make_episode(0)
    bad = Episode(
        {"obs": np.array([object()] * 6)},
        None,
        episode.rewards,
        episode.terminations,
        episode.truncations,
        episode.task,
        True,
        0,
        WHO,
    )
    writer = DatasetWriter(tmp_path / "ds3", env_id=ENV, demonstrator=WHO)
    with pytest.raises(ValueError, match="object"):
        writer.write(bad)
    with pytest.raises(ValueError, match="seed"):
        writer.log_failure(-1, "negative")


def test_toy_demonstrator_is_a_demo_source() -> None:
    assert isinstance(ToyDemonstrator("goto"), DemoSource)


def test_sequence_access(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "ds", seeds=range(5))
    assert [e.seed for e in dataset[1:3]] == [1, 2]
    assert dataset[-1].seed == 4
    assert dataset.seeds == (0, 1, 2, 3, 4)
    with pytest.raises(KeyError):
        dataset.by_seed(42)
    assert "toy/fetch" in repr(dataset)


# --- corruption -----------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds")
    (tmp_path / "ds" / episode_filename(2)).unlink()
    with pytest.raises(DatasetError, match=r"seed-0000000002\.npz.*missing"):
        load_dataset(tmp_path / "ds")
    with pytest.raises(DatasetError, match="missing"):
        load_dataset(tmp_path / "ds", verify=False)


def test_altered_file_fails_sha(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds")
    path = tmp_path / "ds" / episode_filename(1)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"seed-0000000001\.npz: SHA-256"):
        load_dataset(tmp_path / "ds")
    dataset = load_dataset(tmp_path / "ds", verify=False)  # caught again on read
    with pytest.raises(DatasetError, match="SHA-256"):
        dataset.by_seed(1)


def test_truncated_file(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds")
    path = tmp_path / "ds" / episode_filename(0)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetError, match=r"seed-0000000000\.npz: 100 bytes"):
        load_dataset(tmp_path / "ds")


def test_truncated_bytes_do_not_decode() -> None:
    data = encode_episode(make_episode(0))
    with pytest.raises(DatasetError, match=r"x\.npz: not a readable episode file"):
        decode_episode(data[: len(data) // 2], where="x.npz")


def test_bad_manifest_json(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds")
    (tmp_path / "ds" / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(DatasetError, match=r"dataset\.json: manifest is not valid JSON"):
        load_dataset(tmp_path / "ds")


def test_manifest_missing_field(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds")
    path = tmp_path / "ds" / MANIFEST_NAME
    payload = json.loads(path.read_text())
    del payload["episodes"]
    path.write_text(json.dumps(payload))
    with pytest.raises(DatasetError, match="lacks the field 'episodes'"):
        dataset_info(tmp_path / "ds")


def test_wrong_format_version(tmp_path: Path) -> None:
    write_dataset(tmp_path / "ds")
    path = tmp_path / "ds" / MANIFEST_NAME
    payload = json.loads(path.read_text())
    payload["format_version"] = 99
    path.write_text(json.dumps(payload))
    with pytest.raises(DatasetError, match="format version 99"):
        load_dataset(tmp_path / "ds")


def test_episode_file_with_bad_metadata() -> None:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, array in (
            ("rewards", np.zeros(1, np.float32)),
            ("meta", np.frombuffer(b"{broken", dtype=np.uint8)),
        ):
            with zf.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, array)
    with pytest.raises(DatasetError, match=r"e\.npz: episode metadata is not valid JSON"):
        decode_episode(buffer.getvalue(), where="e.npz")


def test_episode_file_of_other_version() -> None:
    import io
    import zipfile

    data = encode_episode(make_episode(0))
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.namelist():
            payload = src.read(item)
            if item == "meta.npy":
                meta = json.loads(np.load(io.BytesIO(payload)).tobytes())
                meta["format_version"] = 0
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.frombuffer(json.dumps(meta).encode(), np.uint8))
                payload = buf.getvalue()
            dst.writestr(item, payload)
    with pytest.raises(DatasetError, match="format version 0"):
        decode_episode(out.getvalue(), where="e.npz")


def test_missing_directory_and_manifest(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such dataset directory"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no dataset manifest"):
        load_dataset(tmp_path)
