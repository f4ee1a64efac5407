"""`--memory PACK_DIR`: eval and skills ls read a directory pack through a temporary memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from skillbank.cli.app import app
from skillbank.cli.pack_memory import is_pack_dir
from skillbank.envs.babyai_missions import mission_clauses
from skillbank.memory.packs import export_pack
from skillbank.memory.store import SkillMemory
from tests.cli.demo_helpers import tree_digest, write_toy_demos


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pack-as-memory")
    pickup = write_toy_demos(root / "pickup", "pickup", 16)
    memory = root / "mem"
    learned = CliRunner().invoke(
        app, ["learn", str(pickup), "--memory", str(memory), "--seed", "1"]
    )
    assert learned.exit_code == 0, learned.output
    pack = root / "pack"
    with SkillMemory(memory, create=False) as store:
        report = export_pack(store, pack, command="test")
        assert len(report.skill_ids) == len(store.list())
    return memory, pack


def _eval(
    memory: Path, out: Path, env: str = "toy/pickup", episodes: int = 4, seed: int = 7
) -> dict[str, Any]:
    result = CliRunner().invoke(
        app,
        ["eval", env, "--memory", str(memory), "--episodes", str(episodes),
         "--seed", str(seed), "--json", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload: dict[str, Any] = json.loads(out.read_text())
    return payload


def test_eval_from_a_pack_dir_matches_the_memory(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    memory, pack = trained
    before = tree_digest(pack)
    assert is_pack_dir(pack) and not is_pack_dir(memory)
    from_pack = _eval(pack, tmp_path / "pack.json")
    from_memory = _eval(memory, tmp_path / "memory.json")
    assert from_pack["env"] == "toy/pickup" and from_pack["episodes"] == 4
    for key in ("success_rate", "mean_steps", "skills_used"):
        assert from_pack[key] == from_memory[key]
    assert tree_digest(pack) == before  # read-only: nothing written into the pack


def test_skills_ls_lists_the_pack(trained: tuple[Path, Path]) -> None:
    memory, pack = trained
    listed = {}
    for path in (memory, pack):
        result = CliRunner().invoke(app, ["skills", "ls", "--memory", str(path), "--json"])
        assert result.exit_code == 0, result.output
        listed[path] = sorted(r["weights_sha256"] for r in json.loads(result.stdout))
    assert listed[pack] == listed[memory] and listed[pack]


def test_neither_memory_nor_pack_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(app, ["eval", "toy/pickup", "--memory", str(tmp_path / "empty")])
    assert result.exit_code == 1
    assert "no skill memory at" in result.output


def test_babyai_eval_breaks_success_down_by_mission(tmp_path: Path) -> None:
    pack = Path(__file__).resolve().parents[2] / "packs" / "babyai"
    payload = _eval(pack, tmp_path / "boss.json", "babyai/BossLevel", 3, 1_000_000_000)
    by_mission = payload["success_by_mission"]
    clauses = {k: v for k, v in by_mission.items() if "clause" in k}
    assert sum(v["episodes"] for v in clauses.values()) == 3  # each episode in one clause count
    successes = sum(e["success"] for e in payload["per_episode"])
    assert sum(v["episodes"] * v["success_rate"] for v in clauses.values()) == pytest.approx(
        successes
    )
    for row in by_mission.values():
        assert 1 <= row["episodes"] <= 3 and 0.0 <= row["success_rate"] <= 1.0
    for verb in ("go to", "pick up", "open", "put"):  # as the tasks in per_episode say
        with_verb = [e for e in payload["per_episode"] if verb in mission_clauses(e["task"])]
        assert by_mission.get(verb, {"episodes": 0})["episodes"] == len(with_verb)
