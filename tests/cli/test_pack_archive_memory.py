"""Latest-only packs of a learned memory, and `--memory PACK.tar.gz` for read-only commands."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from skillbank.cli.app import app
from skillbank.cli.pack_memory import CACHE_ENV, cached_pack_memory
from skillbank.memory.store import SkillMemory
from tests.cli.demo_helpers import tree_digest, write_toy_demos


def _ok(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def _refused(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 1, result.output
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A memory learned in two calls (so its components have two versions) and its packs."""
    root = tmp_path_factory.mktemp("pack-archive")
    memory = root / "mem"
    for task in ("pickup", "goto"):
        demos = write_toy_demos(root / task, task, 8)
        _ok("learn", str(demos), "--memory", str(memory), "--seed", "1")
    paths = {"root": root, "memory": memory}
    for name, flags in (("full", ()), ("latest", ("--latest-only",))):
        paths[name] = root / f"{name}.tar.gz"
        _ok("skills", "export", "--memory", str(memory), "--out", str(paths[name]), *flags)
    return paths


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "packs"


def _eval(memory: Path, out: Path) -> dict[str, object]:
    _ok("eval", "toy/pickup", "--memory", str(memory), "--episodes", "4", "--seed", "7",
        "--json", str(out))  # fmt: skip
    payload: dict[str, object] = json.loads(out.read_text())
    return payload


def test_latest_only_pack_is_smaller_and_acts_the_same(
    learned: dict[str, Path], tmp_path: Path
) -> None:
    with SkillMemory(learned["memory"], create=False) as store:
        num_records = len(store.list())
        assert max(r.version for r in store.list()) > 1  # components were re-stored
    assert learned["latest"].stat().st_size < learned["full"].stat().st_size
    imported = tmp_path / "imported"
    report = json.loads(
        _ok("skills", "import", str(learned["latest"]), "--memory", str(imported), "--json")
    )
    assert len(report["skills"]) == num_records
    assert {s["num_versions_written"] for s in report["skills"]} == {1}
    assert json.loads(_ok("verify", "--memory", str(imported), "--json"))["ok"]
    with SkillMemory(imported, create=False) as store:
        assert {r.version for r in store.list()} == {1}
        assert all(r.parent_version_id is None for r in store.list())
    from_memory = _eval(learned["memory"], tmp_path / "memory.json")
    from_import = _eval(imported, tmp_path / "import.json")
    for key in ("success_rate", "mean_steps", "skills_used"):
        assert from_import[key] == from_memory[key]


def test_eval_ls_show_verify_read_an_archive_through_the_cache(
    learned: dict[str, Path], tmp_path: Path, _cache: Path
) -> None:
    pack = learned["latest"]
    before = pack.read_bytes()
    from_memory = _eval(learned["memory"], tmp_path / "memory.json")
    from_pack = _eval(pack, tmp_path / "pack.json")
    for key in ("success_rate", "mean_steps", "skills_used"):
        assert from_pack[key] == from_memory[key]
    sha = hashlib.sha256(before).hexdigest()
    entry = _cache / sha
    assert (entry / "pack.json").is_file() and (entry / "memory" / "skills.sqlite").is_file()
    cached = tree_digest(entry)
    assert all(not (p.stat().st_mode & stat.S_IWUSR) for p in entry.rglob("*") if p.is_file())

    listed = json.loads(_ok("skills", "ls", "--memory", str(pack), "--json"))
    with SkillMemory(learned["memory"], create=False) as store:
        assert sorted(r["weights_sha256"] for r in listed) == sorted(
            r.weights_sha256 for r in store.list()
        )
    shown = json.loads(
        _ok("skills", "show", listed[0]["skill_id"], "--memory", str(pack), "--json")
    )
    assert shown["skill_id"] == listed[0]["skill_id"] and shown["version"] == 1
    assert json.loads(_ok("verify", "--memory", str(pack), "--json"))["ok"]
    _eval(pack, tmp_path / "again.json")  # usage is written to a throwaway copy

    assert pack.read_bytes() == before  # the archive is never written
    assert tree_digest(entry) == cached  # nor the cache entry
    assert cached_pack_memory(pack) == entry / "memory"
    assert [p.name for p in _cache.iterdir()] == [sha]  # no leftover working copies


def test_a_corrupt_archive_is_one_clear_error_and_caches_nothing(
    learned: dict[str, Path], tmp_path: Path, _cache: Path
) -> None:
    data = learned["latest"].read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.tgz"
    garbage.write_bytes(b"not a gzip file at all")
    for bad in (truncated, garbage):
        message = _refused("eval", "toy/pickup", "--memory", str(bad), "--episodes", "1")
        assert bad.name in message
        assert "Traceback" not in message
    not_a_pack = tmp_path / "notes.txt"
    not_a_pack.write_text("hello")
    assert "not a pack archive" in _refused("skills", "ls", "--memory", str(not_a_pack))
    assert not _cache.exists() or not [p for p in _cache.iterdir() if not p.name.startswith(".")]


def test_writing_commands_refuse_a_pack(learned: dict[str, Path], tmp_path: Path) -> None:
    pack_dir = tmp_path / "pack-dir"
    _ok("skills", "export", "--memory", str(learned["memory"]), "--out", str(pack_dir),
        "--latest-only")  # fmt: skip
    dataset = learned["root"] / "pickup"
    for pack in (learned["latest"], pack_dir):
        before = tree_digest(pack) if pack.is_dir() else {"": pack.read_bytes().hex()}
        message = _refused("learn", str(dataset), "--memory", str(pack))
        assert "skill pack" in message and "import it first" in message
        assert "skills import" in message
        assert "import it first" in _refused("gc", "--memory", str(pack))
        assert "import it first" in _refused("skills", "rm", "x", "--memory", str(pack))
        assert "import it first" in _refused(
            "skills", "import", str(learned["full"]), "--memory", str(pack)
        )
        after = tree_digest(pack) if pack.is_dir() else {"": pack.read_bytes().hex()}
        assert after == before
