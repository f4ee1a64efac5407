"""Latest-only packs: one version per skill, stored as a root; the manifest says so."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from skillbank.errors import PackError
from skillbank.memory.pack_archive import read_pack_files
from skillbank.memory.pack_verify import read_pack
from skillbank.memory.packs import export_pack, import_pack
from skillbank.memory.store import SkillMemory
from tests.memory.pack_helpers import edit_manifest, populate, write_dir


@pytest.mark.parametrize("out_name", ["pack", "pack.tar.gz"])
def test_latest_only_exports_each_latest_version_as_a_root(tmp_path: Path, out_name: str) -> None:
    with SkillMemory(tmp_path / "src") as src, SkillMemory(tmp_path / "dst") as dst:
        ids = populate(src, seed=5)  # the second skill has 3 versions
        full = export_pack(src, tmp_path / f"full-{out_name}")
        latest = export_pack(src, tmp_path / out_name, latest_only=True)
        assert latest.latest_only and not full.latest_only
        assert (full.num_versions, latest.num_versions) == (5, 3)
        assert latest.num_bytes < full.num_bytes
        verified = read_pack(tmp_path / out_name)
        assert verified.manifest.latest_only
        assert [len(s.versions) for s in verified.manifest.skills] == [1, 1, 1]
        assert b'"latest_only": true' in read_pack_files(tmp_path / out_name)["manifest.json"]

        report = import_pack(dst, tmp_path / out_name)
        assert [s.status for s in report.skills] == ["added"] * 3
        for skill_id in ids:
            source = src.get(skill_id)
            (copy,) = dst.versions(skill_id)
            assert (copy.version, copy.parent_version_id) == (1, None)
            assert copy.version_id == source.version_id
            assert copy.weights_sha256 == source.weights_sha256
            assert copy.key.tobytes() == source.key.tobytes()
            assert copy.created_at == source.created_at
            extra = copy.provenance.extra
            assert extra["original_version_id"] == source.version_id
            if source.version > 1:
                assert extra["exported_version"] == str(source.version)
            else:
                assert "exported_version" not in extra
        assert dst.verify() == []
        # the same skills, the same attention: retrieval ranks them alike in both memories
        query = np.ones(src.key_dim or 1, np.float32)
        assert src.retrieve(query, 3).skill_ids == dst.retrieve(query, 3).skill_ids


def test_full_packs_do_not_write_the_field(tmp_path: Path) -> None:
    with SkillMemory(tmp_path / "src") as src:
        populate(src)
        export_pack(src, tmp_path / "pack")
    manifest = json.loads((tmp_path / "pack" / "manifest.json").read_bytes())
    assert "latest_only" not in manifest
    assert not read_pack(tmp_path / "pack").manifest.latest_only


def test_latest_only_with_many_versions_is_refused(tmp_path: Path) -> None:
    with SkillMemory(tmp_path / "src") as src:
        populate(src)
        export_pack(src, tmp_path / "pack")
    files = read_pack_files(tmp_path / "pack")

    def mark(manifest: dict) -> None:  # type: ignore[type-arg]
        manifest["latest_only"] = True

    def odd_value(manifest: dict) -> None:  # type: ignore[type-arg]
        manifest["latest_only"] = "yes"

    for edit, message in ((mark, "one version per skill"), (odd_value, "true or false")):
        bad = write_dir(edit_manifest(files, edit), tmp_path / f"bad-{edit.__name__}")
        with pytest.raises(PackError, match=message):
            read_pack(bad)
