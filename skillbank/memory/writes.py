"""The write path of the skill memory: check and encode specs, then insert them in one
transaction (a fast two-statement path for batches of new skills)."""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from skillbank.errors import SkillMemoryError, SkillNotFoundError
from skillbank.memory.blobs import BlobStore
from skillbank.memory.schema import dumps_json, provenance_to_json
from skillbank.memory.specs import SkillSpec
from skillbank.memory.weights import encode_weights
from skillbank.types import SkillRecord, UsageStats

__all__ = [
    "Prepared",
    "bump",
    "check_key_dim",
    "insert_prepared",
    "latest_version",
    "meta_int",
    "new_id",
    "prepare",
]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A checked spec with its encoded fields, ready to insert.

    Attributes:
        spec: The spec.
        sha: SHA-256 of its weights blob.
        config_json: Canonical JSON of the architecture config.
        provenance_json: Canonical JSON of the provenance.
        tags_json: JSON list of tags.
        key_bytes: The (Z,) key as little-endian float32 bytes.
    """

    spec: SkillSpec
    sha: str
    config_json: str
    provenance_json: str
    tags_json: str
    key_bytes: bytes


def new_id() -> str:
    """A fresh random skill or version id (32 hex digits)."""
    return secrets.token_hex(16)


_INSERT_VERSION = (
    "INSERT INTO versions (version_id, skill_id, version, parent_version_id, name, key, arch_id,"
    " arch_config, weights_sha256, provenance, task, tags, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _version_params(
    p: Prepared,
    skill_id: str,
    version_id: str,
    version: int,
    parent: str | None,
    created_at: float,
) -> tuple[Any, ...]:
    spec = p.spec
    return (
        version_id,
        skill_id,
        version,
        parent,
        spec.name,
        p.key_bytes,
        spec.arch_id,
        p.config_json,
        p.sha,
        p.provenance_json,
        spec.provenance.task,
        p.tags_json,
        created_at,
    )


def _record(
    p: Prepared,
    skill_id: str,
    version_id: str,
    version: int,
    parent: str | None,
    created_at: float,
) -> SkillRecord:
    spec = p.spec
    return SkillRecord(
        skill_id=skill_id,
        version=version,
        version_id=version_id,
        name=spec.name,
        key=spec.key.copy(),
        arch_id=spec.arch_id,
        arch_config=json.loads(p.config_json),
        weights_sha256=p.sha,
        provenance=spec.provenance,
        created_at=created_at,
        parent_version_id=parent,
        tags=spec.tags,
        usage=UsageStats(),
    )


def meta_int(conn: sqlite3.Connection, key: str) -> int:
    """An integer from the meta table (-1 when NULL or missing)."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    if row is None or row[0] is None:
        return -1
    return int(row[0])


def bump(conn: sqlite3.Connection, removed_rows: Sequence[int]) -> int:
    """Advance the generation and log the rows that stopped being latest."""
    generation: int = conn.execute(
        "UPDATE meta SET value = value + 1 WHERE key = 'generation' RETURNING value"
    ).fetchone()[0]
    if removed_rows:
        conn.executemany(
            "INSERT INTO removed_rows (generation, row) VALUES (?, ?)",
            [(generation, r) for r in removed_rows],
        )
    return generation


def prepare(specs: Sequence[SkillSpec]) -> tuple[list[Prepared], dict[str, bytes]]:
    """Check and encode everything before touching the disk."""
    blobs: dict[str, bytes] = {}
    prepared: list[Prepared] = []
    # Batches often share one weights object / config / provenance: encode each once. The
    # specs keep every object alive during the call, so id() is a sound memo key.
    encoded: dict[tuple[int, str, int], str] = {}
    configs: dict[int, str] = {}
    provenances: dict[int, str] = {}
    for i, spec in enumerate(specs):
        if not isinstance(spec, SkillSpec):
            raise ValueError(f"specs[{i}] must be a SkillSpec")
        config_json = configs.get(id(spec.arch_config))
        if config_json is None:
            config_json = dumps_json(dict(spec.arch_config), "arch_config")
            configs[id(spec.arch_config)] = config_json
        memo = (id(spec.weights), spec.arch_id, id(spec.arch_config))
        sha = encoded.get(memo)
        if sha is None:
            where = f"skill {spec.skill_id or spec.version_of or spec.name!r}"
            data, sha = encode_weights(spec.weights, spec.arch_id, spec.arch_config, where)
            blobs.setdefault(sha, data)
            encoded[memo] = sha
        prov_json = provenances.get(id(spec.provenance))
        if prov_json is None:
            prov_json = provenance_to_json(spec.provenance)
            provenances[id(spec.provenance)] = prov_json
        prepared.append(
            Prepared(
                spec,
                sha,
                config_json,
                prov_json,
                dumps_json(list(spec.tags), "tags") if spec.tags else "[]",
                spec.key.astype("<f4").tobytes(),
            )
        )
    return prepared, blobs


def insert_prepared(
    conn: sqlite3.Connection,
    prepared: Sequence[Prepared],
    blobs: Mapping[str, bytes],
    store: BlobStore,
    where: str,
) -> list[SkillRecord]:
    """Insert prepared versions inside the caller's write transaction (``BEGIN IMMEDIATE``).

    Args:
        conn: Connection inside a write transaction.
        prepared: From :func:`prepare`.
        blobs: sha -> bytes of every blob the versions reference (already written once).
        store: The blob store (a blob swept by a concurrent gc is written again here).
        where: The memory, for error messages.
    """
    check_key_dim(conn, [p.spec.key.shape[0] for p in prepared])
    for sha, data in blobs.items():  # a concurrent gc may have swept a blob written before
        if not store.exists(sha):  # we held the lock; gc needs this lock to sweep
            store.write(data, sha)
    now = time.time()
    if all(p.spec.version_of is None for p in prepared):
        return _insert_new(conn, prepared, now, where)
    records: list[SkillRecord] = []
    latest: dict[str, tuple[int, int, str]] = {}  # skill_id -> (row, version, version_id)
    removed: list[int] = []
    for p in prepared:
        spec = p.spec
        if spec.version_of is None:
            skill_id = spec.skill_id or new_id()
            version, parent, old_row = 1, None, None
        else:
            skill_id = spec.version_of
            prev = latest.get(skill_id) or latest_version(conn, skill_id, where)
            version, parent, old_row = prev[1] + 1, prev[2], prev[0]
        version_id = spec.version_id or new_id()
        created_at = now if spec.created_at is None else float(spec.created_at)
        try:
            row = conn.execute(
                _INSERT_VERSION,
                _version_params(p, skill_id, version_id, version, parent, created_at),
            ).lastrowid
            assert row is not None
            if old_row is None:
                conn.execute(
                    "INSERT INTO skills (skill_id, latest_row) VALUES (?, ?)", (skill_id, row)
                )
            else:
                conn.execute("UPDATE skills SET latest_row = ? WHERE skill_id = ?", (row, skill_id))
                removed.append(old_row)
        except sqlite3.IntegrityError:
            raise _collision(
                conn, [skill_id] if old_row is None else [], [version_id], where
            ) from None
        latest[skill_id] = (row, version, version_id)
        records.append(_record(p, skill_id, version_id, version, parent, created_at))
    bump(conn, removed)
    return records


def _insert_new(
    conn: sqlite3.Connection, prepared: Sequence[Prepared], now: float, where: str
) -> list[SkillRecord]:
    """Fast path of :meth:`_insert` for a batch of new skills only: two statements."""
    skill_ids = [p.spec.skill_id or new_id() for p in prepared]
    version_ids = [p.spec.version_id or new_id() for p in prepared]
    times = [now if p.spec.created_at is None else float(p.spec.created_at) for p in prepared]
    before = conn.execute("SELECT COALESCE(MAX(row), 0) FROM versions").fetchone()[0]
    try:
        conn.executemany(
            _INSERT_VERSION,
            (
                _version_params(p, sid, vid, 1, None, t)
                for p, sid, vid, t in zip(prepared, skill_ids, version_ids, times, strict=True)
            ),
        )
        conn.execute(
            "INSERT INTO skills (skill_id, latest_row) SELECT skill_id, row FROM versions "
            "WHERE row > ? ORDER BY row",
            (before,),
        )
    except sqlite3.IntegrityError:
        raise _collision(conn, skill_ids, version_ids, where) from None
    bump(conn, [])
    return [
        _record(p, sid, vid, 1, None, t)
        for p, sid, vid, t in zip(prepared, skill_ids, version_ids, times, strict=True)
    ]


def _collision(
    conn: sqlite3.Connection, skill_ids: Sequence[str], version_ids: Sequence[str], where: str
) -> SkillMemoryError:
    """The error for an id collision (called inside the failed transaction)."""
    taken: str | None = None
    for kind, ids, table, column in (
        ("skill id", skill_ids, "skills", "skill_id"),
        ("version id", version_ids, "versions", "version_id"),
    ):
        seen: set[str] = set()
        for one in ids:
            exists = conn.execute(f"SELECT 1 FROM {table} WHERE {column} = ?", (one,)).fetchone()
            if one in seen or exists:
                taken = f"{kind} {one!r}"
                break
            seen.add(one)
        if taken:
            break
    return SkillMemoryError(
        f"{where}: {taken or 'an id'} is already taken; nothing was written",
        hint="ids never collide: store it under a fresh id (skill_id=None)",
    )


def check_key_dim(conn: sqlite3.Connection, dims: Sequence[int]) -> int:
    """Fix the memory's key dimension on first write; raise ``ValueError`` on a mismatch."""
    key_dim = meta_int(conn, "key_dim")
    if key_dim < 0:
        key_dim = dims[0]
        conn.execute("UPDATE meta SET value = ? WHERE key = 'key_dim'", (key_dim,))
    for dim in dims:
        if dim != key_dim:
            raise ValueError(
                f"key has dimension {dim}; this memory's keys have dimension {key_dim}"
            )
    return key_dim


def latest_version(conn: sqlite3.Connection, skill_id: str, where: str) -> tuple[int, int, str]:
    """(row, version, version_id) of a skill's latest version; SkillNotFoundError if none."""
    found = conn.execute(
        "SELECT v.row, v.version, v.version_id FROM skills s JOIN versions v"
        " ON v.row = s.latest_row WHERE s.skill_id = ?",
        (skill_id,),
    ).fetchone()
    if found is None:
        raise SkillNotFoundError(f"{where}: no skill with id {skill_id!r}")
    return int(found[0]), int(found[1]), str(found[2])
