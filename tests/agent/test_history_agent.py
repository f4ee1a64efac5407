"""The call history through the agent: learned, stored, replayed, fed per env, reloaded."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from skillbank.agent import AgentConfig, ProceduralMemoryAgent
from skillbank.agent.replay import REPLAY_ARCH
from skillbank.envs.toy import ToyDemonstrator, make_toy_env
from skillbank.learning.controller_training import ControllerTrainConfig
from skillbank.learning.skill_training import SkillTrainConfig
from skillbank.learning.skill_vae import SkillVAETrainConfig
from skillbank.memory.store import SkillMemory
from skillbank.types import Episode, RetrievalFilter

HISTORY_FAST = AgentConfig(
    vae=SkillVAETrainConfig(num_epochs=2),
    skill=SkillTrainConfig(num_epochs=3),
    controller=ControllerTrainConfig(num_epochs=3, history=True),
    num_envs=8,
    seed=0,
)


def _demos(tasks: tuple[str, ...], per_task: int, offset: int = 0) -> list[Episode]:
    return [
        ToyDemonstrator(t).demonstrate(s) for t in tasks for s in range(offset, offset + per_task)
    ]


def _rollout(agent: ProceduralMemoryAgent, steps: int = 30) -> list[list[int]]:
    """The executor's actions in 4 toy fetch worlds stepped together (seeds 900-903)."""
    executor = agent.executor()
    envs = [make_toy_env("fetch") for _ in range(4)]
    obs = [env.reset(seed=900 + i)[0] for i, env in enumerate(envs)]
    executor.reset(len(envs))
    actions = []
    for _ in range(steps):
        act = executor.act({"obs": np.stack(obs)}).astype(int).tolist()
        actions.append(act)
        for i, (env, a) in enumerate(zip(envs, act, strict=True)):
            o, _, terminated, truncated, _ = env.step(a)
            obs[i] = env.reset(seed=950 + i)[0] if terminated or truncated else o
            if terminated or truncated:
                executor.on_done(np.array([i]))
    return actions


def test_history_is_learned_stored_and_acts_the_same_after_reload(tmp_path: Path) -> None:
    with SkillMemory(tmp_path / "m") as memory:
        agent = ProceduralMemoryAgent(memory, HISTORY_FAST)
        report = agent.learn([_demos(("pickup", "fetch"), 12)])
        assert agent.controller is not None
        config = agent.controller.config
        assert config.arch_id == "skill-controller-history-v1"
        assert config.history_skills == len(report.skill_ids)
        # the replay keeps each segment's earlier calls (a fetch has four)
        (record,) = memory.list(RetrievalFilter(arch_id=REPLAY_ARCH, tags=("component",)))
        assert record.arch_id == "segment-replay-v3"
        assert max(len(h) for h in agent._replay.histories) >= 2
        assert set().union(*agent._replay.histories) <= set(report.skill_ids)
        before = _rollout(agent)
        assert memory.verify() == []
    with SkillMemory(tmp_path / "m") as memory:
        again = ProceduralMemoryAgent(memory, HISTORY_FAST)  # a fresh process rebuilds it
        assert again.controller is not None and again.controller.config == config
        assert again._replay.histories == agent._replay.histories
        assert _rollout(again) == before
        # a second learn call replays the stored segments with their histories
        again.learn([_demos(("goto",), 6, 300)])
        assert again.controller is not None and again.controller.config.history_skills >= 1


def test_executor_counts_the_calls_each_env_has_made(tmp_path: Path) -> None:
    with SkillMemory(tmp_path / "m") as memory:
        agent = ProceduralMemoryAgent(memory, HISTORY_FAST)
        agent.learn([_demos(("pickup", "fetch"), 12)])
        executor = agent.executor()
        envs = [make_toy_env("fetch") for _ in range(3)]
        obs = np.stack([env.reset(seed=700 + i)[0] for i, env in enumerate(envs)])
        executor.reset(3)
        for _ in range(20):  # the same observations: skills start and stop, history grows
            executor.act({"obs": obs})
        started = sum(executor.executed.values())
        # every call but the running one per env has entered its env's history
        assert int(executor._counts.sum()) == started - 3
        assert ((executor._last >= 0) == (executor._counts.sum(1) > 0)).all()
        executor.on_done(np.array([1]))
        assert executor._last[1] == -1 and executor._counts[1].sum() == 0
        executor.reset(2)
        assert executor._counts.shape == (2, executor.num_primitives)
        assert int(executor._counts.sum()) == 0 and (executor._last == -1).all()
        # one observation at a time through the agent works too
        assert 0 <= int(agent.act({"obs": obs[0]})) < 6


def test_without_the_switch_the_controller_reads_no_history(tmp_path: Path) -> None:
    plain = dataclasses.replace(
        HISTORY_FAST, controller=dataclasses.replace(HISTORY_FAST.controller, history=False)
    )
    with SkillMemory(tmp_path / "m") as memory:
        agent = ProceduralMemoryAgent(memory, plain)
        agent.learn([_demos(("pickup",), 8)])
        assert agent.controller is not None
        assert agent.controller.config.arch_id == "skill-controller-v2"
        (record,) = memory.list(RetrievalFilter(tags=("component",), arch_id="skill-controller-v2"))
        assert "history_skills" not in record.arch_config


def test_composites_and_history_are_refused_together() -> None:
    with pytest.raises(ValueError, match="composites"):
        dataclasses.replace(HISTORY_FAST, composites=True)


@pytest.mark.parametrize(
    ("argument", "composites", "reads"),
    # an unset switch is off (the curriculum benchmark was not better with it); the toy world
    # has no grid, so hindsight falls back to learned arguments there
    [("learned", False, False), ("hindsight", False, False), ("learned", True, False)],
)
def test_an_unset_switch_reads_no_history(
    tmp_path: Path, argument: str, composites: bool, reads: bool
) -> None:
    config = dataclasses.replace(
        HISTORY_FAST,
        skill=dataclasses.replace(HISTORY_FAST.skill, argument=argument, conv_channels=(4,)),
        controller=dataclasses.replace(HISTORY_FAST.controller, history=None),
        composites=composites,
    )
    assert AgentConfig().controller.history is None  # the default
    with SkillMemory(tmp_path / "m") as memory:
        agent = ProceduralMemoryAgent(memory, config)
        agent.learn([_demos(("pickup", "fetch"), 6)])
        assert agent.controller is not None
        assert (agent.controller.config.history_skills > 0) == reads
