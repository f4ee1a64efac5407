"""Skill packs: bit-identical round trips, the id-collision rule, and the pack layout."""

from __future__ import annotations

import base64
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from skillbank.errors import PackError, SkillNotFoundError
from skillbank.memory.pack_archive import read_pack_files
from skillbank.memory.packs import export_pack, import_pack
from skillbank.memory.store import SkillMemory
from skillbank.types import Provenance
from tests.memory.pack_helpers import (
    CONFIG,
    KEY_DIM,
    dump_memory,
    edit_manifest,
    mlp_weights,
    populate,
    write_dir,
)


def _same_weights(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes() for k in a
    )


@pytest.mark.parametrize("out_name", ["pack", "pack.tar.gz"])
def test_round_trip_is_bit_identical(tmp_path: Path, out_name: str) -> None:
    with SkillMemory(tmp_path / "src") as src, SkillMemory(tmp_path / "dst") as dst:
        ids = populate(src, seed=3)
        exported = export_pack(src, tmp_path / out_name, command="skillbank skills export")
        # the memory's own order (latest row: the skill with new versions comes last)
        assert exported.skill_ids == tuple(r.skill_id for r in src.list())
        assert sorted(exported.skill_ids) == ids
        assert exported.num_versions == 5
        report = import_pack(dst, tmp_path / out_name)
        assert [s.status for s in report.skills] == ["added"] * 3
        assert [s.skill_id for s in report.skills] == list(exported.skill_ids)
        assert [r.skill_id for r in dst.list()] == list(exported.skill_ids)
        assert report.manifest_sha256 == exported.manifest_sha256
        assert report.num_versions_written == 5
        for skill_id in ids:
            pairs = list(zip(src.versions(skill_id), dst.versions(skill_id), strict=True))
            assert pairs
            for a, b in pairs:
                assert a.key.tobytes() == b.key.tobytes()
                assert _same_weights(src.load_weights(a), dst.load_weights(b))
                assert (a.version, a.name, a.arch_id, a.tags) == (
                    b.version,
                    b.name,
                    b.arch_id,
                    b.tags,
                )
                assert dict(a.arch_config) == dict(b.arch_config)
                assert (a.provenance.source, a.provenance.task) == (
                    b.provenance.source,
                    b.provenance.task,
                )
                extra = b.provenance.extra
                assert extra["imported_from"] == "pack"
                assert extra["imported_pack_sha256"] == exported.manifest_sha256
                assert extra["original_version_id"] == a.version_id
                assert {k: extra[k] for k in a.provenance.extra} == dict(a.provenance.extra)
            for a, b in pairs:  # a fresh memory keeps ids, lineage, times and blob hashes
                assert (a.version_id, a.parent_version_id) == (b.version_id, b.parent_version_id)
                assert (a.created_at, a.weights_sha256) == (b.created_at, b.weights_sha256)
        assert dst.verify() == []


def test_key_as_base64_float32_is_read_exactly(tmp_path: Path) -> None:
    with SkillMemory(tmp_path / "src") as src, SkillMemory(tmp_path / "dst") as dst:
        ids = populate(src, seed=4)
        export_pack(src, tmp_path / "pack")
        files = read_pack_files(tmp_path / "pack")

        def to_base64(manifest: dict) -> None:  # type: ignore[type-arg]
            for skill in manifest["skills"]:
                for version in skill["versions"]:
                    key = np.asarray(version["key"], dtype="<f4")
                    version["key"] = base64.b64encode(key.tobytes()).decode()

        write_dir(edit_manifest(files, to_base64), tmp_path / "b64")
        import_pack(dst, tmp_path / "b64")
        for skill_id in ids:
            for a, b in zip(src.versions(skill_id), dst.versions(skill_id), strict=True):
                assert a.key.tobytes() == b.key.tobytes()


def test_reimport_is_skipped_and_changes_nothing(tmp_path: Path) -> None:
    with SkillMemory(tmp_path / "src") as src:
        populate(src, seed=5)
        export_pack(src, tmp_path / "pack.tar.gz")
        before = dump_memory(tmp_path / "src")
        report = import_pack(src, tmp_path / "pack.tar.gz")
        assert {s.status for s in report.skills} == {"already-present"}
        assert report.num_versions_written == 0
        assert dump_memory(tmp_path / "src") == before


def test_colliding_id_with_other_content_gets_a_fresh_id(tmp_path: Path) -> None:
    with SkillMemory(tmp_path / "src") as src, SkillMemory(tmp_path / "dst") as dst:
        ids = populate(src, seed=6, prefix="x")
        rng = np.random.default_rng(99)
        dst.add(
            "someone else's skill",
            rng.standard_normal(KEY_DIM).astype(np.float32),
            "mlp-v1",
            CONFIG,
            mlp_weights(rng),
            Provenance(source="other"),
            skill_id=ids[0],
        )
        export_pack(src, tmp_path / "pack")
        report = import_pack(dst, tmp_path / "pack")
        first = report.skills[0]
        assert first.status == "renamed"
        assert first.pack_skill_id == ids[0] and first.skill_id != ids[0]
        assert dst.get(ids[0]).name == "someone else's skill"  # untouched
        renamed = dst.get(first.skill_id)
        assert renamed.name == src.get(ids[0]).name
        assert renamed.provenance.extra["original_skill_id"] == ids[0]
        assert [s.status for s in report.skills[1:]] == ["added", "added"]


def test_newer_versions_extend_the_same_skill(tmp_path: Path) -> None:
    with SkillMemory(tmp_path / "src") as src, SkillMemory(tmp_path / "dst") as dst:
        ids = populate(src, seed=7)
        export_pack(src, tmp_path / "v1", [ids[0]])
        import_pack(dst, tmp_path / "v1")
        rng = np.random.default_rng(0)
        src.add_version(ids[0], weights=mlp_weights(rng))
        export_pack(src, tmp_path / "v2", [ids[0]])
        report = import_pack(dst, tmp_path / "v2")
        assert report.skills[0].status == "extended"
        assert report.skills[0].num_versions_written == 1
        versions = dst.versions(ids[0])
        assert len(versions) == 2
        assert versions[1].parent_version_id == versions[0].version_id
        assert _same_weights(dst.load_weights(versions[1]), src.load_weights(src.get(ids[0])))


def test_export_selected_ids_takes_their_whole_lineage(tmp_path: Path) -> None:
    with SkillMemory(tmp_path / "src") as src:
        ids = populate(src, seed=8)
        report = export_pack(src, tmp_path / "pack", [ids[1], ids[1]])
        assert report.skill_ids == (ids[1],)
        assert report.num_versions == 3
        manifest = json.loads((tmp_path / "pack" / "manifest.json").read_text())
        versions = manifest["skills"][0]["versions"]
        assert [v["version"] for v in versions] == [1, 2, 3]
        assert versions[0]["parent"] is None
        assert versions[2]["parent"] == versions[1]["version_id"]
        files = sorted(
            p.relative_to(tmp_path / "pack").as_posix()
            for p in (tmp_path / "pack").rglob("*")
            if p.is_file()
        )
        assert files == sorted(
            ["README.md", "manifest.json"]
            + [
                f"skills/{ids[1]}/{v}/{f}"
                for v in (1, 2, 3)
                for f in ("config.json", "weights.safetensors")
            ]
        )
        readme = (tmp_path / "pack" / "README.md").read_text()
        assert "skillbank skills import" in readme and ids[1] in readme


def test_export_refuses_unknown_ids_and_existing_outputs(tmp_path: Path) -> None:
    with SkillMemory(tmp_path / "src") as src:
        populate(src, seed=9)
        with pytest.raises(SkillNotFoundError):
            export_pack(src, tmp_path / "pack", ["no-such-skill"])
        assert not (tmp_path / "pack").exists()
        export_pack(src, tmp_path / "pack.tar.gz")
        with pytest.raises(PackError, match="already exists"):
            export_pack(src, tmp_path / "pack.tar.gz")


def test_tar_export_is_reproducible_and_flat(tmp_path: Path) -> None:
    with SkillMemory(tmp_path / "src") as src:
        populate(src, seed=10)
        export_pack(src, tmp_path / "a" / "p.tar.gz", created_at=1.7e9)
        export_pack(src, tmp_path / "b" / "p.tar.gz", created_at=1.7e9)
    assert (tmp_path / "a/p.tar.gz").read_bytes() == (tmp_path / "b/p.tar.gz").read_bytes()
    with tarfile.open(tmp_path / "a/p.tar.gz") as tar:
        members = tar.getmembers()
    assert all(m.isreg() and not m.name.startswith(("/", ".")) for m in members)
    assert "manifest.json" in {m.name for m in members}


def test_empty_memory_imports_into_empty_memory(tmp_path: Path) -> None:
    with SkillMemory(tmp_path / "src") as src, SkillMemory(tmp_path / "dst") as dst:
        report = export_pack(src, tmp_path / "pack")
        assert report.skill_ids == ()
        assert import_pack(dst, tmp_path / "pack").skills == ()
        assert len(dst) == 0
