"""Carry augmentation: steady segments show skills other contents of the inventory cell."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from skillbank.learning.carry_augment import carry_swap, swap_carried
from skillbank.learning.controller_training import ControllerTrainConfig
from skillbank.learning.hierarchy_training import hindsight_target, inventory_of, train_hierarchy
from skillbank.learning.skill_training import SkillTrainConfig
from skillbank.nn.skill_policy import ActionSpec
from skillbank.types import Episode
from tests.learning.test_hindsight import BALL, FLOOR, FORWARD, TURN, _walk_and_pickup, ball_episode

AGENT = 7  # row-major cells of the 3x3 view: the agent's own cell shows what it carries


def _seeing_episode(seed: int) -> Episode:
    """:func:`ball_episode` whose walk moves forward onto floor and turns away from walls."""
    episode = ball_episode(seed, colour=1 + seed % 3)
    front = np.asarray(episode.observations["image"])[:-2, 1, 1, 0]  # (T-1,) the walk's views
    actions = np.asarray(episode.actions).copy()
    actions[:-1] = np.where(front == FLOOR, FORWARD, TURN)
    return dataclasses.replace(episode, actions=actions)


def _segments(count: int = 6):  # type: ignore[no-untyped-def]
    segments, _ = _walk_and_pickup([_seeing_episode(s) for s in range(count)])
    target = hindsight_target(segments)
    assert target is not None
    return segments, target


def test_the_walks_are_steady_and_the_pick_ups_are_not() -> None:
    segments, target = _segments()
    cell = inventory_of(segments, target)
    assert cell == AGENT
    swap = carry_swap(segments, target.grid, cell)
    # two segments per episode: the walk (carrying nothing throughout), the pick-up (takes it)
    assert swap.steady.tolist() == [True, False] * 6
    type_group, colour_group = swap.contents.split(list(target.groups), dim=-1)
    kinds, colours = type_group.argmax(-1).tolist(), colour_group.argmax(-1).tolist()
    held = sorted(zip(kinds, colours, strict=True))
    assert held == [(FLOOR, 0), (BALL, 1), (BALL, 2), (BALL, 3)]  # nothing, or a ball of 3
    features = torch.from_numpy(segments.features[0]).float()  # stored as uint8
    torch.testing.assert_close(features[:, swap.columns], target.content(features, AGENT))


def test_swaps_reach_only_the_inventory_of_steady_segments() -> None:
    segments, target = _segments()
    swap = carry_swap(segments, target.grid, AGENT)
    starts = torch.from_numpy(segments.start_features())
    segment_of = torch.arange(segments.num_segments).repeat(20)  # (240,)
    inputs = starts[segment_of]  # (240, O)
    before = inputs.clone()
    out = swap_carried(inputs, segment_of, swap, 1.0, torch.Generator().manual_seed(0))
    assert torch.equal(inputs, before)  # a new tensor
    changed = (out != inputs).any(dim=1)
    assert not changed[~swap.steady[segment_of]].any()  # pick-ups keep their true inventory
    others = torch.ones(inputs.shape[1], dtype=torch.bool)
    others[swap.columns] = False
    assert torch.equal(out[:, others], inputs[:, others])
    drawn = out[:, swap.columns][swap.steady[segment_of]]  # (120, C)
    assert all((row == swap.contents).all(dim=1).any() for row in drawn)
    assert len(torch.unique(drawn, dim=0)) == len(swap.contents)  # every content drawn
    kept = swap_carried(inputs, segment_of, swap, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(kept, inputs)


def test_augmented_walks_act_alike_whatever_is_carried() -> None:
    segments, target = _segments(24)
    swap = carry_swap(segments, target.grid, AGENT)
    walks = [i for i in range(segments.num_segments) if swap.steady[i]]
    feats, _, owner = segments.steps(walks)
    empty = torch.from_numpy(feats)  # (S, O) walk steps, carrying nothing
    carried = empty.clone()
    ball = next(c for c in swap.contents if c[BALL] > 0)
    carried[:, swap.columns] = ball  # a ball drawn in the agent's own cell
    gaps = []
    for rate in (0.0, 1.0):
        skill = SkillTrainConfig(
            hidden_dims=(32,),
            num_epochs=20,
            batch_size=32,
            conv_channels=(4,),
            argument="hindsight",
            carry_augment=rate,
        )
        _, (walk, _) = train_hierarchy(
            segments,
            [0, 1] * 24,
            np.eye(2, 4, dtype=np.float32),
            [],
            2,
            ActionSpec("discrete", 3),
            skill,
            ControllerTrainConfig(hidden_dims=(32,)),
        )
        argument = target.content(torch.from_numpy(segments.end_features(walks)))[
            torch.as_tensor(owner)
        ]  # each step's walk target, (S, C)
        with torch.no_grad():
            gap = (walk(empty, argument)[0] - walk(carried, argument)[0]).abs().mean()
        gaps.append(float(gap))
    assert gaps[1] < 0.5 * gaps[0]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"carry_augment": 1.5}, "in \\[0, 1\\]"),
        ({"carry_augment": 0.5}, "argument='hindsight'"),
    ],
)
def test_config_rejects_a_bad_carry_augment(settings: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SkillTrainConfig(**settings)  # type: ignore[arg-type]
