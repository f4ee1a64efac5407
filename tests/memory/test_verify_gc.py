"""verify() finds every kind of damage and changes nothing; gc() reclaims only what no version
references, including the temporary files of dead writers."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skillbank.memory import PROBLEM_KINDS, Problem, SkillMemory
from tests.memory.store_helpers import spec_for, weights_for


@pytest.fixture
def memory(tmp_path: Path) -> SkillMemory:
    mem = SkillMemory(tmp_path / "m")
    records = mem.add_many([spec_for(i) for i in range(5)])
    mem.add_version(records[0].skill_id, weights=weights_for(50))
    yield mem
    mem.close()


def _snapshot(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not p.name.endswith(("-shm", "-wal"))
    }


def _kinds(problems: list[Problem]) -> set[str]:
    return {p.kind for p in problems}


def test_a_sound_memory_has_no_problems_and_verify_changes_nothing(memory: SkillMemory) -> None:
    before = _snapshot(memory.path)
    assert memory.verify() == []
    assert _snapshot(memory.path) == before


def test_corrupted_and_missing_blobs_are_reported(memory: SkillMemory) -> None:
    first, second = memory.list()[:2]
    path = memory.path / "blobs" / first.weights_sha256[:2] / f"{first.weights_sha256}.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    missing = memory.path / "blobs" / second.weights_sha256[:2]
    (missing / f"{second.weights_sha256}.safetensors").unlink()
    before = _snapshot(memory.path)
    problems = memory.verify()
    assert _kinds(problems) == {"blob_hash", "blob_missing"}
    assert {p.skill_id for p in problems} == {first.skill_id, second.skill_id}
    assert _snapshot(memory.path) == before


def test_damaged_rows_are_reported(memory: SkillMemory) -> None:
    listed = memory.list()
    multi = next(r for r in listed if r.version == 2)
    records = [multi, *(r for r in listed if r is not multi)]
    with sqlite3.connect(memory.db_path) as raw:
        raw.execute(
            "UPDATE versions SET key = ? WHERE skill_id = ?",
            (np.full(8, np.nan, np.float32).tobytes(), records[1].skill_id),
        )
        raw.execute(
            "UPDATE versions SET key = ? WHERE skill_id = ?",
            (np.ones(3, np.float32).tobytes(), records[2].skill_id),
        )
        raw.execute(
            "UPDATE versions SET parent_version_id = 'nobody' WHERE skill_id = ? AND version = 2",
            (records[0].skill_id,),
        )
        raw.execute(
            "UPDATE versions SET arch_config = '{\"in_dim\": -1}' WHERE skill_id = ?",
            (records[3].skill_id,),
        )
        latest = raw.execute(
            "SELECT latest_row FROM skills WHERE skill_id = ?", (records[4].skill_id,)
        ).fetchone()[0]
        raw.execute("DELETE FROM skills WHERE skill_id = ?", (records[4].skill_id,))
        raw.execute(
            "INSERT INTO skills (skill_id, latest_row) VALUES ('ghost', ?)", (latest + 1000,)
        )
    problems = memory.verify()
    kinds = _kinds(problems)
    assert {"key", "versions", "architecture", "orphan", "latest"} <= kinds
    by_skill = {(p.kind, p.skill_id) for p in problems}
    assert ("key", records[1].skill_id) in by_skill and ("key", records[2].skill_id) in by_skill
    assert ("versions", records[0].skill_id) in by_skill
    assert ("orphan", records[4].skill_id) in by_skill and ("latest", "ghost") in by_skill


def test_weights_that_no_longer_fit_are_reported(memory: SkillMemory) -> None:
    from safetensors.numpy import save

    record = memory.list()[1]
    bad = weights_for(1)
    bad["net.0.weight"] = np.full_like(bad["net.0.weight"], np.inf)
    data = save(bad)
    sha = hashlib.sha256(data).hexdigest()
    target = memory.path / "blobs" / sha[:2] / f"{sha}.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)  # a well-named blob with non-finite weights, wired in behind our back
    with sqlite3.connect(memory.db_path) as raw:
        raw.execute(
            "UPDATE versions SET weights_sha256 = ? WHERE skill_id = ?", (sha, record.skill_id)
        )
    problems = memory.verify()
    assert [(p.kind, p.skill_id) for p in problems] == [("weights", record.skill_id)]


def test_a_corrupted_database_file_is_reported(tmp_path: Path) -> None:
    with SkillMemory(tmp_path / "m") as mem:
        mem.add_many([spec_for(i) for i in range(300)])
    db = tmp_path / "m" / "skills.sqlite"
    data = bytearray(db.read_bytes())
    for offset in range(4096 * 3, len(data), 4096 * 2):  # trash page contents, keep the header
        data[offset + 100 : offset + 400] = b"\xff" * 300
    db.write_bytes(bytes(data))
    problems = SkillMemory(tmp_path / "m").verify()
    assert problems and "integrity" in _kinds(problems)


def test_problem_records_are_validated() -> None:
    assert "blob_hash" in PROBLEM_KINDS
    with pytest.raises(ValueError):
        Problem("bad-kind", None, "x")
    with pytest.raises(ValueError):
        Problem("key", None, "")


def test_gc_reclaims_unreferenced_blobs_and_stray_tmp_files(memory: SkillMemory) -> None:
    referenced = {r.weights_sha256 for s in memory.list() for r in memory.versions(s.skill_id)}
    orphan = b"orphan bytes"
    sha = hashlib.sha256(orphan).hexdigest()
    (memory.path / "blobs" / sha[:2]).mkdir(parents=True, exist_ok=True)
    (memory.path / "blobs" / sha[:2] / f"{sha}.safetensors").write_bytes(orphan)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(dead.stdout)
    stray = memory.path / "blobs" / sha[:2] / f".{sha}.{dead_pid}.abcd.tmp"
    stray.write_bytes(b"half a blob")
    live = memory.path / "blobs" / sha[:2] / f".{'0' * 64}.{__import__('os').getpid()}.ef01.tmp"
    live.write_bytes(b"being written")
    assert memory.verify() == []  # an unreferenced blob is gc's business, not a problem
    report = memory.gc()
    assert report.removed_sha256 == (sha,) and report.num_tmp_removed == 1
    assert report.bytes_freed == len(orphan) + len(b"half a blob")
    assert live.exists() and not stray.exists()  # a live writer's file is left alone
    on_disk = {p.name.split(".")[0] for p in (memory.path / "blobs").rglob("*.safetensors")}
    assert on_disk == referenced
    assert memory.verify() == []
    live.unlink()
