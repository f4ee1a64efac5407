"""Property-based fuzz of pack import: random mutations of a valid pack either import intact (and
the memory then verifies) or are refused with a PackError — never another exception — and a refusal
leaves every row and every blob of the memory as it was."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skillbank.errors import PackError
from skillbank.memory.pack_archive import read_pack_files
from skillbank.memory.packs import export_pack, import_pack
from skillbank.memory.store import SkillMemory
from tests.memory.pack_helpers import dump_memory, populate, reseal, write_dir, write_tar

Files = dict[str, bytes]

JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.floats(width=32, allow_nan=True), max_size=10),
    st.just("../../etc/passwd"),
    st.just("evil-v1"),
    st.just({}),
)


@pytest.fixture(scope="module")
def base_files() -> Iterator[Files]:
    root = Path(tempfile.mkdtemp(prefix="fuzz-src-"))
    try:
        with SkillMemory(root / "memory") as memory:
            populate(memory, seed=11, prefix="fz")
            export_pack(memory, root / "pack")
        yield read_pack_files(root / "pack")
    finally:
        shutil.rmtree(root)


def _is_json(data: bytes, kind: type) -> bool:
    try:
        return isinstance(json.loads(data), kind)
    except ValueError:
        return False


def _mutate_json(data: bytes, draw: st.DrawFn) -> bytes:
    """Replace or delete one randomly chosen node of a JSON document."""
    doc = json.loads(data)
    node: Any = doc
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        children = (
            list(node.items())
            if isinstance(node, dict)
            else list(enumerate(node))
            if isinstance(node, list)
            else []
        )
        containers = [(k, v) for k, v in children if isinstance(v, dict | list) and v]
        if not containers:
            break
        _, node = draw(st.sampled_from(containers))
    if isinstance(node, dict) and node:
        key = draw(st.sampled_from(sorted(node)))
        if draw(st.booleans()):
            node[key] = draw(JSON_VALUES)
        else:
            del node[key]
    elif isinstance(node, list) and node:
        node[draw(st.integers(0, len(node) - 1))] = draw(JSON_VALUES)
    return json.dumps(doc).encode()


def _mutate_pack(data: st.DataObject, base: Files) -> tuple[Files, bool, list[str]]:
    """1-3 random mutations of ``base``, optionally resealed; also picks dir or .tar.gz."""
    draw = data.draw
    files = dict(base)
    log: list[str] = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        name = draw(st.sampled_from(sorted(files)))
        op = draw(st.sampled_from(["flip", "truncate", "delete", "add", "json", "append", "meta"]))
        data = files[name]
        if op == "flip" and data:
            at = draw(st.integers(0, len(data) - 1))
            files[name] = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
        elif op == "truncate":
            files[name] = data[: draw(st.integers(0, max(len(data) - 1, 0)))]
        elif op == "delete":
            del files[name]
        elif op == "append":
            files[name] = data + draw(st.binary(min_size=1, max_size=16))
        elif op == "add":
            new = draw(
                st.sampled_from(
                    ["notes.txt", "skills/x.pkl", "skills/a/1/extra.json", name + ".bak"]
                )
            )
            files[new] = draw(st.binary(max_size=32))
            name = new
        elif op == "json" and _is_json(data, dict):
            files[name] = _mutate_json(data, draw)
        elif op == "meta" and _is_json(files.get("manifest.json", b""), dict):
            name = "manifest.json"  # a valid edit: the pack stays importable
            manifest = json.loads(files[name])
            if not isinstance(manifest.get("skills"), list) or not manifest["skills"]:
                continue
            skill = draw(st.sampled_from(manifest["skills"]))
            if not isinstance(skill, dict) or not isinstance(skill.get("versions"), list):
                continue
            if not skill["versions"]:
                continue
            version = draw(st.sampled_from(skill["versions"]))
            field = draw(st.sampled_from(["name", "tags", "task"]))
            if not isinstance(version, dict) or not isinstance(version.get("provenance"), dict):
                continue
            text = draw(st.text(min_size=1, max_size=8))
            if field == "task":
                version["provenance"]["task"] = text
            else:
                version[field] = [text] if field == "tags" else text
            files[name] = json.dumps(manifest).encode()
        log.append(f"{op} {name}")
    sealed = "manifest.json" in files and draw(st.booleans())
    if sealed:  # recompute checksums so the mutation reaches the deeper checks
        try:
            files = reseal(files)
        except (ValueError, KeyError, TypeError):
            sealed = False
    return files, draw(st.booleans()), log


def _run_case(
    base: Files, case: tuple[Files, bool, list[str]], memory: SkillMemory, memory_path: Path
) -> None:
    files, as_tar, log = case
    with tempfile.TemporaryDirectory(prefix="fuzz-pack-") as tmp:
        pack = (
            write_tar(files, Path(tmp) / "p.tar.gz")
            if as_tar
            else write_dir(files, Path(tmp) / "p")
        )
        before = dump_memory(memory_path)
        try:
            report = import_pack(memory, pack)
        except PackError as exc:
            assert exc.message, log
            assert dump_memory(memory_path) == before, log
            return
    assert memory.verify() == [], log
    for skill in report.skills:
        versions = memory.versions(skill.skill_id)
        assert versions, log
        for record in versions:
            weights = memory.load_weights(record)
            assert all(np.isfinite(w).all() for w in weights.values()), log


def _fuzz(base_files: Files, data: st.DataObject) -> None:
    root = Path(tempfile.mkdtemp(prefix="fuzz-dst-"))
    try:
        with SkillMemory(root / "m") as memory:
            populate(memory, seed=12, prefix="own")
            if data.draw(st.booleans()):  # the unmutated pack is there already: ids collide
                import_pack(memory, write_dir(base_files, root / "base"))
            for _ in range(5):
                _run_case(base_files, _mutate_pack(data, base_files), memory, root / "m")
    finally:
        shutil.rmtree(root)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_packs_import_intact_or_are_refused_cleanly(
    base_files: Files, data: st.DataObject
) -> None:
    _fuzz(base_files, data)


@pytest.mark.slow
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_packs_slow(base_files: Files, data: st.DataObject) -> None:
    _fuzz(base_files, data)
