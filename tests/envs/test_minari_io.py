"""Minari round trips: lossless (images included), state-only episodes, foreign datasets, errors."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from skillbank.envs.dataset import DatasetWriter, episode_filename, load_dataset
from skillbank.envs.minari_io import (
    default_minari_name,
    export_minari,
    import_minari,
    minari_root,
)
from skillbank.envs.toy import ToyDemonstrator
from skillbank.errors import DatasetError, MissingExtraError
from skillbank.types import Episode, SubgoalAnnotation, TaskSpec

pytest.importorskip("minari")
pytest.importorskip("h5py")


def image_episode(seed: int, *, state_only: bool = False) -> Episode:
    """An episode with a 40x40 RGB image (Minari treats >= 32x32 uint8 as an image space)."""
    rng = np.random.default_rng(seed)
    num_steps = 4 + seed
    return Episode(
        observations={
            "image": rng.integers(0, 256, (num_steps + 1, 40, 40, 3), dtype=np.uint8),
            "direction": rng.integers(0, 4, num_steps + 1).astype(np.int64),
        },
        actions=None if state_only else rng.standard_normal((num_steps, 2)).astype(np.float32),
        rewards=rng.random(num_steps).astype(np.float32),
        terminations=np.arange(num_steps) == num_steps - 1,
        truncations=np.zeros(num_steps, dtype=np.bool_),
        task=TaskSpec("babyai/GoToLocal", mission=f"go to the red ball {seed}"),
        success=seed != 2,
        seed=seed,
        demonstrator="bot",
        annotations=None if seed == 1 else SubgoalAnnotation((0, 2), ("GoNextTo", "Pickup")),
    )


def test_round_trip_is_byte_identical(tmp_path: Path) -> None:
    writer = DatasetWriter(
        tmp_path / "ds", env_id="babyai/GoToLocal", demonstrator="bot", meta={"k": "v"}
    )
    for seed in range(4):
        writer.write(image_episode(seed, state_only=seed == 3))
    writer.log_failure(9, "bot failed")
    original = writer.close()

    path = export_minari(tmp_path / "ds", root=tmp_path / "minari")
    assert path == (tmp_path / "minari" / "skillbank" / "babyai-GoToLocal-v0").absolute()
    back = import_minari(
        "skillbank/babyai-GoToLocal-v0", tmp_path / "back", root=tmp_path / "minari"
    )

    assert back.seeds == original.seeds and back.failures == original.failures
    assert back.hash == original.hash  # same seeds, same file hashes
    for seed in original.seeds:
        name = episode_filename(seed)
        assert (tmp_path / "back" / name).read_bytes() == (tmp_path / "ds" / name).read_bytes()
    assert back.meta["k"] == "v" and back.meta["minari_dataset"] == "skillbank/babyai-GoToLocal-v0"
    restored = load_dataset(tmp_path / "back").by_seed(3)
    assert restored.state_only and restored.observations["image"].dtype == np.uint8


def test_toy_round_trip_and_minari_can_read_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo = ToyDemonstrator("fetch")
    with DatasetWriter(tmp_path / "ds", env_id=demo.env_id, demonstrator=demo.demonstrator) as w:
        for seed in range(5):
            w.write(demo.demonstrate(seed))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    assert minari_root() == (tmp_path / "minari").absolute()
    dataset = load_dataset(tmp_path / "ds")
    name = default_minari_name(dataset.info)
    assert name == "skillbank/toy-fetch-v0"
    export_minari(dataset)

    import minari

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert name in minari.list_local_datasets()
        theirs = minari.load_dataset(name)
    assert theirs.total_episodes == 5
    first = next(iter(theirs.iterate_episodes()))
    np.testing.assert_array_equal(first.observations["obs"], dataset[0].observations["obs"])
    np.testing.assert_array_equal(first.actions, dataset[0].actions)

    back = import_minari(name, tmp_path / "back")
    assert back.hash == dataset.info.hash
    for ours, theirs_episode in zip(dataset, load_dataset(tmp_path / "back"), strict=True):
        assert ours.annotations == theirs_episode.annotations
        assert ours.task == theirs_episode.task


def test_nested_observation_names_round_trip(tmp_path: Path) -> None:
    base = image_episode(0)
    episode = Episode(
        {
            "camera/left": base.observations["image"],
            "camera/right": base.observations["image"] // 2,
            "direction": base.observations["direction"],
        },
        base.actions,
        base.rewards,
        base.terminations,
        base.truncations,
        base.task,
        base.success,
        base.seed,
        base.demonstrator,
    )
    with DatasetWriter(tmp_path / "ds", env_id="babyai/GoToLocal", demonstrator="bot") as writer:
        writer.write(episode)
    export_minari(tmp_path / "ds", "nested-v0", root=tmp_path / "m")
    import_minari("nested-v0", tmp_path / "back", root=tmp_path / "m")
    name = episode_filename(0)
    assert (tmp_path / "back" / name).read_bytes() == (tmp_path / "ds" / name).read_bytes()


def test_all_state_only_dataset(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path / "ds", env_id="babyai/GoToLocal", demonstrator="bot") as writer:
        for seed in range(2):
            writer.write(image_episode(seed, state_only=True))
    export_minari(tmp_path / "ds", "watching-v1", root=tmp_path / "m")
    info = import_minari("watching-v1", tmp_path / "back", root=tmp_path / "m")
    assert info.state_only and info.num_episodes == 2


def test_import_foreign_minari_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import minari
    from minari.data_collector import EpisodeBuffer

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    rng = np.random.default_rng(0)
    buffers = [
        EpisodeBuffer(
            id=i,
            seed=100 + i,
            observations=rng.random((6, 4)).astype(np.float32),
            actions=np.array([0, 1, 0, 1, 1]),
            rewards=np.ones(5, np.float32),
            terminations=np.array([0, 0, 0, 0, i != 1], dtype=bool),
            truncations=np.array([0, 0, 0, 0, i == 1], dtype=bool),
            infos={},
        )
        for i in range(3)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            "cartpole/random-v0", buffers, env="CartPole-v1", algorithm_name="random"
        )
    info = import_minari("cartpole/random-v0", tmp_path / "out")
    assert (info.env_id, info.demonstrator, info.seeds) == (
        "CartPole-v1",
        "random",
        (100, 101, 102),
    )
    assert [r.success for r in info.episodes] == [True, False, True]
    episode = load_dataset(tmp_path / "out").by_seed(100)
    np.testing.assert_array_equal(episode.observations["obs"], buffers[0].observations)
    overridden = import_minari(
        "cartpole/random-v0", tmp_path / "out2", env_id="cartpole/x", demonstrator="me"
    )
    assert (overridden.env_id, overridden.demonstrator) == ("cartpole/x", "me")


def test_export_refuses_existing_name(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path / "ds", env_id="babyai/GoToLocal", demonstrator="bot") as writer:
        writer.write(image_episode(0))
    export_minari(tmp_path / "ds", "demo-v0", root=tmp_path / "m")
    with pytest.raises(DatasetError, match="already exists"):
        export_minari(tmp_path / "ds", "demo-v0", root=tmp_path / "m")
    assert [p.name for p in (tmp_path / "m").iterdir()] == ["demo-v0"]  # no staging left over


def test_export_refuses_empty_and_bad_names(tmp_path: Path) -> None:
    DatasetWriter(tmp_path / "ds", env_id="toy/goto", demonstrator="x").close()
    with pytest.raises(DatasetError, match="no episodes"):
        export_minari(tmp_path / "ds", root=tmp_path / "m")
    with pytest.raises(ValueError, match="name-v<version>"):
        export_minari(tmp_path / "ds", "no version", root=tmp_path / "m")


def test_export_of_corrupted_dataset_names_the_file(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path / "ds", env_id="babyai/GoToLocal", demonstrator="bot") as writer:
        writer.write(image_episode(0))
    (tmp_path / "ds" / episode_filename(0)).write_bytes(b"garbage")
    with pytest.raises(DatasetError, match=r"seed-0000000000\.npz"):
        export_minari(tmp_path / "ds", root=tmp_path / "m")


def test_import_missing_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no local Minari dataset named 'nope-v0'") as caught:
        import_minari("nope-v0", tmp_path / "out", root=tmp_path)
    assert "MINARI_DATASETS_PATH" in caught.value.hint


def test_missing_minari_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "minari", None)
    with pytest.raises(MissingExtraError) as caught:
        import_minari("x-v0", tmp_path / "out", root=tmp_path)
    assert caught.value.hint == "pip install 'skillbank[minari]'"
