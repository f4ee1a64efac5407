"""The bad-input corpus: every refusal of issue 2, each a PackError naming the file and the problem,
with the memory unchanged (every row and every blob compared before and after)."""

from __future__ import annotations

import base64
import json
import pickle
import struct
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load, save

from skillbank.errors import PackError, SkillMemoryError
from skillbank.memory.pack_archive import PackLimits, read_pack_files
from skillbank.memory.packs import export_pack, import_pack
from skillbank.memory.store import SkillMemory
from tests.memory.pack_helpers import (
    dump_memory,
    edit_manifest,
    populate,
    reseal,
    write_dir,
    write_tar,
)

Files = dict[str, bytes]


@pytest.fixture(scope="module")
def base_files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    root = tmp_path_factory.mktemp("source")
    with SkillMemory(root / "memory") as memory:
        ids = populate(memory, seed=1, prefix="src")
        export_pack(memory, root / "pack", ids)  # in this order: skills[1] has 3 versions
    return read_pack_files(root / "pack")


@pytest.fixture()
def target(tmp_path: Path) -> Iterator[SkillMemory]:
    with SkillMemory(tmp_path / "target") as memory:
        populate(memory, seed=2, prefix="tgt")
        yield memory


def _weights_name(files: Files, skill: int = 1, version: int = 2) -> str:
    manifest = json.loads(files["manifest.json"])
    skill_id = manifest["skills"][skill]["id"]
    return f"skills/{skill_id}/{version}/weights.safetensors"


def _config_name(files: Files) -> str:
    return _weights_name(files).replace("weights.safetensors", "config.json")


def _with_weights(files: Files, change: Callable[[dict[str, Any]], bytes]) -> Files:
    name = _weights_name(files)
    arrays = {k: v.copy() for k, v in load(files[name]).items()}
    return reseal({**files, name: change(arrays)})


def _raw_header(files: Files, edit: Callable[[dict[str, Any]], None]) -> Files:
    """Rewrite the JSON header of one weights file (same data) and reseal."""
    name = _weights_name(files)
    data = files[name]
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    edit(header)
    blob = json.dumps(header).encode()
    return reseal({**files, name: struct.pack("<Q", len(blob)) + blob + data[8 + n :]})


def _set_all_versions(field: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(manifest: dict[str, Any]) -> None:
        for version in manifest["skills"][0]["versions"]:
            version[field] = value

    return edit


def _nan(arrays: dict[str, Any]) -> bytes:
    arrays["net.0.weight"][0, 0] = np.nan
    return save(arrays)


def _inf(arrays: dict[str, Any]) -> bytes:
    arrays["net.2.bias"][0] = -np.inf
    return save(arrays)


def _renamed(arrays: dict[str, Any]) -> bytes:
    arrays["net.1.weight"] = arrays.pop("net.2.weight")
    return save(arrays)


def _reshaped(arrays: dict[str, Any]) -> bytes:
    arrays["net.0.weight"] = arrays["net.0.weight"].T.copy()
    return save(arrays)


def _retyped(arrays: dict[str, Any]) -> bytes:
    arrays["net.0.bias"] = arrays["net.0.bias"].astype(np.float16)
    return save(arrays)


def _torch_zip() -> bytes:
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": 1}))
    return buffer.getvalue()


def _arch(files: Files, arch_id: str) -> Files:
    def edit(manifest: dict[str, Any]) -> None:
        for skill in manifest["skills"]:
            for version in skill["versions"]:
                version["arch_id"] = arch_id

    files = edit_manifest(files, edit)
    for name in list(files):
        if name.endswith("config.json"):
            config = json.loads(files[name])
            config["arch_id"] = arch_id
            files[name] = json.dumps(config).encode()
    return reseal(files)


def _numel(header: dict[str, Any], name: str) -> int:
    return int(np.prod(header[name]["shape"]))


def _grow_last(header: dict[str, Any]) -> None:
    """Make the last tensor claim 100x its rows: consistent offsets, running past the buffer."""
    name = max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"])
    entry = header[name]
    entry["shape"][0] *= 100
    begin = entry["data_offsets"][0]
    entry["data_offsets"] = [begin, begin + 4 * _numel(header, name)]


def _lineage(manifest: dict[str, Any]) -> None:
    manifest["skills"][1]["versions"][2]["parent"] = "someone-else"


# name -> (mutation of the pack's files, file named in the message, words in the message)
CASES: dict[str, tuple[Callable[[Files], Files], str, str]] = {
    "pickle-suffix-pkl": (
        lambda f: reseal({**f, "skills/extra.pkl": pickle.dumps([1])}),
        "skills/extra.pkl",
        "pickle-based",
    ),
    "pickle-suffix-pt": (lambda f: {**f, "model.pt": b"\x00"}, "model.pt", "pickle-based"),
    "pickle-suffix-bin": (lambda f: {**f, "w.bin": b"\x00"}, "w.bin", "pickle-based"),
    "pickle-content": (
        lambda f: reseal({**f, _weights_name(f): pickle.dumps({"w": [1.0]}, protocol=4)}),
        "weights.safetensors",
        "pickle protocol",
    ),
    "pickle-content-readme": (
        lambda f: reseal({**f, "README.md": pickle.dumps("x", protocol=2)}),
        "README.md",
        "pickle protocol",
    ),
    "torch-zip": (
        lambda f: reseal({**f, _weights_name(f): _torch_zip()}),
        "weights.safetensors",
        "zip archive",
    ),
    "checksum-weights": (
        lambda f: {**f, _weights_name(f): f[_weights_name(f)][:-1] + b"\x01"},
        "weights.safetensors",
        "checksum mismatch",
    ),
    "checksum-readme": (
        lambda f: {**f, "README.md": f["README.md"] + b"!"},
        "README.md",
        "size",
    ),
    "file-missing": (
        lambda f: {k: v for k, v in f.items() if k != _weights_name(f)},
        "weights.safetensors",
        "missing from the pack",
    ),
    "file-missing-resealed": (
        lambda f: reseal({k: v for k, v in f.items() if k != _config_name(f)}),
        "config.json",
        "missing from the pack",
    ),
    "file-unlisted": (lambda f: {**f, "notes.txt": b"hi"}, "notes.txt", "not listed"),
    "file-unexpected-listed": (
        lambda f: reseal({**f, "skills/run.sh": b"rm -rf /"}),
        "skills/run.sh",
        "may hold",
    ),
    "manifest-missing": (
        lambda f: {k: v for k, v in f.items() if k != "manifest.json"},
        "manifest.json",
        "missing",
    ),
    "manifest-not-json": (
        lambda f: {**f, "manifest.json": b"{not json"},
        "manifest.json",
        "not valid JSON",
    ),
    "manifest-nan": (
        lambda f: {
            **f,
            "manifest.json": f["manifest.json"].replace(
                b'"created_at": ', b'"created_at": NaN, "x": ', 1
            ),
        },
        "manifest.json",
        "not valid JSON",
    ),
    "format-version": (
        lambda f: edit_manifest(f, lambda m: m.update(format_version=2)),
        "manifest.json",
        "unknown format_version 2",
    ),
    "format-version-missing": (
        lambda f: edit_manifest(f, lambda m: m.pop("format_version")),
        "manifest.json",
        "unknown format_version None",
    ),
    "manifest-unknown-field": (
        lambda f: edit_manifest(f, lambda m: m.update(run="python -c ...")),
        "manifest.json",
        "unknown fields ['run']",
    ),
    "unsafe-skill-id": (
        lambda f: edit_manifest(f, lambda m: m["skills"][0].update(id="../../etc")),
        "manifest.json",
        "not a safe id",
    ),
    "broken-lineage": (
        lambda f: edit_manifest(f, _lineage),
        "manifest.json",
        "parent",
    ),
    "unknown-arch": (
        lambda f: _arch(f, "evil-v1"),
        "weights.safetensors",
        "not in the allow-list",
    ),
    "config-differs": (
        lambda f: reseal({**f, _config_name(f): b'{"arch_id": "mlp-v1", "arch_config": {}}'}),
        "config.json",
        "differ from manifest.json",
    ),
    "config-not-json": (
        lambda f: reseal({**f, _config_name(f): b"\xff\xfe"}),
        "config.json",
        "not valid JSON",
    ),
    "key-wrong-dim": (
        lambda f: edit_manifest(
            f, lambda m: [v.update(key=[0.5] * 5) for s in m["skills"] for v in s["versions"]]
        ),
        "manifest.json",
        "dimension 5",
    ),
    "key-mixed-dims": (
        lambda f: edit_manifest(f, _set_all_versions("key", [0.5] * 5)),
        "manifest.json",
        "different dimensions",
    ),
    "key-non-finite": (
        lambda f: edit_manifest(
            f,
            _set_all_versions(
                "key", base64.b64encode(np.full(8, np.nan, "<f4").tobytes()).decode()
            ),
        ),
        "manifest.json",
        "non-finite",
    ),
    "key-overflow": (
        lambda f: edit_manifest(f, _set_all_versions("key", [1e300] * 8)),
        "manifest.json",
        "non-finite",
    ),
    "empty-name": (
        lambda f: edit_manifest(f, _set_all_versions("name", "")),
        "manifest.json",
        "name must be a non-empty string",
    ),
    "manifest-float-overflow": (
        lambda f: {
            **f,
            "manifest.json": f["manifest.json"].replace(
                b'"in_dim": 3', b'"in_dim": 3, "x": 1e999', 1
            ),
        },
        "manifest.json",
        "out of range",
    ),
    "config-float-overflow": (
        lambda f: reseal(
            {
                **f,
                _config_name(f): f[_config_name(f)].replace(b'"in_dim": 3', b'"in_dim": 3e999', 1),
            }
        ),
        "config.json",
        "out of range",
    ),
    "key-bad-base64": (
        lambda f: edit_manifest(f, _set_all_versions("key", "not base64!")),
        "manifest.json",
        "base64",
    ),
    "key-base64-partial-float": (
        lambda f: edit_manifest(f, _set_all_versions("key", "AAAAAAA=")),
        "manifest.json",
        "whole number of float32",
    ),
    "duplicate-skill-id": (
        lambda f: edit_manifest(f, lambda m: m["skills"].append(m["skills"][0])),
        "manifest.json",
        "repeat",
    ),
    "arch-changes-between-versions": (
        lambda f: edit_manifest(
            f, lambda m: m["skills"][1]["versions"][1].update(arch_id="skill-policy-v1")
        ),
        "manifest.json",
        "changes arch_id",
    ),
    "weights-nan": (lambda f: _with_weights(f, _nan), "weights.safetensors", "non-finite"),
    "weights-inf": (lambda f: _with_weights(f, _inf), "weights.safetensors", "non-finite"),
    "weights-names": (lambda f: _with_weights(f, _renamed), "weights.safetensors", "missing"),
    "weights-shape": (lambda f: _with_weights(f, _reshaped), "weights.safetensors", "expects"),
    "weights-dtype": (lambda f: _with_weights(f, _retyped), "weights.safetensors", "F16"),
    "header-length-past-end": (
        lambda f: reseal(
            {**f, _weights_name(f): struct.pack("<Q", 10**6) + f[_weights_name(f)][8:]}
        ),
        "weights.safetensors",
        "runs past the end",
    ),
    "header-truncated-file": (
        lambda f: reseal({**f, _weights_name(f): f[_weights_name(f)][:5]}),
        "weights.safetensors",
        "too short",
    ),
    "header-not-json": (
        lambda f: reseal({**f, _weights_name(f): struct.pack("<Q", 4) + b"{!!}"}),
        "weights.safetensors",
        "not valid JSON",
    ),
    "header-unknown-dtype": (
        lambda f: _raw_header(f, lambda h: h["net.0.bias"].update(dtype="Q7")),
        "weights.safetensors",
        "unknown dtype",
    ),
    "header-overlap": (
        lambda f: _raw_header(
            f, lambda h: h["net.2.bias"].update(data_offsets=[0, 4 * _numel(h, "net.2.bias")])
        ),
        "weights.safetensors",
        "overlaps",
    ),
    "header-gap": (
        lambda f: _raw_header(
            f,
            lambda h: h["net.2.bias"].update(
                data_offsets=[o + 10**6 for o in h["net.2.bias"]["data_offsets"]]
            ),
        ),
        "weights.safetensors",
        "gap",
    ),
    "header-out-of-range": (
        lambda f: _raw_header(f, _grow_last),
        "weights.safetensors",
        "past the buffer",
    ),
}


def _check_refused(memory: SkillMemory, pack: Path, file: str, words: str, **kwargs: Any) -> None:
    before = dump_memory(memory.path)
    with pytest.raises(PackError) as info:
        import_pack(memory, pack, **kwargs)
    message = info.value.message
    assert file in message, message
    assert words in message, message
    assert dump_memory(memory.path) == before


@pytest.mark.parametrize("layout", ["dir", "tar"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_with_memory_unchanged(
    case: str, layout: str, base_files: Files, target: SkillMemory, tmp_path: Path
) -> None:
    mutate, file, words = CASES[case]
    files = mutate(dict(base_files))
    pack = (
        write_dir(files, tmp_path / "pack")
        if layout == "dir"
        else write_tar(files, tmp_path / "pack.tar.gz")
    )
    _check_refused(target, pack, file, words)


def test_the_unmutated_pack_imports(base_files: Files, target: SkillMemory, tmp_path: Path) -> None:
    report = import_pack(target, write_tar(base_files, tmp_path / "pack.tar.gz"))
    assert report.num_added == 3
    assert target.verify() == []


@pytest.mark.parametrize("protocol", [2, 5])
def test_a_header_length_that_reads_as_a_pickle_protocol_is_not_pickle(
    base_files: Files, target: SkillMemory, tmp_path: Path, protocol: int
) -> None:
    # A safetensors header of 0x0580 bytes starts the file with \x80\x05 (a real controller's
    # did): its layout, not its first two bytes, says what it is.
    name = _weights_name(base_files)
    data = base_files[name]
    (n,) = struct.unpack("<Q", data[:8])
    size = 0x80 + 256 * protocol
    assert n <= size
    padded = data[8 : 8 + n] + b" " * (size - n)
    files = reseal({**base_files, name: struct.pack("<Q", size) + padded + data[8 + n :]})
    assert files[name][:2] == bytes([0x80, protocol])
    for pack in (write_dir(files, tmp_path / "dir"), write_tar(files, tmp_path / "pack.tar.gz")):
        with SkillMemory(tmp_path / f"fresh-{pack.name}") as memory:
            assert import_pack(memory, pack).num_added == 3
            assert memory.verify() == []


@pytest.mark.parametrize(
    ("limits", "words"),
    [
        (PackLimits(max_header_bytes=32), "header length"),
        (PackLimits(max_file_bytes=200), "per-file limit of 200"),
        (PackLimits(max_total_bytes=1000), "exceeds the limit of 1000"),
        (PackLimits(max_files=3), "more than 3 entries"),
    ],
)
def test_oversized_refused(
    limits: PackLimits, words: str, base_files: Files, target: SkillMemory, tmp_path: Path
) -> None:
    pack = write_tar(base_files, tmp_path / "pack.tar.gz")
    before = dump_memory(target.path)
    with pytest.raises(PackError, match=words):
        import_pack(target, pack, limits=limits)
    assert dump_memory(target.path) == before


def _member(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = 0
    return info


TAR_MEMBERS: dict[str, tuple[tarfile.TarInfo, str, str]] = {
    "absolute": (_member("/etc/passwd", tarfile.REGTYPE), "/etc/passwd", "absolute path"),
    "dotdot": (_member("skills/../../evil", tarfile.REGTYPE), "../../evil", "'..'"),
    "backslash": (_member("skills\\..\\evil", tarfile.REGTYPE), "evil", "backslash"),
    "symlink": (_member("skills/link", tarfile.SYMTYPE, "/etc/passwd"), "skills/link", "link"),
    "hardlink": (_member("skills/hard", tarfile.LNKTYPE, "README.md"), "skills/hard", "link"),
    "chardev": (_member("skills/tty", tarfile.CHRTYPE), "skills/tty", "device"),
    "blockdev": (_member("skills/sda", tarfile.BLKTYPE), "skills/sda", "device"),
    "fifo": (_member("skills/fifo", tarfile.FIFOTYPE), "skills/fifo", "FIFO"),
}


@pytest.mark.parametrize("case", sorted(TAR_MEMBERS))
def test_unsafe_archive_members_refused(
    case: str, base_files: Files, target: SkillMemory, tmp_path: Path
) -> None:
    member, file, words = TAR_MEMBERS[case]
    pack = write_tar(base_files, tmp_path / "pack.tar.gz", extra=[(member, b"")])
    _check_refused(target, pack, file, words)


def test_duplicate_member_refused(base_files: Files, target: SkillMemory, tmp_path: Path) -> None:
    readme = tarfile.TarInfo("README.md")
    readme.size = 3
    pack = write_tar(base_files, tmp_path / "pack.tar.gz", extra=[(readme, b"abc")])
    _check_refused(target, pack, "README.md", "appears twice")


def test_corrupt_archive_refused(base_files: Files, target: SkillMemory, tmp_path: Path) -> None:
    pack = write_tar(base_files, tmp_path / "pack.tar.gz")
    data = pack.read_bytes()
    pack.write_bytes(data[: len(data) // 2])
    _check_refused(target, pack, "pack.tar.gz", "not a readable")
    pack.write_bytes(b"not a tarball at all")
    _check_refused(target, pack, "pack.tar.gz", "not a readable")


def test_symlink_in_directory_pack_refused(
    base_files: Files, target: SkillMemory, tmp_path: Path
) -> None:
    pack = write_dir(base_files, tmp_path / "pack")
    (pack / "skills" / "link").symlink_to("/etc/passwd")
    _check_refused(target, pack, "skills/link", "symlink")


def test_hardlink_and_fifo_in_directory_pack_refused(
    base_files: Files, target: SkillMemory, tmp_path: Path
) -> None:
    import os

    pack = write_dir(base_files, tmp_path / "pack")
    os.link(pack / "README.md", tmp_path / "outside-link")
    _check_refused(target, pack, "README.md", "hardlink")
    (tmp_path / "outside-link").unlink()
    os.mkfifo(pack / "skills" / "fifo")
    _check_refused(target, pack, "skills/fifo", "FIFO")


def test_missing_or_special_pack_refused(target: SkillMemory, tmp_path: Path) -> None:
    import os

    _check_refused(target, tmp_path / "nope.tar.gz", "nope.tar.gz", "no such pack")
    os.mkfifo(tmp_path / "fifo.tar.gz")  # opening it would block: refused before any read
    _check_refused(target, tmp_path / "fifo.tar.gz", "fifo.tar.gz", "neither a directory")


def test_opening_a_pack_directory_as_a_memory_is_refused(base_files: Files, tmp_path: Path) -> None:
    pack = write_dir(base_files, tmp_path / "pack")
    before = sorted(p.relative_to(pack) for p in pack.rglob("*"))
    with pytest.raises(SkillMemoryError, match="is a skill pack, not a skill memory") as info:
        SkillMemory(pack)
    assert "skills import" in (info.value.hint or "")
    assert sorted(p.relative_to(pack) for p in pack.rglob("*")) == before  # nothing written
