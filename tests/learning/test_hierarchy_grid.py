"""The grid trunk in learning: the featurizer's grid layout, joint training of v3 modules."""

from __future__ import annotations

import dataclasses

import numpy as np
import numpy.typing as npt
import torch

from skillbank.agent.replay import SegmentReplay
from skillbank.learning.controller_training import ControllerTrainConfig, train_controller
from skillbank.learning.features import ObservationFeaturizer
from skillbank.learning.hierarchy_training import segment_arguments, train_hierarchy
from skillbank.learning.segment_set import SegmentSet, grid_slices
from skillbank.learning.skill_training import SkillTrainConfig, train_skill_policy
from skillbank.nn.skill_policy import ActionSpec
from skillbank.types import Episode, TaskSpec


def grid_episode(seed: int, length: int = 6, size: int = 5) -> Episode:
    """A (size x size x 2) grid (object id, colour) with one object; the action says where it
    is: 0 left of the centre column, 1 right of it, 2 in it. ``pos`` is a float side entry."""
    rng = np.random.default_rng(seed)
    image = np.zeros((length + 1, size, size, 2), np.int64)
    actions = np.zeros(length, np.int64)
    for t in range(length + 1):
        row, col = rng.integers(0, size, 2)
        image[t, row, col] = (1 + rng.integers(0, 2), rng.integers(0, 3))
        if t < length:
            actions[t] = 0 if col < size // 2 else (1 if col > size // 2 else 2)
    observations = {"image": image, "pos": rng.normal(size=(length + 1, 2)).astype(np.float32)}
    return Episode(
        observations=observations,
        actions=actions,
        rewards=np.zeros(length, np.float32),
        terminations=np.zeros(length, np.bool_),
        truncations=np.zeros(length, np.bool_),
        task=TaskSpec("test/grid"),
        success=True,
        seed=seed,
        demonstrator="test",
    )


def _segments(episodes: list[Episode]) -> tuple[SegmentSet, ObservationFeaturizer]:
    featurizer = ObservationFeaturizer.fit(episodes)
    return SegmentSet.build(episodes, [[0, 3] for _ in episodes], featurizer), featurizer


def test_grid_slices_follow_the_featurizer_layout() -> None:
    episodes = [grid_episode(s) for s in range(4)]
    segments, featurizer = _segments(episodes)
    (grid,) = segments.grids
    assert segments.grids == grid_slices(featurizer)
    spec = next(s for s in featurizer.specs if s.name == "image")
    assert (grid.height, grid.width, grid.channels) == (5, 5, sum(spec.cardinalities))
    offset = sum(s.dim for s in featurizer.specs[: featurizer.specs.index(spec)])
    assert grid.offset == offset
    # the slice, read cell by cell, is each cell's one-hot ids
    feats = featurizer.transform({k: v[:1] for k, v in episodes[0].observations.items()})
    cells = feats[0, grid.offset : grid.offset + grid.size].reshape(5, 5, grid.channels)
    ids = episodes[0].observations["image"][0]  # (5, 5, 2)
    first = spec.cardinalities[0]
    np.testing.assert_array_equal(cells[:, :, :first].argmax(-1), ids[..., 0])
    np.testing.assert_array_equal(cells[:, :, first:].argmax(-1), ids[..., 1])
    # vector worlds have none; subsets and replays keep the layout
    vector = dataclasses.replace(segments, grids=())
    assert not vector.subset([0]).grids and segments.subset([0, 1]).grids == segments.grids
    replay = SegmentReplay.from_segments(segments, [0] * segments.num_segments, ["s"])
    merged, _ = replay.merged_with(segments, [0] * segments.num_segments, ["s"])
    assert merged.grids == segments.grids


def _accuracy(policy_out: torch.Tensor, actions: npt.NDArray[np.int64]) -> float:
    return float((policy_out.argmax(-1).numpy() == actions).mean())


def test_joint_training_builds_grid_modules_that_fit() -> None:
    torch.manual_seed(0)
    segments, _ = _segments([grid_episode(s) for s in range(30)])
    skill_config = SkillTrainConfig(
        hidden_dims=(32,),
        num_epochs=15,
        batch_size=32,
        arg_dim=2,
        grid_trunk=True,
        conv_channels=(8, 8),
    )
    controller_config = ControllerTrainConfig(
        hidden_dims=(32,), grid_trunk=True, conv_channels=(4,), kernel_size=2, history=False
    )
    controller, (skill,) = train_hierarchy(
        segments,
        [0] * segments.num_segments,
        np.eye(1, 4, dtype=np.float32),
        [],
        1,
        ActionSpec("discrete", 3),
        skill_config,
        controller_config,
    )
    assert skill.config.arch_id == "skill-policy-v3" and skill.grid is not None
    assert controller.config.arch_id == "skill-controller-v3"
    assert controller.config.grid is not None and controller.config.grid.kernel_size == 2
    feats, acts, owner = segments.steps(list(range(segments.num_segments)))
    arguments = segment_arguments(controller, segments)[torch.from_numpy(owner)]  # (S, D)
    with torch.no_grad():
        params, _ = skill(torch.from_numpy(feats), arguments)
    assert _accuracy(params, acts.astype(np.int64)) >= 0.9
    # the switch off: the same data gives today's MLP modules
    off = dataclasses.replace(skill_config, grid_trunk=False, num_epochs=1)
    _, (mlp,) = train_hierarchy(
        segments,
        [0] * segments.num_segments,
        np.eye(1, 4, dtype=np.float32),
        [],
        1,
        ActionSpec("discrete", 3),
        off,
        dataclasses.replace(controller_config, grid_trunk=False),
    )
    assert mlp.config.arch_id == "skill-policy-v2" and mlp.grid is None


def test_separate_training_builds_grid_modules() -> None:
    segments, _ = _segments([grid_episode(s) for s in range(10)])
    config = SkillTrainConfig(hidden_dims=(16,), num_epochs=1, arg_dim=0, grid_trunk=True)
    policy = train_skill_policy(segments, [0, 1, 2], ActionSpec("discrete", 3), config)
    assert policy.config.arch_id == "skill-policy-v3" and policy.config.arg_dim == 0
    controller = train_controller(
        segments,
        [0] * segments.num_segments,
        np.eye(2, 4, dtype=np.float32),
        ControllerTrainConfig(hidden_dims=(16,), num_epochs=1, grid_trunk=True, history=False),
    )
    assert controller.config.arch_id == "skill-controller-v3"
