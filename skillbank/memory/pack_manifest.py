"""The manifest of a skill pack: what it holds, and the SHA-256 of every file.

``manifest.json`` (format version 1)::

    {
      "format_version": 1,
      "created_at": 1764100000.0,               # Unix time of the export
      "skillbank_version": "0.1.0",
      "command": "skillbank skills export ...", # or null
      "latest_only": true,                      # optional: only each skill's latest version
      "skills": [
        {"id": "3f2a...", "versions": [
          {"version": 1, "version_id": "...", "name": "open-door",
           "key": [0.1, -0.3, ...],             # float32 values, or base64 of little-endian float32
           "arch_id": "mlp-v1", "arch_config": {...}, "tags": ["door"],
           "provenance": {"source": "...", "task": "...", "dataset_hash": "...", "extra": {}},
           "created_at": 1764000000.0, "parent": null}, ...]}],
      "files": {"skills/3f2a.../1/weights.safetensors": {"sha256": "...", "size": 1234}, ...}
    }

Each version ``v`` of skill ``id`` has ``skills/<id>/<v>/config.json`` (``{"arch_id",
"arch_config"}``, equal to the manifest's) and ``skills/<id>/<v>/weights.safetensors``.
``files`` lists every file of the pack except ``manifest.json`` itself. A ``latest_only`` pack
carries one version per skill (the latest when exported) as a root: ``version`` 1, ``parent``
null, its original ``version_id`` kept; ``latest_only`` is written only when true, so full packs
read the same as before it existed. Parsing is strict:
unknown or missing fields, wrong types, non-finite numbers, unsafe ids and broken lineage are
refused with a :class:`PackError`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from skillbank.errors import PackError
from skillbank.types import Provenance

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "PackFile",
    "PackManifest",
    "PackSkill",
    "PackVersion",
    "config_path",
    "is_safe_id",
    "manifest_to_json",
    "parse_manifest",
    "reject_json_constant",
    "strict_json_loads",
    "unique_json_object",
    "weights_path",
]

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MAX_KEY_DIM = 65_536
_MAX_TEXT = 65_536


def is_safe_id(text: str) -> bool:
    """True when ``text`` is a path-safe id: 1-128 of ``[A-Za-z0-9._-]``, starting alphanumeric."""
    return bool(_SAFE_ID.fullmatch(text))


def config_path(skill_id: str, version: int) -> str:
    """Relative path of a version's config inside a pack."""
    return f"skills/{skill_id}/{version}/config.json"


def weights_path(skill_id: str, version: int) -> str:
    """Relative path of a version's safetensors weights inside a pack."""
    return f"skills/{skill_id}/{version}/weights.safetensors"


@dataclass(frozen=True, slots=True)
class PackFile:
    """One file of a pack.

    Attributes:
        sha256: Lower-case hex SHA-256 of its bytes.
        size: Its size in bytes.
    """

    sha256: str
    size: int

    def __post_init__(self) -> None:
        if not _SHA256.fullmatch(self.sha256):
            raise ValueError("PackFile.sha256 must be 64 lower-case hex digits")
        if self.size < 0:
            raise ValueError("PackFile.size must be non-negative")


@dataclass(frozen=True, slots=True)
class PackVersion:
    """One version of a skill as a pack carries it.

    Attributes:
        version: 1, 2, ... in lineage order.
        version_id: The version's id in the memory it was exported from.
        name: Human-readable name.
        key: (Z,) float32 latent skill code.
        arch_id: Allow-listed architecture id.
        arch_config: The architecture's JSON config.
        tags: Free tags.
        provenance: Where the version came from.
        created_at: Unix time it was stored.
        parent: ``version_id`` of the previous version (``None`` for version 1).
    """

    version: int
    version_id: str
    name: str
    key: npt.NDArray[np.float32]
    arch_id: str
    arch_config: Mapping[str, Any]
    tags: tuple[str, ...]
    provenance: Provenance
    created_at: float
    parent: str | None

    def __post_init__(self) -> None:
        if self.version < 1:
            raise ValueError("PackVersion.version must be >= 1")
        if self.key.ndim != 1 or self.key.dtype != np.float32 or not self.key.size:
            raise ValueError("PackVersion.key must be a non-empty 1-D float32 array")
        if not bool(np.isfinite(self.key).all()):
            raise ValueError("PackVersion.key must hold finite numbers only")


@dataclass(frozen=True, slots=True)
class PackSkill:
    """A skill and all its versions (oldest first).

    Attributes:
        skill_id: The skill's id in the memory it was exported from.
        versions: Every version, ``version`` 1..n in order.
    """

    skill_id: str
    versions: tuple[PackVersion, ...]

    def __post_init__(self) -> None:
        if not _SAFE_ID.fullmatch(self.skill_id):
            raise ValueError(f"PackSkill.skill_id {self.skill_id!r} is not a safe id")
        if [v.version for v in self.versions] != list(range(1, len(self.versions) + 1)):
            raise ValueError("PackSkill.versions must be numbered 1..n in order")


@dataclass(frozen=True, slots=True)
class PackManifest:
    """The parsed ``manifest.json``.

    Attributes:
        format_version: Always :data:`FORMAT_VERSION` for packs this code reads.
        created_at: Unix time of the export.
        skillbank_version: Version of skillbank that wrote the pack.
        command: The command line that wrote it, if given.
        skills: The skills, each with all its versions.
        files: Relative path -> checksum and size, for every file but the manifest.
        latest_only: Only the latest version of each skill was exported (each one a root).
    """

    format_version: int
    created_at: float
    skillbank_version: str
    command: str | None
    skills: tuple[PackSkill, ...]
    files: Mapping[str, PackFile]
    latest_only: bool = False

    def __post_init__(self) -> None:
        if self.format_version != FORMAT_VERSION:
            raise ValueError(f"PackManifest.format_version must be {FORMAT_VERSION}")
        ids = [s.skill_id for s in self.skills]
        if len(set(ids)) != len(ids):
            raise ValueError("PackManifest.skills has a repeated skill id")
        if self.latest_only and any(len(s.versions) != 1 for s in self.skills):
            raise ValueError("PackManifest.latest_only packs hold exactly one version per skill")

    @property
    def num_versions(self) -> int:
        """Number of skill versions in the pack."""
        return sum(len(s.versions) for s in self.skills)


# --- writing --------------------------------------------------------------------------------------


def _provenance_json(provenance: Provenance) -> dict[str, Any]:
    return {
        "source": provenance.source,
        "task": provenance.task,
        "dataset_hash": provenance.dataset_hash,
        "extra": dict(provenance.extra),
    }


def manifest_to_json(manifest: PackManifest) -> bytes:
    """Serialize ``manifest`` (UTF-8 JSON, sorted keys, keys as exact float lists)."""
    payload: dict[str, Any] = {
        "format_version": manifest.format_version,
        "created_at": manifest.created_at,
        "skillbank_version": manifest.skillbank_version,
        "command": manifest.command,
        "skills": [
            {
                "id": skill.skill_id,
                "versions": [
                    {
                        "version": v.version,
                        "version_id": v.version_id,
                        "name": v.name,
                        # float32 -> float64 is exact and repr round-trips, so lists are lossless
                        "key": [float(x) for x in v.key],
                        "arch_id": v.arch_id,
                        "arch_config": dict(v.arch_config),
                        "tags": list(v.tags),
                        "provenance": _provenance_json(v.provenance),
                        "created_at": v.created_at,
                        "parent": v.parent,
                    }
                    for v in skill.versions
                ],
            }
            for skill in manifest.skills
        ],
        "files": {
            path: {"sha256": f.sha256, "size": f.size} for path, f in sorted(manifest.files.items())
        },
    }
    if manifest.latest_only:  # only when true: full packs keep their exact bytes
        payload["latest_only"] = True
    return (json.dumps(payload, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()


# --- parsing --------------------------------------------------------------------------------------


class _InvalidError(Exception):
    """A field-level problem; turned into a PackError naming the manifest."""


def reject_json_constant(value: str) -> Any:
    """``parse_constant`` for :func:`json.loads` that refuses NaN and Infinity (ValueError)."""
    raise ValueError(f"non-standard JSON constant {value}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def unique_json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for :func:`json.loads` that refuses duplicate keys (ValueError)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def strict_json_loads(data: bytes) -> Any:
    """Parse UTF-8 JSON strictly: no duplicate keys, no NaN / Infinity, no out-of-range floats.

    Raises:
        ValueError: the bytes are not such JSON (the message says why).
    """
    try:
        return json.loads(
            data.decode("utf-8"),
            object_pairs_hook=unique_json_object,
            parse_constant=reject_json_constant,
            parse_float=_finite_float,
        )
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _fields(
    raw: Any, where: str, required: AbstractSet[str], optional: AbstractSet[str] = frozenset()
) -> Any:
    if not isinstance(raw, dict):
        raise _InvalidError(f"{where} must be an object")
    missing = required - set(raw)
    unknown = set(raw) - required - optional
    if missing:
        raise _InvalidError(f"{where} lacks {sorted(missing)}")
    if unknown:
        raise _InvalidError(f"{where} has unknown fields {sorted(unknown)}")
    return raw


def _text(value: Any, where: str, *, empty: bool = True) -> str:
    if not isinstance(value, str) or len(value) > _MAX_TEXT or (not empty and not value):
        raise _InvalidError(f"{where} must be a {'' if empty else 'non-empty '}string")
    return value


def _int(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _InvalidError(f"{where} must be an integer")
    return value


def _time(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _InvalidError(f"{where} must be a finite number (Unix time)")
    return float(value)


def _key(value: Any, where: str) -> npt.NDArray[np.float32]:
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _InvalidError(f"{where} is not valid base64") from None
        if not raw or len(raw) % 4:
            raise _InvalidError(f"{where} must decode to a whole number of float32 values")
        key = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    elif isinstance(value, list) and value:
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in value):
            raise _InvalidError(f"{where} must be a list of numbers")
        with np.errstate(over="ignore"):
            key = np.asarray(value, dtype=np.float64).astype(np.float32)
    else:
        raise _InvalidError(f"{where} must be a non-empty list of floats or base64 float32")
    if key.size > _MAX_KEY_DIM:
        raise _InvalidError(f"{where} has dimension {key.size} (limit {_MAX_KEY_DIM})")
    if not bool(np.isfinite(key).all()):
        raise _InvalidError(f"{where} holds non-finite values")
    return key


def _provenance(raw: Any, where: str) -> Provenance:
    raw = _fields(raw, where, {"source", "task", "dataset_hash", "extra"})
    extra = raw["extra"]
    if not isinstance(extra, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and len(v) <= _MAX_TEXT for k, v in extra.items()
    ):
        raise _InvalidError(f"{where}.extra must map strings to strings")
    return Provenance(
        source=_text(raw["source"], f"{where}.source", empty=False),
        task=_text(raw["task"], f"{where}.task"),
        dataset_hash=_text(raw["dataset_hash"], f"{where}.dataset_hash"),
        extra=dict(extra),
    )


def _version(raw: Any, where: str) -> PackVersion:
    raw = _fields(
        raw,
        where,
        {"version", "version_id", "name", "key", "arch_id", "arch_config", "tags"}
        | {"provenance", "created_at", "parent"},
    )
    tags = raw["tags"]
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise _InvalidError(f"{where}.tags must be a list of non-empty strings")
    if not isinstance(raw["arch_config"], dict):
        raise _InvalidError(f"{where}.arch_config must be an object")
    parent = raw["parent"]
    if parent is not None:
        parent = _text(parent, f"{where}.parent", empty=False)
    return PackVersion(
        version=_int(raw["version"], f"{where}.version"),
        version_id=_text(raw["version_id"], f"{where}.version_id", empty=False),
        name=_text(raw["name"], f"{where}.name", empty=False),
        key=_key(raw["key"], f"{where}.key"),
        arch_id=_text(raw["arch_id"], f"{where}.arch_id", empty=False),
        arch_config=raw["arch_config"],
        tags=tuple(tags),
        provenance=_provenance(raw["provenance"], f"{where}.provenance"),
        created_at=_time(raw["created_at"], f"{where}.created_at"),
        parent=parent,
    )


def _skill(raw: Any, where: str) -> PackSkill:
    raw = _fields(raw, where, {"id", "versions"})
    skill_id = raw["id"]
    if not isinstance(skill_id, str) or not _SAFE_ID.fullmatch(skill_id):
        raise _InvalidError(f"{where}.id {skill_id!r} is not a safe id ([A-Za-z0-9._-], max 128)")
    where = f"skill {skill_id!r}"
    if not isinstance(raw["versions"], list) or not raw["versions"]:
        raise _InvalidError(f"{where} must list at least one version")
    versions = tuple(_version(v, f"{where} versions[{i}]") for i, v in enumerate(raw["versions"]))
    previous: PackVersion | None = None
    for i, version in enumerate(versions, start=1):
        if version.version != i:
            raise _InvalidError(
                f"{where} versions must be numbered 1..n in order (got {version.version})"
            )
        if previous is not None and version.parent != previous.version_id:
            raise _InvalidError(f"{where} version {i}: parent is not version {i - 1}'s version_id")
        previous = version
    if len({v.arch_id for v in versions}) != 1:
        raise _InvalidError(f"{where} changes arch_id between versions")
    if len({v.version_id for v in versions}) != len(versions):
        raise _InvalidError(f"{where} repeats a version_id")
    return PackSkill(skill_id=skill_id, versions=versions)


def _files(raw: Any) -> dict[str, PackFile]:
    if not isinstance(raw, dict):
        raise _InvalidError("files must be an object")
    files: dict[str, PackFile] = {}
    for path, entry in raw.items():
        entry = _fields(entry, f"files[{path!r}]", {"sha256", "size"})
        sha, size = entry["sha256"], _int(entry["size"], f"files[{path!r}].size")
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha) or size < 0:
            raise _InvalidError(f"files[{path!r}] needs a 64-hex-digit sha256 and a size >= 0")
        files[path] = PackFile(sha256=sha, size=size)
    return files


def parse_manifest(data: bytes, *, name: str = MANIFEST_NAME) -> PackManifest:
    """Parse and validate manifest bytes.

    Raises:
        PackError: malformed JSON, unknown format version, or any invalid field (the message names
            ``name`` and the field).
    """
    try:
        raw = strict_json_loads(data)
    except ValueError as exc:
        raise PackError(f"{name}: not valid JSON ({exc})") from None
    try:
        if not isinstance(raw, dict):
            raise _InvalidError("must be a JSON object")
        version = raw.get("format_version")
        if type(version) is not int or version != FORMAT_VERSION:
            raise PackError(
                f"{name}: unknown format_version {version!r} (this skillbank reads "
                f"{FORMAT_VERSION})",
                hint="upgrade skillbank, or re-export the pack with this version",
            )
        raw = _fields(
            raw,
            "manifest",
            {"format_version", "created_at", "skillbank_version", "skills", "files"},
            frozenset({"command", "latest_only"}),
        )
        latest_only = raw.get("latest_only", False)
        if not isinstance(latest_only, bool):
            raise _InvalidError("latest_only must be true or false")
        command = raw.get("command")
        if command is not None:
            command = _text(command, "command")
        if not isinstance(raw["skills"], list):
            raise _InvalidError("skills must be a list")
        skills = tuple(_skill(s, f"skills[{i}]") for i, s in enumerate(raw["skills"]))
        if len({s.skill_id for s in skills}) != len(skills):
            raise _InvalidError("skills repeat an id")
        dims = {int(v.key.size) for s in skills for v in s.versions}
        if len(dims) > 1:
            raise _InvalidError(f"keys have different dimensions {sorted(dims)}")
        return PackManifest(
            format_version=FORMAT_VERSION,
            created_at=_time(raw["created_at"], "created_at"),
            skillbank_version=_text(raw["skillbank_version"], "skillbank_version"),
            command=command,
            skills=skills,
            files=_files(raw["files"]),
            latest_only=latest_only,
        )
    except (_InvalidError, ValueError) as exc:
        raise PackError(f"{name}: {exc}") from None
