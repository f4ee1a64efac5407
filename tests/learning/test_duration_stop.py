"""Duration-aware termination (``skill.duration_bins``): a skill stops by the time it has run.

The case it is for: one skill holds pick-ups and drops, one action each. The observation right
after a pick-up (the object held, nothing in front) is the observation a drop starts from, so a
termination head that reads the observation alone cannot tell "done" from "about to drop"; one
that also reads how many actions the call has taken can.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from skillbank.agent import ProceduralMemoryAgent
from skillbank.architectures import expected_tensors
from skillbank.learning.controller_training import ControllerTrainConfig
from skillbank.learning.hierarchy_training import segment_arguments, train_hierarchy
from skillbank.learning.segment_set import SegmentSet
from skillbank.learning.skill_training import SkillTrainConfig, train_skill_policy
from skillbank.memory.store import SkillMemory
from skillbank.nn.skill_policy import (
    ActionSpec,
    SkillPolicy,
    SkillPolicyConfig,
    StackedSkillPolicies,
    duration_one_hot,
)
from tests.agent.test_hindsight_agent import HINDSIGHT_FAST, _rollout_actions
from tests.learning.test_hindsight import ball_episode

PICK_UP, DROP, WALK = 0, 1, 2
FREE_FACING_OBJECT = (0.0, 1.0)  # (holding, facing an object)
HOLDING_FACING_NOTHING = (1.0, 0.0)


def _pick_walk_drop(episodes: int) -> tuple[SegmentSet, list[int]]:
    """Episodes "pick up, walk (3 steps), drop"; returns the segments and the interaction
    segments (pick-ups and drops: one skill)."""
    rng = np.random.default_rng(0)
    features, actions, spans, interactions = [], [], [], []
    for e in range(episodes):
        obs = [FREE_FACING_OBJECT, *[HOLDING_FACING_NOTHING] * 4, FREE_FACING_OBJECT]
        f = np.asarray(obs, np.float32) + rng.normal(0, 0.05, (6, 2)).astype(np.float32)
        features.append(f)
        actions.append(np.array([PICK_UP, WALK, WALK, WALK, DROP], np.int64))
        interactions += [len(spans), len(spans) + 2]
        spans += [(e, 0, 1), (e, 1, 4), (e, 4, 5)]
    return SegmentSet(tuple(features), tuple(actions), tuple(spans)), interactions


def _stop_after(policy: SkillPolicy, taken: int, argument: torch.Tensor | None = None) -> float:
    """Stop probability where a pick-up ends (and a drop starts), after ``taken`` actions."""
    x = torch.tensor([HOLDING_FACING_NOTHING])
    with torch.no_grad():
        return float(torch.sigmoid(policy(x, argument, torch.tensor([taken]))[1])[0])


CONFIG = SkillTrainConfig(
    hidden_dims=(16,), num_epochs=40, batch_size=16, learning_rate=3e-3, arg_dim=0, duration_bins=0
)


def test_an_observation_only_head_cannot_tell_a_finished_pick_up_from_a_drop_to_come() -> None:
    segments, interactions = _pick_walk_drop(20)
    policy = train_skill_policy(segments, interactions, ActionSpec("discrete", 3), CONFIG)
    assert policy.config.duration_bins == 0  # turned off (``skill.duration_bins=0``)
    assert 0.2 < _stop_after(policy, 1) < 0.8  # both labels on one observation: chance


def test_a_duration_aware_head_stops_after_the_one_action() -> None:
    segments, interactions = _pick_walk_drop(20)
    config = dataclasses.replace(CONFIG, duration_bins=4)
    policy = train_skill_policy(segments, interactions, ActionSpec("discrete", 3), config)
    assert policy.config.duration_bins == 4
    assert _stop_after(policy, 1) > 0.9  # after its one action: done
    assert _stop_after(policy, 0) < 0.1  # called here: drop first
    x = torch.tensor([HOLDING_FACING_NOTHING])
    assert int(policy(x, None, torch.tensor([0]))[0].argmax()) == DROP


def test_joint_training_gives_new_skills_duration_aware_heads() -> None:
    segments, interactions = _pick_walk_drop(20)
    labels = [1] * segments.num_segments
    for i in interactions:
        labels[i] = 0
    config = dataclasses.replace(
        CONFIG, arg_dim=2, duration_bins=4, validation_fraction=0.0, num_epochs=60
    )
    controller, (interaction, walk) = train_hierarchy(
        segments,
        labels,
        np.eye(2, 4, dtype=np.float32),
        [],
        2,
        ActionSpec("discrete", 3),
        config,
        dataclasses.replace(ControllerTrainConfig(), hidden_dims=(16,)),
    )
    assert interaction.config.duration_bins == walk.config.duration_bins == 4
    # each call with the argument its decision point gave: the first pick-up's, the first drop's
    arguments = segment_arguments(controller, segments)  # (N, D)
    pick_up, drop = arguments[interactions[0]][None], arguments[interactions[1]][None]
    assert _stop_after(interaction, 1, pick_up) > 0.9
    assert _stop_after(interaction, 0, drop) < 0.1


def test_duration_aware_heads_are_the_default() -> None:
    assert SkillTrainConfig().duration_bins == 8


def test_duration_bins_are_stored_checked_and_stacked() -> None:
    torch.manual_seed(0)
    config = SkillPolicyConfig(
        obs_dim=5, action=ActionSpec("discrete", 3), hidden_dims=(8, 8), arg_dim=2, duration_bins=6
    )
    assert SkillPolicyConfig.from_json(config.to_json()) == config
    policies = [SkillPolicy(config) for _ in range(3)]
    shapes = {k: tuple(v.shape) for k, v in policies[0].state_dict().items()}
    expected = expected_tensors(config.arch_id, config.to_json())
    assert {k: v.shape for k, v in expected.items()} == shapes
    assert shapes["termination_head.weight"] == (1, 8 + 6)
    for policy in policies:
        torch.nn.init.normal_(policy.termination_head.weight)
    x, arg, taken = torch.randn(7, 5), torch.randn(7, 2), torch.tensor([0, 1, 2, 3, 5, 9, 70])
    params, stops = StackedSkillPolicies(policies)(x, arg, taken)
    for i, policy in enumerate(policies):
        p, s = policy(x, arg, taken)
        torch.testing.assert_close(params[i], p.detach())
        torch.testing.assert_close(stops[i], s.detach())
    assert not torch.allclose(stops[0], StackedSkillPolicies(policies)(x, arg, taken + 40)[1])
    assert duration_one_hot(None, 6, 2).sum() == 0  # duration unknown: no bin
    with pytest.raises(ValueError, match="duration_bins"):
        SkillPolicyConfig(obs_dim=5, action=ActionSpec("discrete", 3), duration_bins=1)
    with pytest.raises(ValueError, match="duration_bins"):
        SkillTrainConfig(duration_bins=40)


def test_the_agent_stores_duration_aware_skills_and_its_executor_counts_actions(
    tmp_path: Path,
) -> None:
    episodes = [ball_episode(s, num_steps=8 + s % 3, colour=1 + s % 3) for s in range(16)]
    probe = [ball_episode(100 + s, num_steps=8, colour=1 + s % 3) for s in range(4)]
    config = HINDSIGHT_FAST.with_settings(["skill.duration_bins=5"])
    with SkillMemory(tmp_path / "m") as memory:
        agent = ProceduralMemoryAgent(memory, config)
        agent.learn([episodes])
        _, _, policies = agent.skills()
        assert policies and all(p.config.duration_bins == 5 for p in policies)
        assert memory.verify() == []
        before = _rollout_actions(agent, probe)
        # Heads that fire on the count alone (two actions or more): every call is two long.
        executor = agent.executor()
        for stacked, _ in executor._groups:
            width = stacked.trunk_weights[-1].shape[1]
            stacked.stop_weight[:, :, :width] = 0.0
            stacked.stop_weight[:, :, width:] = torch.tensor([-9.0, -9.0, 9.0, 9.0, 9.0])
            stacked.stop_bias[:] = 0.0
        executor.reset(2)
        obs = {k: np.stack([v[0], v[0]]) for k, v in probe[0].observations.items()}
        counts = []
        for _ in range(6):
            executor.act(obs)
            counts.append(executor._steps_in_skill.tolist())
        assert counts == [[1, 1], [2, 2]] * 3
    with SkillMemory(tmp_path / "m") as memory:
        again = ProceduralMemoryAgent(memory, config)
        assert _rollout_actions(again, probe) == before
