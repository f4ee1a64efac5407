"""The memory commands end to end: `skills ...`, `verify`, `gc`, `tour` — exit codes, JSON, error
lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from skillbank.cli.app import app
from skillbank.errors import PackError
from skillbank.memory.store import SkillMemory
from tests.memory.pack_helpers import dump_memory, populate

runner = CliRunner()


def _run(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def _json(*args: str) -> Any:
    result = _run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture()
def memory_dir(tmp_path: Path) -> Path:
    with SkillMemory(tmp_path / "mem") as memory:
        populate(memory, seed=21, prefix="cli")
    return tmp_path / "mem"


def test_ls_show_versions(memory_dir: Path) -> None:
    listed = _json("skills", "ls", "--memory", str(memory_dir))
    assert sorted(s["skill_id"] for s in listed) == ["cli21-0", "cli21-1", "cli21-2"]
    assert {s["skill_id"]: s["version"] for s in listed}["cli21-1"] == 3
    assert _json("skills", "ls", "--memory", str(memory_dir), "--tag", "t2")[0]["skill_id"] == (
        "cli21-2"
    )
    shown = _json("skills", "show", "cli21-1", "--memory", str(memory_dir))
    assert shown["version"] == 3 and len(shown["key"]) == 8
    first = _json("skills", "show", "cli21-1", "--version", "1", "--memory", str(memory_dir))
    assert first["version"] == 1
    versions = _json("skills", "versions", "cli21-1", "--memory", str(memory_dir))
    assert [v["version"] for v in versions] == [1, 2, 3]
    assert versions[2]["parent_version_id"] == versions[1]["version_id"]
    table = _run("skills", "ls", "--memory", str(memory_dir))
    assert table.exit_code == 0 and "cli21-1" in table.stdout


def test_rm_needs_the_exact_id_and_gc_frees_blobs(memory_dir: Path) -> None:
    prefix = _run("skills", "rm", "cli21-", "--memory", str(memory_dir))
    assert prefix.exit_code == 1
    assert "error: " in prefix.stderr and "hint: " in prefix.stderr
    assert "Traceback" not in prefix.output
    assert _json("skills", "rm", "cli21-1", "--memory", str(memory_dir)) == {
        "deleted": "cli21-1",
        "num_versions": 3,
    }
    assert len(_json("skills", "ls", "--memory", str(memory_dir))) == 2
    again = _run("skills", "rm", "cli21-1", "--memory", str(memory_dir))
    assert again.exit_code == 1 and "no skill with id 'cli21-1'" in again.stderr
    freed = _json("gc", "--memory", str(memory_dir))
    assert freed["num_blobs_removed"] == 3 and freed["bytes_freed"] > 0


def test_export_import_round_trip(memory_dir: Path, tmp_path: Path) -> None:
    pack = tmp_path / "pack.tar.gz"
    exported = _json("skills", "export", "--out", str(pack), "cli21-1", "--memory", str(memory_dir))
    assert exported["skill_ids"] == ["cli21-1"] and exported["num_versions"] == 3
    imported = _json("skills", "import", str(pack), "--memory", str(tmp_path / "other"))
    assert imported["skills"] == [
        {
            "pack_skill_id": "cli21-1",
            "skill_id": "cli21-1",
            "status": "added",
            "num_versions_written": 3,
        }
    ]
    again = _json("skills", "import", str(pack), "--memory", str(tmp_path / "other"))
    assert again["skills"][0]["status"] == "already-present"
    assert _json("verify", "--memory", str(tmp_path / "other"))["ok"] is True


def test_a_refused_pack_is_one_error_line_and_exit_1(memory_dir: Path, tmp_path: Path) -> None:
    pack = tmp_path / "pack"
    _json("skills", "export", "--out", str(pack), "--memory", str(memory_dir))
    weights = next(pack.glob("skills/*/1/weights.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    before = dump_memory(memory_dir)
    result = _run("skills", "import", str(pack), "--memory", str(memory_dir))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: skills/") and "checksum mismatch" in lines[0]
    assert lines[1].startswith("hint: ")
    assert "Traceback" not in result.output
    assert dump_memory(memory_dir) == before
    fresh = _run("skills", "import", str(pack), "--memory", str(tmp_path / "fresh"))
    assert fresh.exit_code == 1 and not (tmp_path / "fresh").exists()
    small = _run("skills", "import", str(pack), "--max-pack-mb", "1", "--memory", str(memory_dir))
    assert small.exit_code == 1 and "checksum mismatch" in small.stderr  # within the limits

    with pytest.raises(PackError):
        runner.invoke(
            app,
            ["--debug", "skills", "import", str(pack), "--memory", str(memory_dir)],
            catch_exceptions=False,
        )


def test_verify_reports_without_changing_anything(memory_dir: Path) -> None:
    assert _json("verify", "--memory", str(memory_dir)) == {
        "ok": True,
        "num_skills": 3,
        "problems": [],
    }
    blob = next((memory_dir / "blobs").rglob("*.safetensors"))
    blob.write_bytes(blob.read_bytes() + b"tampered")
    before = dump_memory(memory_dir)
    result = _run("verify", "--memory", str(memory_dir), "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["problems"]
    assert dump_memory(memory_dir) == before
    assert _run("verify", "--memory", str(memory_dir)).exit_code == 1


def test_missing_memory_is_a_clear_error(tmp_path: Path) -> None:
    result = _run("skills", "ls", "--memory", str(tmp_path / "nowhere"))
    assert result.exit_code == 1
    assert "no skill memory at" in result.stderr
    assert not (tmp_path / "nowhere").exists()


def test_tour_runs_and_reruns(tmp_path: Path) -> None:
    for _ in range(2):
        result = _run("tour", "--memory", str(tmp_path / "demo"))
        assert result.exit_code == 0, result.output
        text = " ".join(result.stdout.split())
        assert "bit-identical: True" in text
        assert "already-present" in text and "0 problem(s), 4 skill(s)" in text
    facts = _json("tour", "--memory", str(tmp_path / "demo"))
    assert facts["bit_identical"] is True and facts["problems"] == 0
    assert facts["retrieved"]["skill_ids"][0] == "demo-open-door"
    assert abs(sum(facts["retrieved"]["weights"]) - 1.0) < 1e-5
    assert facts["num_versions_open_door"] == 4  # one more per run
    assert {s["status"] for s in facts["reimported"]["skills"]} == {"already-present"}
    listed = _json("skills", "ls", "--memory", str(tmp_path / "demo"), "--tag", "demo")
    assert {s["name"] for s in listed} == {"reach", "grasp", "open-door", "place"}
    assert _json("verify", "--memory", str(tmp_path / "demo"))["ok"] is True
