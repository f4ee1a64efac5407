"""An agent on grid observations stores grid-trunk modules that a fresh agent rebuilds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from skillbank.agent import AgentConfig, ProceduralMemoryAgent
from skillbank.learning.controller_training import ControllerTrainConfig
from skillbank.learning.segment_set import token_slices
from skillbank.learning.skill_training import SkillTrainConfig
from skillbank.learning.skill_vae import SkillVAETrainConfig
from skillbank.memory.store import SkillMemory
from tests.learning.test_hierarchy_grid import grid_episode

GRID_FAST = AgentConfig(
    vae=SkillVAETrainConfig(num_epochs=2),
    skill=SkillTrainConfig(num_epochs=2, grid_trunk=True, conv_channels=(4, 4)),
    # history off: the v3 controller exactly (a grid + history controller: test_history_agent)
    controller=ControllerTrainConfig(
        num_epochs=2, grid_trunk=True, conv_channels=(4,), history=False
    ),
    num_envs=4,
    seed=0,
)


def test_grid_modules_survive_a_fresh_process(tmp_path: Path) -> None:
    episodes = [grid_episode(s, length=8) for s in range(16)]
    with SkillMemory(tmp_path / "m") as memory:
        agent = ProceduralMemoryAgent(memory, GRID_FAST)
        agent.learn([episodes])
        _, _, policies = agent.skills()
        assert policies and all(p.config.arch_id == "skill-policy-v3" for p in policies)
        assert agent.controller is not None
        assert agent.controller.config.arch_id == "skill-controller-v3"
        assert agent.featurizer is not None
        probe = torch.from_numpy(
            agent.featurizer.transform({k: v[:3] for k, v in episodes[0].observations.items()})
        )
        before = [p(probe)[0] for p in policies]
        query = agent.controller(probe)
    with SkillMemory(tmp_path / "m") as memory:
        # a fresh agent (as in a new process) rebuilds the same modules from the stored JSON
        again = ProceduralMemoryAgent(memory, dataclasses.replace(GRID_FAST, seed=1))
        _, _, rebuilt = again.skills()
        for old, new in zip(before, rebuilt, strict=True):
            torch.testing.assert_close(new(probe)[0], old)
        assert again.controller is not None
        torch.testing.assert_close(again.controller(probe), query)
        # and acts through the batched executor (grid skills stacked in one pass)
        observation = {k: v[0] for k, v in episodes[1].observations.items()}
        assert 0 <= int(again.act(observation)) < 8
        assert memory.verify() == []


def test_the_controller_reads_the_map_and_the_skills_do_not(tmp_path: Path) -> None:
    pytest.importorskip("minigrid")
    from skillbank.envs.babyai import BabyAIDemoSource
    from skillbank.envs.grid_map import MAP_KEY

    source = BabyAIDemoSource("GoToLocal", map_radius=2)
    episodes = [e for e in map(source.demonstrate, range(12)) if e is not None]
    with SkillMemory(tmp_path / "m") as memory:
        agent = ProceduralMemoryAgent(memory, GRID_FAST)
        agent.learn([episodes])
        assert agent.featurizer is not None and agent.vae is not None
        encoder = agent.encoder_featurizer
        assert MAP_KEY in {s.name for s in agent.featurizer.specs}
        assert MAP_KEY not in {s.name for s in encoder.specs}
        assert agent.vae.config.obs_dim == encoder.dim < agent.featurizer.dim
        _, _, policies = agent.skills()
        assert all(p.config.obs_dim == agent.featurizer.dim for p in policies)
        # the skills skip the map (one grid: the view), the controller reads it (two grids)
        map_grids = [p.config.grid for p in policies if p.config.grid is not None]
        assert map_grids and all(len(g.grids) == 1 and len(g.skip) == 1 for g in map_grids)
        assert agent.controller is not None and agent.controller.config.grid is not None
        assert len(agent.controller.config.grid.grids) == 2
    with SkillMemory(tmp_path / "m") as memory:  # and so does a fresh agent on that memory
        again = ProceduralMemoryAgent(memory, GRID_FAST)
        assert again.encoder_featurizer.dim == encoder.dim
        assert again.map_radius == 2  # so its evaluation environments add that map
        result = again.evaluate("babyai/GoToLocal", episodes=2, seed=10**9)
        assert result.episodes == 2
        observation = {k: v[0] for k, v in episodes[1].observations.items()}
        assert 0 <= int(again.act(observation)) < 8


def test_the_mission_positions_are_a_setting_fixed_at_the_first_learn(tmp_path: Path) -> None:
    pytest.importorskip("minigrid")
    from skillbank.envs.babyai import BabyAIDemoSource

    source = BabyAIDemoSource("GoToLocal")
    episodes = [e for e in map(source.demonstrate, range(8)) if e is not None]
    wide = dataclasses.replace(GRID_FAST, sequence_positions=20)
    with SkillMemory(tmp_path / "m") as memory:
        agent = ProceduralMemoryAgent(memory, wide)
        agent.learn([episodes])
        assert agent.featurizer is not None
        (mission,) = [s for s in agent.featurizer.specs if s.kind == "tokens"]
        assert mission.cardinalities == (64, 20)
    with SkillMemory(tmp_path / "m") as memory:  # the stored features win over a new setting
        again = ProceduralMemoryAgent(memory, GRID_FAST)
        assert again.featurizer is not None
        (mission,) = [s for s in again.featurizer.specs if s.kind == "tokens"]
        assert mission.cardinalities == (64, 20)


def test_mission_blind_skills_skip_the_mission_and_the_controller_reads_it(
    tmp_path: Path,
) -> None:
    pytest.importorskip("minigrid")
    from skillbank.envs.babyai import BabyAIDemoSource

    source = BabyAIDemoSource("GoToLocal")
    episodes = [e for e in map(source.demonstrate, range(12)) if e is not None]
    blind = dataclasses.replace(
        GRID_FAST, skill=dataclasses.replace(GRID_FAST.skill, read_mission=False)
    )
    with SkillMemory(tmp_path / "m") as memory:
        agent = ProceduralMemoryAgent(memory, blind)
        agent.learn([episodes])
        assert agent.featurizer is not None and agent.controller is not None
        (mission,) = token_slices(agent.featurizer)
        start = mission.offset  # the mission is the last entry
        _, _, policies = agent.skills()
        assert policies and all(p.config.grid is not None for p in policies)
        assert all(p.config.grid.skip == ((start, agent.featurizer.dim),) for p in policies)
        probe = torch.from_numpy(
            agent.featurizer.transform({k: v[:3] for k, v in episodes[0].observations.items()})
        )
        other = probe.clone()
        other[:, start:] = torch.from_numpy(
            agent.featurizer.transform({k: v[:3] for k, v in episodes[5].observations.items()})
        )[:, start:]
        assert not torch.equal(probe, other)  # another mission, the same views
        for policy in policies:
            torch.testing.assert_close(policy(other)[0], policy(probe)[0])
        # the controller still reads it
        assert not torch.allclose(agent.controller(other), agent.controller(probe))
    with SkillMemory(tmp_path / "m") as memory:  # a fresh agent rebuilds the blind skills
        again = ProceduralMemoryAgent(memory, GRID_FAST)
        _, _, rebuilt = again.skills()
        assert [p.config for p in rebuilt] == [p.config for p in policies]
        assert again.evaluate("babyai/GoToLocal", episodes=2, seed=10**9).episodes == 2


def test_mission_blind_skills_need_the_grid_trunk() -> None:
    with pytest.raises(ValueError, match="grid_trunk=True"):
        SkillTrainConfig(read_mission=False, grid_trunk=False)
