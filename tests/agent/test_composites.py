"""Skills made of skills on the toy world: mined, stored, reloaded, executed with a call stack."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from skillbank.agent import AgentConfig, ProceduralMemoryAgent
from skillbank.agent.executor import SkillExecutor
from skillbank.envs.rollout import evaluate_policy, info_success
from skillbank.envs.toy import ToyDemonstrator, make_toy_env
from skillbank.learning.controller_training import ControllerTrainConfig
from skillbank.learning.skill_training import SkillTrainConfig
from skillbank.learning.skill_vae import SkillVAETrainConfig
from skillbank.memory.store import SkillMemory
from skillbank.types import Episode, RetrievalFilter

FAST = AgentConfig(
    vae=SkillVAETrainConfig(num_epochs=4),
    skill=SkillTrainConfig(num_epochs=8),
    controller=ControllerTrainConfig(num_epochs=8),
    num_envs=16,
    composites=True,
    seed=0,
)


def _demos(tasks: tuple[str, ...], per_task: int) -> list[Episode]:
    return [ToyDemonstrator(t).demonstrate(s) for t in tasks for s in range(per_task)]


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    """A memory learned from goto / pickup / fetch with composites on (learned once)."""
    path = tmp_path_factory.mktemp("composites") / "mem"
    with SkillMemory(path) as memory:
        report = ProceduralMemoryAgent(memory, FAST).learn(
            [_demos(("goto", "pickup", "fetch"), 120)]
        )
    yield path, report


def test_composites_are_stored_beside_the_primitives(learned: tuple[Path, Any]) -> None:
    path, report = learned
    assert report.new_composite_ids and report.composite_ids == report.new_composite_ids
    with SkillMemory(path) as memory:
        composites = memory.list(RetrievalFilter(tags=("skill", "composite")))
        assert {r.skill_id for r in composites} == set(report.composite_ids)
        for record in composites:
            assert record.arch_id == "skill-sequence-v1"
            assert set(record.arch_config["children"]) <= set(report.skill_ids)
            assert len(record.arch_config["sequence"]) >= 2
            assert record.key.shape == (FAST.vae.latent_dim,)
            extra = record.provenance.extra
            assert float(extra["support"]) >= FAST.composite_mining.min_support
            assert int(extra["occurrences"]) >= FAST.composite_mining.min_episodes
        # the agent's primitives are not mixed up with composites; retrieval finds both
        agent = ProceduralMemoryAgent(memory, FAST)
        ids, keys, policies = agent.skills()
        assert ids == list(report.skill_ids) and len(policies) == len(keys)
        everything = {*report.skill_ids, *report.composite_ids}
        found = agent.retrieve(composites[0].key, k=len(everything) + 5)
        assert set(found.skill_ids) == everything
        assert agent.composites()[0] == list(report.composite_ids)


def test_a_fresh_agent_reloads_composites_and_acts_the_same(learned: tuple[Path, Any]) -> None:
    path, _ = learned
    envs = [make_toy_env("fetch") for _ in range(8)]
    obs = np.stack([env.reset(seed=900 + i)[0] for i, env in enumerate(envs)])
    runs = []
    for _ in range(2):
        with SkillMemory(path) as memory:
            executor = ProceduralMemoryAgent(memory, FAST).executor()
            executor.reset(len(envs))
            state = obs
            actions = []
            for _ in range(12):
                action = executor.act({"obs": state})
                actions.append(action)
                state = state + 0.01 * action[:, None]  # same inputs for both runs, step by step
            runs.append((np.stack(actions), sorted(executor.executed.items())))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]


def test_executor_runs_a_composite_through_its_children(learned: tuple[Path, Any]) -> None:
    path, _ = learned
    with SkillMemory(path) as memory:
        agent = ProceduralMemoryAgent(memory, FAST)
        ids, keys, policies = agent.skills()
        composite_ids, composite_keys, composites = agent.composites()
        assert agent.controller is not None and agent.featurizer is not None
        assert agent.action is not None
        # A controller whose query always points at the first composite's key.
        controller = copy.deepcopy(agent.controller)
        with torch.no_grad():
            controller.query_head.weight.zero_()
            unit = composite_keys[0] / np.linalg.norm(composite_keys[0])
            controller.query_head.bias.copy_(torch.from_numpy(50.0 * unit))
        executor = SkillExecutor(
            agent.featurizer,
            controller,
            ids,
            keys,
            policies,
            agent.action,
            sample_skills=False,
            allowed_actions=agent.allowed_actions,
            composite_ids=composite_ids,
            composite_keys=composite_keys,
            composites=composites,
        )
        result = evaluate_policy(
            lambda i: make_toy_env("fetch"),
            executor,
            episodes=8,
            seed=70_000,
            num_envs=4,
            success_fn=info_success,
        )
        usage = executor.usage(result.successes)
    composite = composite_ids[0]
    children = set(composites[0].config.children)
    executed = {k: v[1] for k, v in usage.items() if v[1]}
    # the controller only ever chose the composite; only its children acted
    assert executed[composite] >= 8
    assert set(executed) - {composite} <= children and set(executed) & children
    calls = sum(v for k, v in executed.items() if k != composite)
    assert (
        executed[composite] <= calls <= 2 * len(composites[0].config.sequence) * executed[composite]
    )
    assert all(usage[k][0] >= usage[k][1] for k in executed)


def test_evaluate_logs_usage_of_composites_and_children(learned: tuple[Path, Any]) -> None:
    path, report = learned
    with SkillMemory(path) as memory:
        agent = ProceduralMemoryAgent(memory, FAST)
        result = agent.evaluate("toy/fetch", episodes=16, seed=60_000)
        assert set(result.skills_used) <= {*report.skill_ids, *report.composite_ids}
        for skill_id, times in result.skills_used.items():
            assert memory.get(skill_id).usage.num_executed == times


def test_old_memory_without_composites_still_acts(tmp_path: Path) -> None:
    flat = dataclasses.replace(FAST, composites=False)
    with SkillMemory(tmp_path / "m") as memory:
        report = ProceduralMemoryAgent(memory, flat).learn([_demos(("pickup", "fetch"), 30)])
        assert report.composite_ids == ()
        assert not memory.list(RetrievalFilter(tags=("composite",)))
    with SkillMemory(tmp_path / "m") as memory:
        agent = ProceduralMemoryAgent(memory, FAST)  # composites on: nothing stored to run
        assert agent.composites()[0] == []
        obs, _ = make_toy_env("pickup").reset(seed=5)
        assert 0 <= int(agent.act({"obs": obs})) < 6
        assert agent.evaluate("toy/pickup", episodes=4, seed=80_000).episodes == 4


def test_mixtures_and_interruptions_run_beside_composites(learned: tuple[Path, Any]) -> None:
    path, report = learned
    settings = dataclasses.replace(FAST, top_k=2, sample_skills=False, interrupt_margin=0.3)
    with SkillMemory(path) as memory:
        agent = ProceduralMemoryAgent(memory, settings)
        result = agent.evaluate("toy/fetch", episodes=8, seed=61_000)
        assert result.episodes == 8 and sum(result.skills_used.values()) > 0
        assert set(result.skills_used) <= {*report.skill_ids, *report.composite_ids}


def test_early_stops_mark_where_a_begun_sequence_was_not_continued() -> None:
    from skillbank.agent.composites import early_stops
    from skillbank.learning.segment_set import SegmentSet

    features = tuple(np.zeros((11, 3), np.float32) for _ in range(2))
    actions = tuple(np.zeros(10, np.int64) for _ in range(2))
    spans = ((0, 0, 2), (0, 2, 4), (0, 4, 6), (0, 6, 8), (1, 0, 3), (1, 3, 10))
    segments = SegmentSet(features, actions, spans)
    # episode 0: A B | A C -> the second A stops early; episode 1: A D -> stops early
    assert early_stops(segments, [0, 1, 0, 2, 0, 3], (0, 1)) == [(2, 1), (4, 1)]
    # a three-skill pattern begun with two of its skills stops after the second (p = 2)
    assert early_stops(segments, [0, 1, 3, 3, 5, 5], (0, 1, 2)) == [(1, 2)]
