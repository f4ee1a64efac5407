"""Hindsight arguments through the agent: stored, reloaded, acting the same; old memories act."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from skillbank.agent import AgentConfig, ProceduralMemoryAgent
from skillbank.learning.controller_training import ControllerTrainConfig
from skillbank.learning.skill_training import SkillTrainConfig
from skillbank.learning.skill_vae import SkillVAETrainConfig
from skillbank.memory.store import SkillMemory
from skillbank.types import Episode
from tests.learning.test_hindsight import _with_mission, ball_episode

HINDSIGHT_FAST = AgentConfig(
    vae=SkillVAETrainConfig(num_epochs=2),
    skill=SkillTrainConfig(num_epochs=3, conv_channels=(4, 4), argument="hindsight"),
    controller=ControllerTrainConfig(num_epochs=3),
    num_envs=4,
    seed=0,
)


def _rollout_actions(agent: ProceduralMemoryAgent, episodes: list[Episode]) -> list[list[int]]:
    """The executor's actions, batched over ``episodes``, fed each episode's own observations."""
    executor = agent.executor()
    executor.reset(len(episodes))
    steps = min(e.num_steps for e in episodes)
    actions = []
    for t in range(steps):
        batch = {
            k: np.stack([np.asarray(e.observations[k][t]) for e in episodes])
            for k in episodes[0].observations
        }
        actions.append(executor.act(batch).astype(int).tolist())
    return actions


def test_a_hindsight_agent_acts_the_same_after_reload(tmp_path: Path) -> None:
    episodes = [ball_episode(s, num_steps=8 + s % 3, colour=1 + s % 3) for s in range(16)]
    probe = [ball_episode(100 + s, num_steps=8, colour=1 + s % 3) for s in range(4)]
    with SkillMemory(tmp_path / "m") as memory:
        agent = ProceduralMemoryAgent(memory, HINDSIGHT_FAST)
        agent.learn([episodes])
        assert agent.controller is not None
        config = agent.controller.config
        assert config.arch_id == "skill-controller-target-v1" and config.target is not None
        _, _, policies = agent.skills()
        assert policies and all(p.config.argument == "hindsight" for p in policies)
        assert all(p.config.arg_dim == config.target.dim for p in policies)
        before = _rollout_actions(agent, probe)
        assert memory.verify() == []
    with SkillMemory(tmp_path / "m") as memory:
        again = ProceduralMemoryAgent(memory, HINDSIGHT_FAST)  # same executor seed
        assert again.controller is not None and again.controller.config == config
        assert _rollout_actions(again, probe) == before


def test_sampled_targets_are_seeded(tmp_path: Path) -> None:
    """``sample_targets``: the controller's targets are drawn (from the executor's seeded
    generator), so the same seed acts the same."""
    episodes = [ball_episode(s, num_steps=8 + s % 3, colour=1 + s % 3) for s in range(16)]
    probe = [ball_episode(100 + s, num_steps=8, colour=1 + s % 3) for s in range(4)]
    config = dataclasses.replace(HINDSIGHT_FAST, sample_targets=True)
    with SkillMemory(tmp_path / "m") as memory:
        agent = ProceduralMemoryAgent(memory, config)
        agent.learn([episodes])
        assert agent.executor().sample_targets
        first = _rollout_actions(agent, probe)
        assert _rollout_actions(agent, probe) == first


@pytest.mark.parametrize(("copy_done", "context"), [(False, 0), (True, 0), (True, 1)])
def test_phrase_targets_and_target_history_are_stored_and_act_the_same(
    tmp_path: Path, copy_done: bool, context: int
) -> None:
    """``controller.copy_window``, ``.history_targets`` and ``.history_held``: a target-copying
    controller with one anchor pointer whose call history holds each skill's targets and what
    was held (``skill-controller-history-v2``; ``-v3`` with ``copy_done``: its copy head reads
    them too; with ``copy_context`` its keys read the mission's context) is stored, verified,
    reloaded, and acts the same; the executor ORs each finished
    call's target into its skill's row and keeps what the agent has held."""

    def episode(seed: int, steps: int) -> Episode:
        colour = 1 + seed % 3
        return _with_mission(ball_episode(seed, num_steps=steps, colour=colour), colour, seed % 4)

    episodes = [episode(s, 8 + s % 3) for s in range(16)]
    probe = [episode(100 + s, 8) for s in range(4)]
    config = dataclasses.replace(
        HINDSIGHT_FAST,
        controller=ControllerTrainConfig(
            num_epochs=3,
            target_copy=True,
            copy_window=1,
            history=True,
            history_targets=True,
            history_held=True,
            copy_done=copy_done,
            copy_context=context,
        ),
    )
    with SkillMemory(tmp_path / "m") as memory:
        agent = ProceduralMemoryAgent(memory, config)
        agent.learn([episodes])
        assert agent.controller is not None
        stored = agent.controller.config
        assert stored.arch_id == f"skill-controller-history-v{3 if copy_done else 2}"
        assert stored.done_blocks == (stored.history_skills + 1 if copy_done else 0)
        assert stored.copy_window == 1 and stored.history_targets
        assert stored.copy_context == context
        assert stored.held_cell == 7  # the agent's own cell shows the ball once picked up
        before = _rollout_actions(agent, probe)
        assert memory.verify() == []
        executor = agent.executor()
        executor.reset(1)
        steps = [
            {k: np.asarray(v[t : t + 1]) for k, v in probe[0].observations.items()}
            for t in range(probe[0].num_steps)  # before the pick-up: nothing held
        ]
        executor.max_skill_steps = 3  # skills stop and start again
        for obs in steps:
            executor.act(obs)
        called = executor._counts > 0  # (1, N_p)
        assert called.any()
        assert torch.equal(executor._targets.sum(-1) > 0, called)
        empty = executor._held.clone()  # the empty floor of the agent's own cell
        carried = {k: np.asarray(v[-1:]) for k, v in probe[0].observations.items()}
        executor.act(carried)  # the ball in the agent's cell: held from now on
        held = executor._held.clone()
        assert (held >= empty).all() and held.sum() > empty.sum() > 0
        executor.act(steps[0])
        assert torch.equal(executor._held, held)
        executor.on_done(np.array([0]))
        assert executor._targets.sum() == 0 and executor._held.sum() == 0
    with SkillMemory(tmp_path / "m") as memory:
        again = ProceduralMemoryAgent(memory, config)
        assert again.controller is not None and again.controller.config == stored
        assert _rollout_actions(again, probe) == before


def test_learning_more_into_a_hindsight_memory_keeps_hindsight(tmp_path: Path) -> None:
    with SkillMemory(tmp_path / "m") as memory:
        agent = ProceduralMemoryAgent(memory, HINDSIGHT_FAST)
        agent.learn([[ball_episode(s, colour=1 + s % 3) for s in range(12)]])
        # a second call with the switch off: the stored skills read targets, so targets it is
        later = dataclasses.replace(
            HINDSIGHT_FAST, skill=dataclasses.replace(HINDSIGHT_FAST.skill, argument="learned")
        )
        again = ProceduralMemoryAgent(memory, later)
        again.learn([[ball_episode(50 + s, num_steps=12, colour=2) for s in range(12)]])
        assert again.controller is not None
        assert again.controller.config.arch_id == "skill-controller-target-v1"


# Actions of the committed packs/babyai memory (skill-controller-history-v1, skill-policy-v3:
# hindsight targets copied off the mission, relabelled, nearby relabelling, call history, the
# explored map; made by `bench babyai --budget small --protocol joint --map --set @hindsight` at
# 9f95a05) on GoToLocal seeds 1000-1002 (episodes end on success). The shipped memory must act
# exactly so whatever is added later.
PACK_ACTIONS = [[2, 2, 1], [2], [1, 2, 1]]


@pytest.mark.babyai
def test_the_shipped_pack_acts_exactly_as_when_it_was_made(tmp_path: Path) -> None:
    pytest.importorskip("minigrid")
    from skillbank.envs.rollout import babyai_env_factory, default_observation
    from skillbank.memory.packs import import_pack

    pack = Path(__file__).resolve().parents[2] / "packs" / "babyai"
    with SkillMemory(tmp_path / "m") as memory:
        import_pack(memory, pack)
        agent = ProceduralMemoryAgent(memory, AgentConfig(seed=0))
        assert agent.controller is not None
        assert agent.controller.config.arch_id == "skill-controller-history-v1"
        assert agent.controller.config.target is not None
        assert agent.map_radius == 6  # it reads the explored map: its environments add it
        out = []
        for seed in range(3):
            env = babyai_env_factory("GoToLocal", map_radius=agent.map_radius)(seed)
            with contextlib.redirect_stdout(io.StringIO()):
                observation, _ = env.reset(seed=1000 + seed)
            agent.reset()
            actions = []
            for _ in range(12):
                action = int(agent.act(default_observation(observation)))
                actions.append(action)
                observation, _, terminated, truncated, _ = env.step(action)
                if terminated or truncated:
                    break
            out.append(actions)
    assert out == PACK_ACTIONS


@pytest.mark.babyai
def test_a_traced_evaluation_files_every_action_under_the_call_that_took_it(
    tmp_path: Path,
) -> None:
    pytest.importorskip("minigrid")
    from skillbank.envs.babyai import describe_cell
    from skillbank.memory.packs import import_pack

    pack = Path(__file__).resolve().parents[2] / "packs" / "babyai"
    with SkillMemory(tmp_path / "m") as memory:
        import_pack(memory, pack)
        agent = ProceduralMemoryAgent(memory, AgentConfig(seed=0, num_envs=3))
        traced = agent.evaluate("babyai/GoToLocal", episodes=5, seed=1000, trace=True)
        plain = agent.evaluate("babyai/GoToLocal", episodes=5, seed=1000)
    assert plain.outcomes == tuple(dataclasses.replace(o, calls=()) for o in traced.outcomes), (
        "tracing must not change what the agent does"
    )
    assert all(not o.calls for o in plain.outcomes)
    executed: dict[str, int] = {}
    for outcome in traced.outcomes:
        calls = outcome.calls
        assert calls and calls[0].step == 0
        # calls follow each other without gaps: each starts where the previous one's actions end
        for before, after in itertools.pairwise(calls):
            assert after.step == before.step + len(before.actions)
        assert sum(len(c.actions) for c in calls) == outcome.steps
        for call in calls:
            executed[call.skill] = executed.get(call.skill, 0) + 1
            describe_cell(call.argument)  # every argument is a target cell (raises otherwise)
        assert "calls" in outcome.to_json()
    assert executed == dict(traced.skills_used)
