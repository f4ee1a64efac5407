"""A call that changes nothing ends, and the controller passes over the skill that stalled."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from skillbank.agent import AgentConfig, ProceduralMemoryAgent
from skillbank.agent.executor import SkillExecutor
from skillbank.envs.toy import ToyDemonstrator
from skillbank.learning.controller_training import ControllerTrainConfig
from skillbank.learning.skill_training import SkillTrainConfig
from skillbank.learning.skill_vae import SkillVAETrainConfig
from skillbank.memory.store import SkillMemory

FAST = AgentConfig(
    vae=SkillVAETrainConfig(num_epochs=2),
    skill=SkillTrainConfig(num_epochs=2),
    controller=ControllerTrainConfig(num_epochs=2),
    num_envs=4,
    seed=0,
)


@pytest.fixture(scope="module")
def memory_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("stalls") / "mem"
    demos = [ToyDemonstrator(t).demonstrate(s) for t in ("goto", "pickup") for s in range(30)]
    with SkillMemory(path) as memory:
        ProceduralMemoryAgent(memory, FAST).learn([demos])
    yield path


def _stubborn_executor(path: Path, stall_steps: int) -> tuple[SkillExecutor, np.ndarray]:
    """An executor over two copies of a learned skill (keys opposite) whose controller always
    wants the first and whose skills never stop by themselves; and one toy observation."""
    with SkillMemory(path) as memory:
        agent = ProceduralMemoryAgent(memory, FAST)
        _, learned_keys, learned = agent.skills()
        assert agent.controller is not None and agent.featurizer is not None
        assert agent.action is not None
        controller = copy.deepcopy(agent.controller)
        keys = np.stack([learned_keys[0], -learned_keys[0]])
        policies = [copy.deepcopy(learned[0]), copy.deepcopy(learned[0])]
        ids = ["wanted", "other"]
        with torch.no_grad():
            controller.query_head.weight.zero_()
            unit = keys[0] / np.linalg.norm(keys[0])
            controller.query_head.bias.copy_(torch.from_numpy(50.0 * unit))
            for policy in policies:
                policy.termination_head.weight.zero_()
                policy.termination_head.bias.fill_(-50.0)
        executor = SkillExecutor(
            agent.featurizer,
            controller,
            ids,
            keys,
            policies,
            agent.action,
            sample_skills=False,
            max_skill_steps=64,
            stall_steps=stall_steps,
        )
        executor.trace = True
        executor.reset(1)
        env = ToyDemonstrator("goto").demonstrate(0)
        obs = np.asarray(env.observations["obs"][:1])
        return executor, obs


def test_a_stalled_call_ends_and_the_next_choice_passes_over_its_skill(memory_path: Path) -> None:
    executor, obs = _stubborn_executor(memory_path, stall_steps=2)
    for _ in range(7):  # the world never changes
        executor.act({"obs": obs})
    calls = executor.calls_of(0)
    # each call ends after two actions that changed nothing; the next passes over its skill,
    # and the skill that stalled before that one is allowed again
    assert [(call.skill, call.step) for call in calls] == [
        ("wanted", 0),
        ("other", 2),
        ("wanted", 4),
        ("other", 6),
    ]
    assert [len(call.actions) for call in calls] == [2, 2, 2, 1]


def test_calls_run_on_while_the_world_changes_or_without_the_rule(memory_path: Path) -> None:
    executor, obs = _stubborn_executor(memory_path, stall_steps=2)
    for t in range(7):
        executor.act({"obs": obs + 0.01 * t})
    assert [call.step for call in executor.calls_of(0)] == [0]
    plain, obs = _stubborn_executor(memory_path, stall_steps=0)
    for _ in range(7):
        plain.act({"obs": obs})
    assert [call.step for call in plain.calls_of(0)] == [0]


def test_a_new_episode_in_a_slot_is_no_stall_and_bad_settings_are_refused(
    memory_path: Path,
) -> None:
    executor, obs = _stubborn_executor(memory_path, stall_steps=2)
    executor.act({"obs": obs})
    executor.act({"obs": obs})  # one unchanged step
    executor.on_done(np.array([0]))
    executor.act({"obs": obs})  # the next episode's first step: compared with nothing
    executor.act({"obs": obs})  # its first unchanged step
    assert [call.step for call in executor.calls_of(1)] == [0]
    with pytest.raises(ValueError, match="stall_steps must be >= 0"):
        dataclasses.replace(FAST, stall_steps=-1)
