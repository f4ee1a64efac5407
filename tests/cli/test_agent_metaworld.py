"""The agent on Meta-World (continuous actions, 39-dim vector observations) through the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("metaworld")

from skillbank.agent import AgentConfig, ProceduralMemoryAgent
from skillbank.cli.app import app
from skillbank.envs.dataset import DatasetWriter, load_dataset
from skillbank.envs.metaworld_source import DEMONSTRATOR, MetaWorldDemoSource, make_metaworld_env
from skillbank.learning.controller_training import ControllerTrainConfig
from skillbank.learning.skill_training import SkillTrainConfig
from skillbank.learning.skill_vae import SkillVAETrainConfig
from skillbank.memory.store import SkillMemory

pytestmark = pytest.mark.metaworld

FAST = AgentConfig(
    vae=SkillVAETrainConfig(num_epochs=3),
    skill=SkillTrainConfig(num_epochs=6),
    controller=ControllerTrainConfig(num_epochs=6),
    seed=0,
)


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A memory learned from 6 scripted reach-v3 demonstrations (seeds 0-5)."""
    root = tmp_path_factory.mktemp("metaworld-agent")
    source = MetaWorldDemoSource("reach-v3")
    with DatasetWriter(root / "reach", env_id=source.env_id, demonstrator=DEMONSTRATOR) as writer:
        for seed in range(6):
            episode = source.demonstrate(seed)
            assert episode is not None
            writer.write(episode)
    memory = root / "mem"
    with SkillMemory(memory) as store:
        report = ProceduralMemoryAgent(store, FAST).learn([list(load_dataset(root / "reach"))])
    assert report.num_episodes == 6 and report.skill_ids
    return memory


def _eval(memory: Path, env: str, episodes: int, out: Path) -> dict[str, Any]:
    result = CliRunner().invoke(
        app,
        ["eval", env, "--memory", str(memory), "--episodes", str(episodes), "--seed", "1000000",
         "--json", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload: dict[str, Any] = json.loads(out.read_text())
    return payload


def test_skills_are_stored_with_continuous_action_configs(learned: Path) -> None:
    result = CliRunner().invoke(app, ["skills", "ls", "--memory", str(learned), "--json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    skills = [r for r in records if "skill" in r["tags"]]
    assert skills and len(records) > len(skills)  # the agent's components live beside them
    for record in skills:
        config = record["arch_config"]
        assert (config["action_kind"], config["action_size"], config["obs_dim"]) == (
            "continuous",
            4,
            39,
        )
        assert record["provenance"]["task"] == "metaworld/reach-v3"


@pytest.mark.parametrize(("env", "episodes"), [("metaworld/reach-v3", 1), ("metaworld/push-v3", 1)])
def test_eval_gives_sane_json_on_a_trained_and_an_unseen_task(
    learned: Path, tmp_path: Path, env: str, episodes: int
) -> None:
    payload = _eval(learned, env, episodes, tmp_path / "eval.json")
    assert payload["env"] == env and payload["episodes"] == episodes
    assert payload["seed"] == 1_000_000
    assert 0.0 <= payload["success_rate"] <= 1.0
    assert 1.0 <= payload["mean_steps"] <= 500.0  # Meta-World's time limit
    assert math.isfinite(payload["steps_per_s"]) and payload["steps_per_s"] > 0
    with SkillMemory(learned, create=False) as store:
        skill_ids = {r.skill_id for r in store.list() if "skill" in r.tags}
    assert payload["skills_used"] and set(payload["skills_used"]) <= skill_ids
    assert "metaworld" in payload["versions"]


def test_acting_is_finite_bounded_and_reproducible(learned: Path) -> None:
    runs = []
    with SkillMemory(learned, create=False) as store:
        agent = ProceduralMemoryAgent(store, AgentConfig())
        for _ in range(2):
            env = make_metaworld_env("reach-v3")
            obs, _ = env.reset(seed=1_000_000)
            agent.reset()
            actions = []
            for _ in range(25):
                action = agent.act({"obs": np.asarray(obs, np.float32)})
                assert action.shape == (4,) and np.isfinite(action).all()
                obs, *_ = env.step(np.clip(action, -1.0, 1.0))
                actions.append(action)
            env.close()
            runs.append(np.stack(actions))  # (T, A)
    assert runs[0].tobytes() == runs[1].tobytes()
