"""Skill packs: share skills between memories as a directory or a ``.tar.gz``.

A pack holds ``manifest.json`` (see :mod:`skillbank.memory.pack_manifest`), per version
``skills/<id>/<version>/config.json`` and ``weights.safetensors``, and a ``README.md`` card.
Exporting selected ids takes every version of each (the whole lineage); ``latest_only=True``
takes only each skill's latest version, written as a root (version 1, no parent, its original
``version_id`` kept, ``provenance.extra["exported_version"]`` naming the version it was), which
is what a memory needs to act: the agent loads the latest version of every skill and component.

Import verifies everything before it writes anything, and writes every skill in one transaction:
after a refusal the memory is exactly as it was. It never runs code (no pickle, no ``torch.load``;
architectures come only from the registry). The checks, in order: member paths and types (no
absolute paths, ``..``, links or device files), no pickle-based file, the manifest's JSON and format
version, every file listed and none unlisted, sizes and SHA-256, each ``config.json`` equal to the
manifest, each safetensors header (size limits, well-formed, offsets tiling the buffer), tensor
names / shapes / dtypes equal to the registry's for the config, finite weights, and keys of the
memory's dimension.

Id collisions never overwrite anything. For each skill of the pack, compared by content (per
version: name, key bits, architecture and config, weights, tags — not provenance):

* id absent from the memory: imported under the same id, with its original creation times;
* id present with the same versions: skipped as already present;
* id present and its versions are a prefix of the pack's: the missing versions are appended;
* id present with other content: imported under a fresh id; the pack's id goes into each
  version's ``provenance.extra["original_skill_id"]``.

Every imported version keeps its provenance and gains ``extra["imported_from"]`` (the pack's name),
``extra["imported_pack_sha256"]`` (SHA-256 of its manifest) and ``extra["original_version_id"]``.

Example:
    >>> report = export_pack(memory, Path("door-skills.tar.gz"))        # doctest: +SKIP
    >>> import_pack(other_memory, Path("door-skills.tar.gz")).num_added  # doctest: +SKIP
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skillbank import __version__
from skillbank.errors import PackError, SkillNotFoundError
from skillbank.memory.pack_archive import PackLimits, pack_name, write_pack_files
from skillbank.memory.pack_card import render_card
from skillbank.memory.pack_manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    PackFile,
    PackManifest,
    PackSkill,
    PackVersion,
    config_path,
    is_safe_id,
    manifest_to_json,
    parse_manifest,
    weights_path,
)
from skillbank.memory.pack_verify import (
    README_NAME,
    VerifiedPack,
    Weights,
    canonical_json,
    read_pack,
    sha256_hex,
)
from skillbank.memory.specs import SkillSpec
from skillbank.types import Provenance, SkillRecord

if TYPE_CHECKING:
    from skillbank.memory.store import SkillMemory

__all__ = [
    "ImportReport",
    "ImportedSkill",
    "PackReport",
    "export_pack",
    "import_pack",
    "import_verified_pack",
]


@dataclass(frozen=True, slots=True)
class PackReport:
    """What :func:`export_pack` wrote.

    Attributes:
        path: The pack (directory or ``.tar.gz``).
        skill_ids: Exported skill ids.
        num_versions: Exported versions (all versions of every skill, or one each when
            ``latest_only``).
        num_files: Files in the pack, manifest included.
        num_bytes: Their total size.
        manifest_sha256: SHA-256 of ``manifest.json`` (the pack's identity).
    """

    path: Path
    skill_ids: tuple[str, ...]
    num_versions: int
    num_files: int
    num_bytes: int
    manifest_sha256: str
    latest_only: bool = False

    def __post_init__(self) -> None:
        if self.num_versions < len(self.skill_ids):
            raise ValueError("PackReport.num_versions must count every skill's versions")
        if self.latest_only and self.num_versions != len(self.skill_ids):
            raise ValueError("PackReport.num_versions must be one per skill when latest_only")


@dataclass(frozen=True, slots=True)
class ImportedSkill:
    """The fate of one skill of a pack.

    Attributes:
        pack_skill_id: Its id in the pack.
        skill_id: Its id in the memory (differs when renamed to avoid a collision).
        status: ``"added"``, ``"renamed"`` (added under a fresh id), ``"extended"`` (new versions
            appended to the same skill) or ``"already-present"`` (nothing written).
        num_versions_written: Versions written to the memory.
    """

    pack_skill_id: str
    skill_id: str
    status: str
    num_versions_written: int

    def __post_init__(self) -> None:
        if self.status not in ("added", "renamed", "extended", "already-present"):
            raise ValueError(f"ImportedSkill.status {self.status!r} is not a known status")
        if self.num_versions_written < 0:
            raise ValueError("ImportedSkill.num_versions_written must be non-negative")


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What :func:`import_pack` did.

    Attributes:
        pack: The pack's name.
        manifest_sha256: SHA-256 of its manifest.
        skills: One entry per skill of the pack, in pack order.
    """

    pack: str
    manifest_sha256: str
    skills: tuple[ImportedSkill, ...]

    @property
    def num_added(self) -> int:
        """Skills written as new skills (under their own or a fresh id)."""
        return sum(s.status in ("added", "renamed") for s in self.skills)

    @property
    def num_versions_written(self) -> int:
        """Versions written in total."""
        return sum(s.num_versions_written for s in self.skills)


# --- export ---------------------------------------------------------------------------------------


def _config_json(arch_id: str, arch_config: Mapping[str, Any]) -> bytes:
    payload = {"arch_id": arch_id, "arch_config": dict(arch_config)}
    return (json.dumps(payload, indent=1, sort_keys=True, allow_nan=False) + "\n").encode()


def _pack_version(record: SkillRecord, *, as_root: bool = False) -> PackVersion:
    """``record`` as a pack version; ``as_root``: as version 1 without a parent (latest-only)."""
    provenance = record.provenance
    if as_root and record.version > 1:
        extra = {**provenance.extra, "exported_version": str(record.version)}
        provenance = replace(provenance, extra=extra)
    return PackVersion(
        version=1 if as_root else record.version,
        version_id=record.version_id,
        name=record.name,
        key=record.key,
        arch_id=record.arch_id,
        arch_config=record.arch_config,
        tags=tuple(record.tags),
        provenance=provenance,
        created_at=record.created_at,
        parent=None if as_root else record.parent_version_id,
    )


def export_pack(
    memory: SkillMemory,
    out: Path,
    skill_ids: Sequence[str] | None = None,
    *,
    command: str | None = None,
    created_at: float | None = None,
    latest_only: bool = False,
) -> PackReport:
    """Write skills (every version of each, or the latest only) from ``memory`` as a pack.

    Args:
        memory: The memory to read.
        out: Destination; ``*.tar.gz`` / ``*.tgz`` writes an archive, anything else a directory.
            Must not exist yet.
        skill_ids: Skills to export, in this order; ``None`` exports every skill in the memory's
            own order (that of ``memory.list()`` and ``memory.keys()``), so the memory a pack is
            imported into orders its skills the same way (an agent's controller and skill
            sampling see the skills in that order).
        command: The command line to record in the manifest.
        created_at: Export time to record (defaults to now).
        latest_only: Export only each skill's latest version, as a root (see the module
            docstring); the manifest records it. A memory imported from it still acts the same.

    Returns:
        What was written.

    Raises:
        SkillNotFoundError: an id is not in the memory.
        PackError: ``out`` exists, or a skill id is not safe as a path.
    """
    if skill_ids is None:
        ids = [record.skill_id for record in memory.list()]
    else:
        ids = list(dict.fromkeys(skill_ids))
    created_at = time.time() if created_at is None else created_at

    files: dict[str, bytes] = {}
    skills: list[PackSkill] = []
    for skill_id in ids:
        records = memory.versions(skill_id)
        if not records:
            raise SkillNotFoundError(f"no skill with id {skill_id!r}")
        if latest_only:
            records = records[-1:]
        versions = tuple(_pack_version(record, as_root=latest_only) for record in records)
        try:
            skill = PackSkill(skill_id=skill_id, versions=versions)
        except ValueError as exc:
            raise PackError(f"skill {skill_id!r} cannot be exported: {exc}") from None
        for record, version in zip(records, versions, strict=True):
            files[config_path(skill_id, version.version)] = _config_json(
                record.arch_id, record.arch_config
            )
            # the stored blob as is (hash-checked): the pack file keeps the memory's SHA-256
            files[weights_path(skill_id, version.version)] = memory.read_blob(record.weights_sha256)
        skills.append(skill)

    draft = PackManifest(
        FORMAT_VERSION,
        created_at,
        __version__,
        command,
        tuple(skills),
        {},
        latest_only=latest_only,
    )
    files[README_NAME] = render_card(draft, pack_name(out))
    manifest = replace(
        draft,
        files={
            path: PackFile(sha256=sha256_hex(data), size=len(data)) for path, data in files.items()
        },
    )
    manifest_bytes = manifest_to_json(manifest)
    files[MANIFEST_NAME] = manifest_bytes
    try:  # never write a pack that import would refuse (e.g. a field past the manifest's limits)
        parse_manifest(manifest_bytes)
    except PackError as exc:
        raise PackError(
            f"cannot export: {exc.message}", hint="fix or leave out that skill"
        ) from None
    write_pack_files(out, files, mtime=int(created_at))
    return PackReport(
        path=out,
        skill_ids=tuple(ids),
        num_versions=manifest.num_versions,
        num_files=len(files),
        num_bytes=sum(len(data) for data in files.values()),
        manifest_sha256=sha256_hex(manifest_bytes),
        latest_only=latest_only,
    )


# --- import ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SkillPlan:
    """What to write for one skill of the pack."""

    pack_skill_id: str
    target_id: str  # the skill's id in the memory
    status: str
    versions: tuple[PackVersion, ...]  # the versions to write, oldest first
    provenances: tuple[Provenance, ...]


def _same_weights(a: Weights, b: Weights) -> bool:
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes()
        for k in a
    )


def _same_version(
    memory: SkillMemory,
    record: SkillRecord,
    version: PackVersion,
    pack: VerifiedPack,
    skill_id: str,
) -> bool:
    path = weights_path(skill_id, version.version)
    same_blob = record.weights_sha256 == pack.manifest.files[path].sha256
    return (
        record.name == version.name
        and record.key.tobytes() == version.key.tobytes()
        and record.arch_id == version.arch_id
        and canonical_json(dict(record.arch_config)) == canonical_json(dict(version.arch_config))
        and tuple(record.tags) == version.tags
        and (
            same_blob
            or _same_weights(memory.load_weights(record), pack.weights[(skill_id, version.version)])
        )
    )


def _existing_versions(memory: SkillMemory, skill_id: str) -> list[SkillRecord]:
    try:
        return list(memory.versions(skill_id))
    except SkillNotFoundError:
        return []


def _imported_provenance(
    pack: VerifiedPack, version: PackVersion, original_skill_id: str | None
) -> Provenance:
    extra = dict(version.provenance.extra)
    extra["imported_from"] = pack.name
    extra["imported_pack_sha256"] = pack.manifest_sha256
    extra["original_version_id"] = version.version_id
    if original_skill_id is not None:
        extra["original_skill_id"] = original_skill_id
    return replace(version.provenance, extra=extra)


def _fresh_id(memory: SkillMemory, skill_id: str) -> str:
    """A new id derived from ``skill_id`` that the memory does not hold."""
    while True:
        candidate = f"{skill_id[:100]}-{secrets.token_hex(4)}"
        if candidate not in memory:
            return candidate


def _plan(memory: SkillMemory, pack: VerifiedPack) -> list[_SkillPlan]:
    """Decide, per skill, what to write (reads the memory, writes nothing)."""
    memory_dim = memory.key_dim
    for skill in pack.manifest.skills:
        pack_dim = int(skill.versions[0].key.size)
        if memory_dim is not None and pack_dim != memory_dim:
            raise PackError(
                f"{MANIFEST_NAME}: skill {skill.skill_id!r} has a key of dimension {pack_dim}; "
                f"this memory's keys have dimension {memory_dim}",
                hint="import into a memory whose skills share the pack's key dimension",
            )
    plans: list[_SkillPlan] = []
    for skill in pack.manifest.skills:
        existing = _existing_versions(memory, skill.skill_id)
        num_same = 0
        for record, version in zip(existing, skill.versions, strict=False):
            if not _same_version(memory, record, version, pack, skill.skill_id):
                break
            num_same += 1
        if not existing:
            status, target, todo, original = "added", skill.skill_id, skill.versions, None
        elif num_same == len(existing) == len(skill.versions):
            status, target, todo, original = "already-present", skill.skill_id, (), None
        elif num_same == len(existing):
            status, target, todo, original = (
                "extended",
                skill.skill_id,
                skill.versions[num_same:],
                None,
            )
        else:
            status, todo, original = "renamed", skill.versions, skill.skill_id
            target = _fresh_id(memory, skill.skill_id)
        plans.append(
            _SkillPlan(
                pack_skill_id=skill.skill_id,
                target_id=target,
                status=status,
                versions=tuple(todo),
                provenances=tuple(_imported_provenance(pack, v, original) for v in todo),
            )
        )
    return plans


def _free_version_id(memory: SkillMemory, version_id: str, taken: set[str]) -> str | None:
    """The pack's version id if the memory can take it unchanged, else ``None`` (a fresh one)."""
    if not is_safe_id(version_id) or version_id in taken:
        return None
    try:
        memory.get_version(version_id)
    except SkillNotFoundError:
        taken.add(version_id)
        return version_id
    return None


def _specs(memory: SkillMemory, pack: VerifiedPack, plans: Sequence[_SkillPlan]) -> list[SkillSpec]:
    """One spec per version to write, lineage order within each skill."""
    specs: list[SkillSpec] = []
    taken: set[str] = set()
    for plan in plans:
        for i, (version, provenance) in enumerate(
            zip(plan.versions, plan.provenances, strict=True)
        ):
            new_skill = i == 0 and plan.status in ("added", "renamed")
            try:
                spec = SkillSpec(
                    name=version.name,
                    key=version.key,
                    arch_id=version.arch_id,
                    arch_config=version.arch_config,
                    # the file's own bytes: the blob keeps the hash it had in the source memory
                    weights=pack.files[weights_path(plan.pack_skill_id, version.version)],
                    provenance=provenance,
                    tags=version.tags,
                    skill_id=plan.target_id if new_skill else None,
                    version_of=None if new_skill else plan.target_id,
                    created_at=version.created_at,
                    version_id=_free_version_id(memory, version.version_id, taken),
                )
            except ValueError as exc:  # the manifest checks should have caught it first
                where = f"skill {plan.pack_skill_id!r} version {version.version}"
                raise PackError(f"{MANIFEST_NAME}: {where}: {exc}") from None
            specs.append(spec)
    return specs


def import_pack(
    memory: SkillMemory, path: Path, *, limits: PackLimits | None = None
) -> ImportReport:
    """Verify the pack at ``path`` completely, then write its skills in one transaction.

    Args:
        memory: The memory to import into.
        path: A pack directory or ``.tar.gz``.
        limits: Size limits for the pack's files and safetensors headers.

    Returns:
        Per skill of the pack: its id in the memory and whether it was added, renamed, extended or
        already present (see the module docstring for the id rule).

    Raises:
        PackError: any check failed; nothing was written.

    Example:
        >>> report = import_pack(memory, Path("door-skills.tar.gz"))  # doctest: +SKIP
        >>> [(s.skill_id, s.status) for s in report.skills]           # doctest: +SKIP
        [('open-door', 'added')]
    """
    return import_verified_pack(memory, read_pack(path, limits=limits))


def import_verified_pack(memory: SkillMemory, pack: VerifiedPack) -> ImportReport:
    """Write a pack that :func:`~skillbank.memory.pack_verify.read_pack` accepted (one transaction).

    Lets a caller verify a pack before it opens (or creates) the memory it imports into.

    Raises:
        PackError: the pack's keys do not fit the memory; nothing was written.
    """
    plans = _plan(memory, pack)
    specs = _specs(memory, pack, plans)
    if specs:
        memory.add_many(specs)  # one transaction: every version is written, or none
    skills = tuple(
        ImportedSkill(
            pack_skill_id=plan.pack_skill_id,
            skill_id=plan.target_id,
            status=plan.status,
            num_versions_written=len(plan.versions),
        )
        for plan in plans
    )
    return ImportReport(pack=pack.name, manifest_sha256=pack.manifest_sha256, skills=skills)
