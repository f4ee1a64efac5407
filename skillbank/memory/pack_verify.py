"""Verifying a skill pack completely, in memory, before anything is written.

:func:`read_pack` runs every check that needs only the pack, in this order: member paths and
types (:mod:`~skillbank.memory.pack_archive`), no pickle-based file, the manifest's JSON and format
version (:mod:`~skillbank.memory.pack_manifest`), every file listed and none unlisted, sizes and
SHA-256, each ``config.json`` equal to the manifest, and each weights file against the architecture
registry (:mod:`~skillbank.memory.safetensors_check`: header limits and layout, names, shapes,
dtypes, finite values). The first failure raises a :class:`~skillbank.errors.PackError` naming
the file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy.typing as npt

from skillbank.errors import PackError
from skillbank.memory.pack_archive import PackLimits, pack_name, read_pack_files
from skillbank.memory.pack_manifest import (
    MANIFEST_NAME,
    PackManifest,
    PackVersion,
    config_path,
    parse_manifest,
    strict_json_loads,
    weights_path,
)
from skillbank.memory.safetensors_check import validate_weights

__all__ = ["README_NAME", "VerifiedPack", "canonical_json", "read_pack", "sha256_hex"]

README_NAME = "README.md"
Weights = dict[str, npt.NDArray[Any]]


def sha256_hex(data: bytes) -> str:
    """Lower-case hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> str:
    """``value`` as JSON with sorted keys: equal values give equal strings."""
    return json.dumps(value, sort_keys=True, allow_nan=False)


@dataclass(frozen=True, slots=True)
class VerifiedPack:
    """A pack that passed every check, held in memory.

    Attributes:
        name: The pack's name.
        manifest: Its parsed manifest.
        manifest_sha256: SHA-256 of the manifest bytes.
        files: Relative path -> bytes, every file of the pack.
        weights: ``(skill_id, version)`` -> validated weight arrays.
    """

    name: str
    manifest: PackManifest
    manifest_sha256: str
    files: Mapping[str, bytes]
    weights: Mapping[tuple[str, int], Weights]


def _check_listing(files: Mapping[str, bytes], manifest: PackManifest) -> None:
    present = set(files) - {MANIFEST_NAME}
    for path in sorted(present - set(manifest.files)):
        raise PackError(f"{path}: present in the pack but not listed in {MANIFEST_NAME}")
    for path in sorted(set(manifest.files) - present):
        raise PackError(f"{path}: listed in {MANIFEST_NAME} but missing from the pack")
    allowed = {README_NAME}
    for skill in manifest.skills:
        for version in skill.versions:
            allowed |= {
                config_path(skill.skill_id, version.version),
                weights_path(skill.skill_id, version.version),
            }
    for path in sorted(allowed - {README_NAME} - present):
        raise PackError(f"{path}: missing from the pack (every version needs it)")
    for path in sorted(present - allowed):
        raise PackError(f"{path}: not a file a skill pack may hold")
    for path in sorted(present):
        entry = manifest.files[path]
        if len(files[path]) != entry.size:
            raise PackError(
                f"{path}: size {len(files[path])} differs from the manifest's {entry.size}"
            )
        if sha256_hex(files[path]) != entry.sha256:
            raise PackError(f"{path}: checksum mismatch (SHA-256 differs from {MANIFEST_NAME})")


def _check_config(data: bytes, path: str, version: PackVersion) -> None:
    try:
        parsed = strict_json_loads(data)
    except ValueError as exc:
        raise PackError(f"{path}: not valid JSON ({exc})") from None
    expected = {"arch_id": version.arch_id, "arch_config": dict(version.arch_config)}
    if not isinstance(parsed, dict) or canonical_json(parsed) != canonical_json(expected):
        raise PackError(f"{path}: arch_id / arch_config differ from {MANIFEST_NAME}")


def read_pack(path: Path, *, limits: PackLimits | None = None) -> VerifiedPack:
    """Read the pack at ``path`` and run every check that does not need a memory.

    Raises:
        PackError: naming the file and the problem.
    """
    limits = limits or PackLimits()
    files = read_pack_files(path, limits)
    if MANIFEST_NAME not in files:
        raise PackError(f"{MANIFEST_NAME}: missing from pack {path.name}")
    manifest_bytes = files[MANIFEST_NAME]
    manifest = parse_manifest(manifest_bytes)
    _check_listing(files, manifest)
    weights: dict[tuple[str, int], Weights] = {}
    for skill in manifest.skills:
        for version in skill.versions:
            key = (skill.skill_id, version.version)
            cfg_path = config_path(*key)
            _check_config(files[cfg_path], cfg_path, version)
            weights[key] = validate_weights(
                files[weights_path(*key)],
                version.arch_id,
                version.arch_config,
                name=weights_path(*key),
                limits=limits.safetensors,
            )
    return VerifiedPack(
        name=pack_name(path),
        manifest=manifest,
        manifest_sha256=sha256_hex(manifest_bytes),
        files=files,
        weights=weights,
    )
