"""Hindsight targets: a segment's argument is the content of the cell it ends facing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from skillbank.learning.controller_training import ControllerTrainConfig
from skillbank.learning.features import ObservationFeaturizer
from skillbank.learning.hierarchy_training import (
    hindsight_target,
    hindsight_targets,
    segment_arguments,
    train_hierarchy,
)
from skillbank.learning.segment_set import SegmentSet
from skillbank.learning.sighting import grid_cells, local_actions
from skillbank.learning.skill_training import SkillTrainConfig
from skillbank.nn.controller import Controller, ControllerConfig
from skillbank.nn.skill_policy import ActionSpec, SkillPolicy
from skillbank.types import Episode, TaskSpec
from tests.learning.test_hierarchy_training import _cue_segments

FORWARD, TURN, PICKUP = 0, 1, 2
FLOOR, WALL, BALL = 1, 2, 5
FRONT = 4  # row-major cells of the 3x3 view: the agent sits at the bottom middle


def ball_episode(seed: int, num_steps: int = 10, colour: int = 3) -> Episode:
    """An egocentric 3x3 view (type, colour): a ball of ``colour`` sits in the top-left corner
    from the start, lies in front just before the final pick-up and is carried after it. Moves
    flip floor and wall in every cell but the agent's own; the pick-up changes only the front
    cell and the agent's."""
    rng = np.random.default_rng(seed)
    images = np.zeros((num_steps + 1, 3, 3, 2), np.uint8)  # (T+1, H, W, C)
    rows, cols = np.indices((3, 3))
    for t in range(num_steps):  # every move flips floor and wall in every cell
        images[t, ..., 0] = np.where((rows + cols + t) % 2, FLOOR, WALL)
    images[num_steps] = images[num_steps - 1]  # the pick-up moves nothing
    images[:, 2, 1] = (FLOOR, 0)
    images[: num_steps - 1, 0, 0] = (BALL, colour)
    images[num_steps - 1, 1, 1] = (BALL, colour)
    images[num_steps, 1, 1] = (FLOOR, 0)
    images[num_steps, 2, 1] = (BALL, colour)
    actions = rng.choice([FORWARD, TURN], size=num_steps)
    actions[-1] = PICKUP
    return Episode(
        observations={"image": images},
        actions=actions.astype(np.int64),
        rewards=np.zeros(num_steps, np.float32),
        terminations=np.eye(num_steps, dtype=np.bool_)[-1],
        truncations=np.zeros(num_steps, np.bool_),
        task=TaskSpec("test/ball"),
        success=True,
        seed=seed,
        demonstrator="test",
    )


def _walk_and_pickup(episodes: list[Episode]) -> tuple[SegmentSet, ObservationFeaturizer]:
    """Two segments per episode: the walk (ends facing the ball), then the pick-up."""
    featurizer = ObservationFeaturizer.fit(episodes)
    boundaries = [[0, e.num_steps - 1] for e in episodes]
    return SegmentSet.build(episodes, boundaries, featurizer), featurizer


def test_the_hindsight_target_is_the_front_cell_at_the_segment_end() -> None:
    episodes = [ball_episode(s, colour=1 + s % 3) for s in range(6)]
    segments, _ = _walk_and_pickup(episodes)
    (grid,) = segments.grids
    assert grid.groups and sum(grid.groups) == grid.channels
    cells = [grid_cells(f, grid) for f in segments.features]
    local = local_actions(cells, [np.asarray(a) for a in segments.actions])
    assert local.tolist() == [False, False, True]  # the pick-up acts on few cells
    target = hindsight_target(segments)
    assert target is not None and target.cell == FRONT and target.groups == grid.groups
    content = target.content(torch.from_numpy(segments.end_features([0, 1, 2])))  # (3, C)
    type_group, colour_group = content.split(list(grid.groups), dim=-1)
    # walk of episode 0 ends facing its ball (colour 1); its pick-up ends facing the floor;
    # the walk of episode 1 ends facing a ball of colour 2
    assert type_group.argmax(-1).tolist() == [BALL, FLOOR, BALL]
    assert colour_group.argmax(-1).tolist() == [1, 0, 2]
    assert content.sum(-1).tolist() == [2.0, 2.0, 2.0]  # one value per group


def test_vector_worlds_have_no_hindsight_target() -> None:
    assert hindsight_target(_cue_segments(4)) is None


def _train(
    episodes: list[Episode], argument: str
) -> tuple[SegmentSet, Controller, list[SkillPolicy]]:
    segments, _ = _walk_and_pickup(episodes)
    skill = SkillTrainConfig(
        hidden_dims=(32,),
        num_epochs=30,
        batch_size=32,
        conv_channels=(4,),
        argument=argument,
    )
    controller, new = train_hierarchy(
        segments,
        [0, 1] * len(episodes),
        np.eye(2, 4, dtype=np.float32),
        [],
        2,
        ActionSpec("discrete", 3),
        skill,
        ControllerTrainConfig(hidden_dims=(32,)),
    )
    return segments, controller, new


def test_hindsight_training_predicts_the_target_and_feeds_pointer_skills() -> None:
    torch.manual_seed(0)
    episodes = [ball_episode(s, colour=1 + s % 3) for s in range(24)]
    _, controller, new = _train(episodes, "hindsight")
    target = controller.config.target
    assert target is not None and controller.config.arch_id == "skill-controller-target-v1"
    assert controller.config.arg_dim == target.dim
    assert controller.config.grid is not None  # the unset switch turns the CNN on for targets
    assert controller.config.history_skills == 0  # and the call history off
    for skill in new:
        assert skill.config.argument == "hindsight" and skill.config.arg_dim == target.dim
        assert skill.config.grid is not None and skill.config.grid.arg_film == "pointer"
    # held-out episodes: the controller names the walk's target (the ball and its colour)
    held, _ = _walk_and_pickup([ball_episode(100 + s, colour=1 + s % 3) for s in range(9)])
    walks = list(range(0, held.num_segments, 2))
    starts = torch.from_numpy(held.start_features())
    with torch.no_grad():
        _, predicted = controller.query_and_argument(starts[walks])  # (9, C)
    truth = target.content(torch.from_numpy(held.end_features(walks)))
    assert torch.equal(predicted, truth)
    # explaining segments by stored skills reads the same (hindsight) argument
    torch.testing.assert_close(
        segment_arguments(controller, held),
        target.content(torch.from_numpy(held.end_features(list(range(held.num_segments))))),
    )


def test_learned_argument_stays_the_default_path() -> None:
    torch.manual_seed(0)
    _, controller, new = _train([ball_episode(s) for s in range(8)], "learned")
    assert all(s.config.argument == "learned" for s in new)
    assert controller.config.target is None and controller.config.arg_dim > 0
    # learned arguments: no call history by default
    assert controller.config.arch_id == "skill-controller-v2"
    assert controller.config.grid is None  # learned arguments keep the MLP controller
    assert controller.config.arg_dim == SkillTrainConfig().arg_dim


def test_stored_skills_with_a_learned_argument_keep_it() -> None:
    torch.manual_seed(0)
    episodes = [ball_episode(s) for s in range(8)]
    segments, _, old = _train(episodes, "learned")
    config = dataclasses.replace(
        SkillTrainConfig(hidden_dims=(32,), num_epochs=1, conv_channels=(4,)),
        argument="hindsight",
    )
    frozen = old
    controller, (extra,) = train_hierarchy(
        segments,
        [0, 1] * len(episodes),
        np.eye(3, 4, dtype=np.float32),
        frozen,
        1,
        ActionSpec("discrete", 3),
        config,
        ControllerTrainConfig(hidden_dims=(32,), num_epochs=1),
    )
    assert controller.config.target is None
    assert extra.config.arg_dim == frozen[0].config.arg_dim


def test_vector_worlds_keep_the_learned_argument() -> None:
    segments = _cue_segments(8)
    config = SkillTrainConfig(hidden_dims=(16,), num_epochs=1, arg_dim=4, argument="hindsight")
    controller, (skill,) = train_hierarchy(
        segments,
        [0] * segments.num_segments,
        np.eye(1, 4, dtype=np.float32),
        [],
        1,
        ActionSpec("discrete", 2),
        config,
        ControllerTrainConfig(hidden_dims=(16,), num_epochs=1),
    )
    assert controller.config.target is None and controller.config.arg_dim == 4
    assert skill.config.arg_dim == 4


def test_config_rejects_an_unknown_argument() -> None:
    with pytest.raises(ValueError, match=r"SkillTrainConfig\.argument"):
        SkillTrainConfig(argument="oracle")
    with pytest.raises(ValueError, match="target_weight"):
        ControllerTrainConfig(target_weight=-1.0)


def _with_mission(episode: Episode, colour: int, lead: int) -> Episode:
    """``episode`` with a 16-token mission naming the ball's colour after ``lead`` fillers."""
    tokens = np.zeros(16, np.int64)
    words = [7] * lead + [8, 9, 10 + colour, 20]  # fillers, "go", "to", colour word, "ball"
    tokens[: len(words)] = words
    mission = np.repeat(tokens[None], episode.num_steps + 1, axis=0)
    return dataclasses.replace(episode, observations={**episode.observations, "mission": mission})


def test_a_copy_head_names_the_target_from_the_mission_and_the_rest_from_a_prior() -> None:
    torch.manual_seed(0)

    def episodes(seeds: range) -> list[Episode]:
        return [_with_mission(ball_episode(s, colour=1 + s % 3), 1 + s % 3, s % 4) for s in seeds]

    segments, _ = _walk_and_pickup(episodes(range(24)))
    assert segments.tokens, "the mission is read as a token sequence"
    skill = SkillTrainConfig(
        hidden_dims=(32,), num_epochs=30, batch_size=32, conv_channels=(4,), argument="hindsight"
    )
    controller, _ = train_hierarchy(
        segments,
        [0, 1] * 24,
        np.eye(2, 4, dtype=np.float32),
        [],
        2,
        ActionSpec("discrete", 3),
        skill,
        ControllerTrainConfig(hidden_dims=(32,), target_copy=True),
    )
    assert controller.config.arch_id == "skill-controller-target-v2"
    assert controller.config.target_tokens == segments.tokens[0]
    target = controller.config.target
    assert target is not None
    held, _ = _walk_and_pickup(episodes(range(100, 109)))
    starts = torch.from_numpy(held.start_features())
    with torch.no_grad():
        _, predicted = controller.query_and_argument(starts)  # (18, C)
    truth = target.content(torch.from_numpy(held.end_features(list(range(held.num_segments)))))
    # walks: the ball of the mission's colour; pick-ups: the floor left in front (the prior)
    assert torch.equal(predicted, truth)


def test_relabelled_targets_send_waypoints_to_the_named_ball() -> None:
    """Three segments: a waypoint walk (ends facing floor or wall), the walk to the ball (named
    by the mission's colour word), the pick-up (ends facing floor: unnamed, nothing after it)."""
    episodes = [
        _with_mission(ball_episode(s, colour=1 + s % 3), 1 + s % 3, s % 4) for s in range(30)
    ]
    featurizer = ObservationFeaturizer.fit(episodes)
    segments = SegmentSet.build(episodes, [[0, 4, e.num_steps - 1] for e in episodes], featurizer)
    target = hindsight_target(segments)
    assert target is not None
    own = hindsight_targets(segments, target)
    relabelled = hindsight_targets(segments, target, relabel="next")
    waypoint, walk, pickup = (list(range(k, segments.num_segments, 3)) for k in range(3))
    assert not torch.equal(own[waypoint], own[walk])
    torch.testing.assert_close(relabelled[waypoint], own[walk])
    torch.testing.assert_close(relabelled[walk], own[walk])
    torch.testing.assert_close(relabelled[pickup], own[pickup])
    # nothing is held at any segment's start: "nearby-held" relabels as "nearby" does
    torch.testing.assert_close(
        hindsight_targets(segments, target, relabel="nearby-held"),
        hindsight_targets(segments, target, relabel="nearby"),
    )
    # explaining segments by stored skills reads the relabelled targets too
    controller = Controller(
        ControllerConfig(segments.obs_dim, 4, arg_dim=target.dim, target=target)
    )
    torch.testing.assert_close(segment_arguments(controller, segments, relabel="next"), relabelled)
    torch.testing.assert_close(segment_arguments(controller, segments), own)
