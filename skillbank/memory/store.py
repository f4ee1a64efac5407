"""The skill memory: SQLite (WAL) is the single source of truth; weights are content-addressed
safetensors blobs beside it.

On disk, a memory directory holds::

    skills.sqlite          every skill version, its key, metadata, usage (the truth)
    blobs/ab/abcd....safetensors   weights, named by the SHA-256 of their bytes
    index/                 caches (key matrix, approximate index): rebuildable, never the truth

CONTRACT (helpers implement this; keep the signatures):

    SkillMemory(path, *, create=True, busy_timeout_s=30.0, index: str = "exact")
        index: "exact" (default), "faiss" or "usearch" (extras); the approximate index is a
        cache checked against the database on open and rebuilt when stale.
    .add(name, key, arch_id, arch_config, weights, provenance, *, tags=(), skill_id=None,
         created_at=None, version_id=None) -> SkillRecord   # new skill, version 1
    .add_many(specs: Sequence[SkillSpec]) -> list[SkillRecord]  # one transaction, all or none
    .add_version(skill_id, *, weights=None, key=None, arch_config=None, name=None, tags=None,
         provenance=None, created_at=None, version_id=None) -> SkillRecord
                                                  # new version whose parent is the latest
    .get(skill_id, version=None) -> SkillRecord  # latest when version is None
    .get_version(version_id) -> SkillRecord
    .versions(skill_id) -> list[SkillRecord]     # oldest first
    .list(filters: RetrievalFilter | None = None) -> list[SkillRecord]  # latest versions
    .load_weights(record) -> dict[str, np.ndarray]  # verifies the blob hash
    .read_blob(sha256) -> bytes                  # the stored safetensors bytes, hash-checked
    .retrieve(query (Z,), k, *, filters=None, metric="dot"|"cosine", temperature=1.0,
         approximate=False, record=True) -> Retrieval
    .keys(filters=None) -> tuple[list[str], np.ndarray (N, Z)]   # latest versions
    .record_usage(skill_id, *, retrieved=0, executed=0, succeeded=0) -> None
    .record_usage_many(counts: Mapping[str, tuple[int, int, int]]) -> None  # one transaction
    .delete(skill_id) -> None                    # explicit; removes every version's rows
    .gc() -> GcReport                            # removes blobs no version references
    .verify() -> list[Problem]                   # read-only
    .key_dim -> int | None ; len(memory) -> number of skills ; skill_id in memory
    .close(); context manager

Writing with given ids (pack import): ``add(..., skill_id=X)`` / ``SkillSpec(skill_id=X)`` raise
:class:`SkillMemoryError` if X exists; ``SkillSpec(version_of=X)`` appends a version to skill X
(stored, or earlier in the same batch); ``created_at`` and ``version_id`` keep a pack's values
(a ``version_id`` collision raises too). ``add_many`` writes a whole batch, e.g. every version of
every skill of a pack, in one transaction: all of it or none. ``new_id()`` makes a fresh id.

Concurrency: every write is one ``BEGIN IMMEDIATE`` transaction (busy timeout ``busy_timeout_s``,
then :class:`MemoryLockedError`); blobs are written durably before the row that references them.
A connection is never used across ``fork``: the store notices the pid changed and reconnects. One
instance is meant for one thread at a time.

Retrieval usage (``record=True``) is counted in memory and written in batches (every 1024
retrievals, every 2 s, and on ``close``); a crash loses at most that batch of counters, never a
skill.

Example:
    >>> import numpy as np, tempfile
    >>> from skillbank.types import Provenance
    >>> cfg = {"in_dim": 2, "hidden_dims": [], "out_dim": 1}
    >>> w = {"net.0.weight": np.ones((1, 2), np.float32), "net.0.bias": np.zeros(1, np.float32)}
    >>> with SkillMemory(tempfile.mkdtemp()) as memory:
    ...     rec = memory.add("reach", np.ones(4), "mlp-v1", cfg, w, Provenance("example"))
    ...     memory.retrieve(np.ones(4, np.float32), k=1).skill_ids == (rec.skill_id,)
    True
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from skillbank.errors import (
    ArchitectureError,
    MemoryCorruptionError,
    MemoryLockedError,
    SkillMemoryError,
    SkillNotFoundError,
)
from skillbank.memory.blobs import BlobStore
from skillbank.memory.index import INDEX_KINDS, IndexCache
from skillbank.memory.keymatrix import KeyMatrix, load_cache, load_matrix, save_cache, update_matrix
from skillbank.memory.retrieval import Metric, attention_weights, score_keys, top_k
from skillbank.memory.schema import (
    DB_NAME,
    RECORD_COLUMNS,
    check_skill_id,
    connect,
    dumps_json,
    ensure_schema,
    provenance_to_json,
    record_from_row,
)
from skillbank.memory.specs import GcReport, SkillSpec, as_key
from skillbank.memory.verify import Problem, verify_memory
from skillbank.memory.weights import Weights, decode_weights, encode_weights
from skillbank.types import Provenance, Retrieval, RetrievalFilter, SkillRecord, UsageStats

__all__ = ["SkillMemory", "new_id"]

logger = logging.getLogger(__name__)

_FLUSH_COUNT = 1024
_FLUSH_SECONDS = 2.0
#: Save the key-matrix cache when at least this many keys are held (smaller memories load fast).
_CACHE_MIN_KEYS = 10_000
_LATEST_JOIN = "FROM skills s JOIN versions v ON v.row = s.latest_row"
_ALL_JOIN = "FROM versions v JOIN skills s ON s.skill_id = v.skill_id"


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A checked spec with its encoded fields, ready to insert."""

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
    p: _Prepared,
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
    p: _Prepared,
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


def _filter_sql(filters: RetrievalFilter | None) -> tuple[str, list[Any]]:
    """SQL ``WHERE`` clause (possibly empty) selecting versions ``v`` that match ``filters``."""
    if filters is None or filters.is_empty:
        return "", []
    clauses: list[str] = []
    params: list[Any] = []
    if filters.arch_id is not None:
        clauses.append("v.arch_id = ?")
        params.append(filters.arch_id)
    if filters.task is not None:
        clauses.append("v.task = ?")
        params.append(filters.task)
    for tag in filters.tags:
        clauses.append("EXISTS (SELECT 1 FROM json_each(v.tags) WHERE json_each.value = ?)")
        params.append(tag)
    return "WHERE " + " AND ".join(clauses), params


class SkillMemory:
    """A persistent skill memory in one directory (see the module docstring for the contract).

    Args:
        path: The memory directory.
        create: Create the directory and database when missing (else raise).
        busy_timeout_s: How long a write waits for another process's lock.
        index: ``"exact"`` (default), ``"faiss"`` or ``"usearch"`` (the ``index`` extra): the
            approximate index used by ``retrieve(..., approximate=True)``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        busy_timeout_s: float = 30.0,
        index: str = "exact",
    ) -> None:
        if index not in ("exact", *INDEX_KINDS):
            raise ValueError(f"index must be 'exact' or one of {INDEX_KINDS}, got {index!r}")
        if not busy_timeout_s > 0:
            raise ValueError("busy_timeout_s must be positive")
        self.path = Path(path)
        self.db_path = self.path / DB_NAME
        if not self.db_path.is_file():
            if not create:
                raise SkillMemoryError(
                    f"no skill memory at {self.path} ({DB_NAME} is missing)",
                    hint="check --memory, or create one by storing a skill",
                )
            self.path.mkdir(parents=True, exist_ok=True)
        self.busy_timeout_s = busy_timeout_s
        self.index_kind = index
        self._blobs = BlobStore(self.path / "blobs")
        self._connection: sqlite3.Connection | None = None
        self._pid = -1
        self._abandoned: list[sqlite3.Connection] = []  # inherited across fork: never touched
        self._matrix: KeyMatrix | None = None
        self._cache_generation = -1
        self._filter_masks: dict[tuple[RetrievalFilter, int], npt.NDArray[np.bool_]] = {}
        self._pending: dict[str, int] = {}
        self._pending_total = 0
        self._pending_since = 0.0
        self._index: IndexCache | None = None
        try:
            ensure_schema(self._conn())
            self._memory_id = self._meta_int("memory_id")
        except sqlite3.DatabaseError as exc:
            raise self._db_error(exc) from None
        if index != "exact":
            self._index = IndexCache(self.path / "index", index, self._memory_id)
            self._sync_index()

    # --- connection and transactions -----------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._pid == -2:
            raise SkillMemoryError(f"{self.path}: the memory is closed", hint="open it again")
        pid = os.getpid()
        if self._connection is None or self._pid != pid:
            if self._connection is not None:
                # Forked child: the parent's connection must not be used or closed here.
                self._abandoned.append(self._connection)
                self._pending.clear()
                self._pending_total = 0
            self._connection = connect(self.db_path, self.busy_timeout_s)
            self._pid = pid
        return self._connection

    def _db_error(self, exc: sqlite3.Error) -> SkillMemoryError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return MemoryLockedError(f"{self.db_path}: database stayed locked ({text})")
        return MemoryCorruptionError(f"{self.db_path}: {text}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``): committed whole or rolled back."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise self._db_error(exc) from None
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise self._db_error(exc) from None
            raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read snapshot (a deferred transaction) for reads spanning several statements."""
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def _meta_int(self, key: str, conn: sqlite3.Connection | None = None) -> int:
        conn = conn or self._conn()
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None or row[0] is None:
            return -1
        return int(row[0])

    @staticmethod
    def _bump(conn: sqlite3.Connection, removed_rows: Sequence[int]) -> int:
        generation: int = conn.execute(
            "UPDATE meta SET value = value + 1 WHERE key = 'generation' RETURNING value"
        ).fetchone()[0]
        if removed_rows:
            conn.executemany(
                "INSERT INTO removed_rows (generation, row) VALUES (?, ?)",
                [(generation, r) for r in removed_rows],
            )
        return generation

    # --- writing ---------------------------------------------------------------------------------

    def add(
        self,
        name: str,
        key: npt.ArrayLike,
        arch_id: str,
        arch_config: Mapping[str, Any],
        weights: Weights | bytes,
        provenance: Provenance,
        *,
        tags: Sequence[str] = (),
        skill_id: str | None = None,
        created_at: float | None = None,
        version_id: str | None = None,
    ) -> SkillRecord:
        """Store a new skill (version 1).

        Args:
            name: Human-readable name.
            key: (Z,) latent code; Z must equal the memory's key dimension.
            arch_id: Allow-listed architecture id.
            arch_config: JSON config of the architecture.
            weights: name -> array, or safetensors bytes; checked against the architecture.
            provenance: Where the skill came from.
            tags: Free tags.
            skill_id: Id to use (raises ``SkillMemoryError`` if taken); fresh when ``None``.
            created_at: Unix time to record; now when ``None``.
            version_id: Version id to use (raises if taken); fresh when ``None``.

        Raises:
            ArchitectureError: the weights do not fit the architecture.
            ValueError: bad key (wrong dimension, non-finite) or arguments.
            SkillMemoryError: the id is taken.
        """
        spec = SkillSpec(
            name=name,
            key=np.asarray(key),
            arch_id=arch_id,
            arch_config=arch_config,
            weights=weights,
            provenance=provenance,
            tags=tuple(tags),
            skill_id=skill_id,
            created_at=created_at,
            version_id=version_id,
        )
        return self.add_many([spec])[0]

    def add_many(self, specs: Sequence[SkillSpec]) -> list[SkillRecord]:
        """Store a batch of skills and versions in one transaction: all of them or none.

        Blobs are deduplicated by content hash and written (durably) before the transaction.

        Returns:
            The stored records, in the order of ``specs``.

        Raises:
            ArchitectureError: some weights do not fit their architecture (nothing is written).
            SkillMemoryError: a given id is taken (nothing is written).
            SkillNotFoundError: a ``version_of`` names no skill (nothing is written).
        """
        if not specs:
            return []
        prepared, blobs = self._prepare(specs)
        for sha, data in blobs.items():
            self._blobs.write(data, sha)
        with self._write() as conn:
            return self._insert(conn, prepared, blobs)

    def _prepare(self, specs: Sequence[SkillSpec]) -> tuple[list[_Prepared], dict[str, bytes]]:
        """Check and encode everything before touching the disk."""
        blobs: dict[str, bytes] = {}
        prepared: list[_Prepared] = []
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
                _Prepared(
                    spec,
                    sha,
                    config_json,
                    prov_json,
                    dumps_json(list(spec.tags), "tags") if spec.tags else "[]",
                    spec.key.astype("<f4").tobytes(),
                )
            )
        return prepared, blobs

    def _insert(
        self, conn: sqlite3.Connection, prepared: Sequence[_Prepared], blobs: Mapping[str, bytes]
    ) -> list[SkillRecord]:
        """Insert prepared versions inside the caller's write transaction."""
        self._check_key_dim(conn, [p.spec.key.shape[0] for p in prepared])
        for sha, data in blobs.items():  # a concurrent gc may have swept a blob written before
            if not self._blobs.exists(sha):  # we held the lock; gc needs this lock to sweep
                self._blobs.write(data, sha)
        now = time.time()
        if all(p.spec.version_of is None for p in prepared):
            return self._insert_new(conn, prepared, now)
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
                prev = latest.get(skill_id) or self._latest(conn, skill_id)
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
                    conn.execute(
                        "UPDATE skills SET latest_row = ? WHERE skill_id = ?", (row, skill_id)
                    )
                    removed.append(old_row)
            except sqlite3.IntegrityError:
                raise self._collision(
                    conn, [skill_id] if old_row is None else [], [version_id]
                ) from None
            latest[skill_id] = (row, version, version_id)
            records.append(_record(p, skill_id, version_id, version, parent, created_at))
        self._bump(conn, removed)
        return records

    def _insert_new(
        self, conn: sqlite3.Connection, prepared: Sequence[_Prepared], now: float
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
            raise self._collision(conn, skill_ids, version_ids) from None
        self._bump(conn, [])
        return [
            _record(p, sid, vid, 1, None, t)
            for p, sid, vid, t in zip(prepared, skill_ids, version_ids, times, strict=True)
        ]

    def _collision(
        self, conn: sqlite3.Connection, skill_ids: Sequence[str], version_ids: Sequence[str]
    ) -> SkillMemoryError:
        """The error for an id collision (called inside the failed transaction)."""
        taken: str | None = None
        for kind, ids, table, column in (
            ("skill id", skill_ids, "skills", "skill_id"),
            ("version id", version_ids, "versions", "version_id"),
        ):
            seen: set[str] = set()
            for one in ids:
                exists = conn.execute(
                    f"SELECT 1 FROM {table} WHERE {column} = ?", (one,)
                ).fetchone()
                if one in seen or exists:
                    taken = f"{kind} {one!r}"
                    break
                seen.add(one)
            if taken:
                break
        return SkillMemoryError(
            f"{self.path}: {taken or 'an id'} is already taken; nothing was written",
            hint="ids never collide: store it under a fresh id (skill_id=None)",
        )

    def _check_key_dim(self, conn: sqlite3.Connection, dims: Sequence[int]) -> int:
        """Fix the memory's key dimension on first write; raise ``ValueError`` on a mismatch."""
        key_dim = self._meta_int("key_dim", conn)
        if key_dim < 0:
            key_dim = dims[0]
            conn.execute("UPDATE meta SET value = ? WHERE key = 'key_dim'", (key_dim,))
        for dim in dims:
            if dim != key_dim:
                raise ValueError(
                    f"key has dimension {dim}; this memory's keys have dimension {key_dim}"
                )
        return key_dim

    def _latest(self, conn: sqlite3.Connection, skill_id: str) -> tuple[int, int, str]:
        found = conn.execute(
            f"SELECT v.row, v.version, v.version_id {_LATEST_JOIN} WHERE s.skill_id = ?",
            (skill_id,),
        ).fetchone()
        if found is None:
            raise SkillNotFoundError(f"{self.path}: no skill with id {skill_id!r}")
        return int(found[0]), int(found[1]), str(found[2])

    def add_version(
        self,
        skill_id: str,
        *,
        weights: Weights | bytes | None = None,
        key: npt.ArrayLike | None = None,
        arch_config: Mapping[str, Any] | None = None,
        name: str | None = None,
        tags: Sequence[str] | None = None,
        provenance: Provenance | None = None,
        created_at: float | None = None,
        version_id: str | None = None,
    ) -> SkillRecord:
        """Store a new version of ``skill_id`` whose parent is its latest version.

        Fields left ``None`` are copied from the latest version (weights by blob: no copy). The
        previous versions are never changed.

        Raises:
            SkillNotFoundError: no such skill.
            ArchitectureError: the (new or kept) weights do not fit the (new) config.
        """
        check_skill_id(skill_id)
        with self._write() as conn:
            row = conn.execute(
                f"SELECT {RECORD_COLUMNS} {_LATEST_JOIN} WHERE s.skill_id = ?", (skill_id,)
            ).fetchone()
            if row is None:
                raise SkillNotFoundError(f"{self.path}: no skill with id {skill_id!r}")
            prev = record_from_row(row)
            config = dict(prev.arch_config) if arch_config is None else dict(arch_config)
            if weights is None:
                data = self._blobs.read(prev.weights_sha256)
                decode_weights(data, prev.arch_id, config, where=f"skill {skill_id}")
                weights = data
            spec = SkillSpec(
                name=prev.name if name is None else name,
                key=prev.key if key is None else as_key(key),
                arch_id=prev.arch_id,
                arch_config=config,
                weights=weights,
                provenance=prev.provenance if provenance is None else provenance,
                tags=prev.tags if tags is None else tuple(tags),
                version_of=skill_id,
                created_at=created_at,
                version_id=version_id,
            )
            prepared, blobs = self._prepare([spec])
            for sha, data in blobs.items():
                self._blobs.write(data, sha)
            (record,) = self._insert(conn, prepared, blobs)
        return record

    def record_usage(
        self, skill_id: str, *, retrieved: int = 0, executed: int = 0, succeeded: int = 0
    ) -> None:
        """Add to a skill's usage counters (one transaction).

        Raises:
            SkillNotFoundError: no such skill.
        """
        self.record_usage_many({skill_id: (retrieved, executed, succeeded)})

    def record_usage_many(self, counts: Mapping[str, tuple[int, int, int]]) -> None:
        """Add (retrieved, executed, succeeded) to several skills' counters in one transaction.

        Raises:
            SkillNotFoundError: an id is unknown (nothing is written).
        """
        for skill_id, triple in counts.items():
            if len(triple) != 3 or min(triple) < 0:
                raise ValueError(f"usage counts of {skill_id!r} must be 3 non-negative integers")
        self._apply_usage(counts, strict=True)

    def _apply_usage(self, counts: Mapping[str, tuple[int, int, int]], *, strict: bool) -> None:
        if not counts:
            return
        now = time.time()
        with self._write() as conn:
            for skill_id, (retrieved, executed, succeeded) in counts.items():
                updated = conn.execute(
                    "UPDATE skills SET num_retrieved = num_retrieved + ?, num_executed = "
                    "num_executed + ?, num_succeeded = num_succeeded + ?, last_used = ? "
                    "WHERE skill_id = ?",
                    (retrieved, executed, succeeded, now, skill_id),
                ).rowcount
                if strict and updated == 0:
                    raise SkillNotFoundError(f"{self.path}: no skill with id {skill_id!r}")

    def _flush_usage(self) -> None:
        if not self._pending:
            return
        pending = {sid: (n, 0, 0) for sid, n in self._pending.items()}
        self._pending.clear()
        self._pending_total = 0
        self._apply_usage(pending, strict=False)  # a skill deleted meanwhile is skipped

    def delete(self, skill_id: str) -> None:
        """Delete a skill and every version's rows (blobs stay until ``gc``).

        Raises:
            SkillNotFoundError: no such skill.
        """
        self._pending.pop(skill_id, None)
        with self._write() as conn:
            row = conn.execute(
                "SELECT latest_row FROM skills WHERE skill_id = ?", (skill_id,)
            ).fetchone()
            if row is None:
                raise SkillNotFoundError(f"{self.path}: no skill with id {skill_id!r}")
            conn.execute("DELETE FROM versions WHERE skill_id = ?", (skill_id,))
            conn.execute("DELETE FROM skills WHERE skill_id = ?", (skill_id,))
            self._bump(conn, [int(row[0])])

    def gc(self) -> GcReport:
        """Remove blobs that no version references, and temporary files of dead writers."""
        self._flush_usage()
        with self._write() as conn:  # writers check their blobs under this same lock
            referenced = {
                sha for (sha,) in conn.execute("SELECT DISTINCT weights_sha256 FROM versions")
            }
            swept = self._blobs.sweep(referenced)
        return GcReport(swept.removed_sha256, swept.num_tmp_removed, swept.bytes_freed)

    # --- reading records -------------------------------------------------------------------------

    def _with_pending(self, record: SkillRecord) -> SkillRecord:
        extra = self._pending.get(record.skill_id, 0)
        if not extra:
            return record
        usage = record.usage
        bumped = UsageStats(
            usage.num_retrieved + extra,
            usage.num_executed,
            usage.num_succeeded,
            max(usage.last_used or 0.0, self._pending_since),
        )
        return replace(record, usage=bumped)

    def _records(self, sql: str, params: Sequence[Any]) -> list[SkillRecord]:
        rows = self._conn().execute(sql, params).fetchall()
        return [self._with_pending(record_from_row(r)) for r in rows]

    def get(self, skill_id: str, version: int | None = None) -> SkillRecord:
        """A skill's latest version, or the given version number.

        Raises:
            SkillNotFoundError: no such skill or version.
        """
        if version is None:
            sql = f"SELECT {RECORD_COLUMNS} {_LATEST_JOIN} WHERE s.skill_id = ?"
            found = self._records(sql, (skill_id,))
        else:
            sql = f"SELECT {RECORD_COLUMNS} {_ALL_JOIN} WHERE v.skill_id = ? AND v.version = ?"
            found = self._records(sql, (skill_id, version))
        if not found:
            what = f"version {version} of skill" if version is not None else "skill with id"
            raise SkillNotFoundError(f"{self.path}: no {what} {skill_id!r}")
        return found[0]

    def get_version(self, version_id: str) -> SkillRecord:
        """The version with this version id.

        Raises:
            SkillNotFoundError: no such version.
        """
        sql = f"SELECT {RECORD_COLUMNS} {_ALL_JOIN} WHERE v.version_id = ?"
        found = self._records(sql, (version_id,))
        if not found:
            raise SkillNotFoundError(f"{self.path}: no version with id {version_id!r}")
        return found[0]

    def versions(self, skill_id: str) -> list[SkillRecord]:
        """Every version of a skill, oldest first.

        Raises:
            SkillNotFoundError: no such skill.
        """
        sql = f"SELECT {RECORD_COLUMNS} {_ALL_JOIN} WHERE v.skill_id = ? ORDER BY v.version"
        found = self._records(sql, (skill_id,))
        if not found:
            raise SkillNotFoundError(f"{self.path}: no skill with id {skill_id!r}")
        return found

    def list(self, filters: RetrievalFilter | None = None) -> list[SkillRecord]:
        """Latest versions of the skills matching ``filters``, oldest skill first."""
        where, params = _filter_sql(filters)
        return self._records(
            f"SELECT {RECORD_COLUMNS} {_LATEST_JOIN} {where} ORDER BY s.latest_row", params
        )

    def read_blob(self, sha256: str) -> bytes:
        """The stored safetensors bytes with this hash.

        Raises:
            MemoryCorruptionError: missing, or the bytes do not match the hash.
        """
        return self._blobs.read(sha256, check=True)

    def load_weights(self, record: SkillRecord) -> dict[str, npt.NDArray[Any]]:
        """The weights of a version, after checking the blob's hash and the architecture.

        Raises:
            MemoryCorruptionError: the blob is missing, corrupted, or does not fit the architecture.
        """
        data = self._blobs.read(record.weights_sha256, check=True)
        try:
            return decode_weights(
                data, record.arch_id, record.arch_config, where=f"skill {record.skill_id}"
            )
        except ArchitectureError as exc:
            raise MemoryCorruptionError(exc.message) from None

    def __len__(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM skills").fetchone()[0])

    def __contains__(self, skill_id: object) -> bool:
        found = (
            self._conn().execute("SELECT 1 FROM skills WHERE skill_id = ?", (skill_id,)).fetchone()
        )
        return found is not None

    @property
    def key_dim(self) -> int | None:
        """Z, fixed by the first skill stored; ``None`` for a memory never written."""
        value = self._meta_int("key_dim")
        return None if value < 0 else value

    # --- retrieval -------------------------------------------------------------------------------

    def _current_matrix(self) -> KeyMatrix | None:
        """The key matrix at the database's current generation (``None`` if never written)."""
        conn = self._conn()
        generation = self._meta_int("generation", conn)
        if self._matrix is not None and self._matrix.generation == generation:
            return self._matrix
        with self._read() as snap:
            generation = self._meta_int("generation", snap)
            key_dim = self._meta_int("key_dim", snap)
            if key_dim < 0:
                return None
            matrix = self._matrix
            if matrix is None:
                cached = load_cache(self._cache_path())
                if (
                    cached is not None
                    and cached.key_dim == key_dim
                    and cached.generation <= generation
                ):
                    matrix = cached
                    self._cache_generation = cached.generation
            if matrix is not None:
                matrix = update_matrix(snap, matrix, generation)
                count, max_row = snap.execute(
                    "SELECT COUNT(*), COALESCE(MAX(latest_row), 0) FROM skills"
                ).fetchone()
                if len(matrix) != count or matrix.max_row != max_row:
                    logger.warning(
                        "%s: key cache disagrees with the database; reloading", self.path
                    )
                    matrix = None
            if matrix is None:
                matrix = load_matrix(snap, key_dim, generation)
        self._matrix = matrix
        self._filter_masks.clear()
        if self._cache_generation < 0 and len(matrix) >= _CACHE_MIN_KEYS:
            self._save_cache()
        return matrix

    def _cache_path(self) -> Path:
        return self.path / "index" / f"keys-{self._memory_id}.bin"

    def _save_cache(self) -> None:
        if self._matrix is None or self._matrix.generation == self._cache_generation:
            return
        try:
            save_cache(self._cache_path(), self._matrix)
            self._cache_generation = self._matrix.generation
        except OSError as exc:  # a cache is optional: the database stays the truth
            logger.warning("%s: could not write the key cache: %s", self.path, exc)

    def _filter_mask(self, matrix: KeyMatrix, filters: RetrievalFilter) -> npt.NDArray[np.bool_]:
        cache_key = (filters, matrix.generation)
        mask = self._filter_masks.get(cache_key)
        if mask is None:
            where, params = _filter_sql(filters)
            rows = np.fromiter(
                (
                    r
                    for (r,) in self._conn().execute(
                        f"SELECT s.latest_row {_LATEST_JOIN} {where}", params
                    )
                ),
                dtype=np.int64,
            )
            mask = np.isin(matrix.rows, rows)
            if len(self._filter_masks) >= 16:
                self._filter_masks.clear()
            self._filter_masks[cache_key] = mask
        return mask

    def keys(
        self, filters: RetrievalFilter | None = None
    ) -> tuple[builtins.list[str], npt.NDArray[np.float32]]:
        """Ids (N,) and keys (N, Z) of the latest versions matching ``filters``."""
        matrix = self._current_matrix()
        if matrix is None:
            return [], np.zeros((0, 0), np.float32)
        if filters is None or filters.is_empty:
            return [matrix.skill_id(i) for i in range(len(matrix))], matrix.keys.copy()
        positions = np.flatnonzero(self._filter_mask(matrix, filters))
        return [matrix.skill_id(int(i)) for i in positions], matrix.keys[positions]

    def retrieve(
        self,
        query: npt.ArrayLike,
        k: int,
        *,
        filters: RetrievalFilter | None = None,
        metric: Metric = "dot",
        temperature: float = 1.0,
        approximate: bool = False,
        record: bool = True,
    ) -> Retrieval:
        """The top-k skills for a query, with softmax attention weights over the k.

        Args:
            query: (Z,) query vector.
            k: How many skills to return (fewer when fewer match).
            filters: Keep only skills with these tags / architecture / task.
            metric: ``"dot"`` (scaled dot product ``q·k / sqrt(Z)``) or ``"cosine"``.
            temperature: Softmax temperature of the attention weights.
            approximate: Use the approximate index (needs ``index="faiss"|"usearch"``; the
                cosine metric always searches exactly). Scores are recomputed exactly.
            record: Count the retrieval in the returned skills' usage.

        Returns:
            Retrieval with ids (K,), scores (K,) descending and weights (K,) summing to 1.
        """
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        if approximate and self._index is None:
            raise ValueError(
                "approximate=True needs an index: open with SkillMemory(path, index='faiss') "
                "or index='usearch'"
            )
        matrix = self._current_matrix()
        q = as_key(query, "query")
        if matrix is None or len(matrix) == 0:
            empty = np.zeros(0, np.float32)
            return Retrieval((), empty, empty)
        if q.shape[0] != matrix.key_dim:
            raise ValueError(
                f"query has dimension {q.shape[0]}; this memory's keys have dimension "
                f"{matrix.key_dim}"
            )
        mask = None if filters is None or filters.is_empty else self._filter_mask(matrix, filters)
        positions: npt.NDArray[np.int64] | None = None
        if approximate and metric == "dot" and self._index is not None:
            self._sync_index()
            positions = self._index.search(matrix, q, k, mask)
        if positions is None:
            positions, scores = self._exact(matrix, q, k, metric, mask)
        else:
            scores = score_keys(q, matrix.keys[positions], metric="dot")  # (K,)
        ids = tuple(matrix.skill_id(int(p)) for p in positions)
        if record and ids:
            self._note_retrieved(ids)
        return Retrieval(ids, scores, attention_weights(scores, temperature))

    @staticmethod
    def _exact(
        matrix: KeyMatrix,
        q: npt.NDArray[np.float32],
        k: int,
        metric: Metric,
        mask: npt.NDArray[np.bool_] | None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        norms = matrix.norms() if metric == "cosine" else None
        if mask is None:
            scores = score_keys(q, matrix.keys, metric=metric, norms=norms)  # (N,)
            best = top_k(scores, k)
            return best, scores[best]
        subset = np.flatnonzero(mask)
        if subset.size == 0:
            return subset.astype(np.int64), np.zeros(0, np.float32)
        sub_norms = None if norms is None else norms[subset]
        scores = score_keys(q, matrix.keys[subset], metric=metric, norms=sub_norms)
        best = top_k(scores, k)
        return subset[best].astype(np.int64), scores[best]

    def _note_retrieved(self, ids: Sequence[str]) -> None:
        now = time.time()
        if not self._pending:
            self._pending_since = now
        for skill_id in ids:
            self._pending[skill_id] = self._pending.get(skill_id, 0) + 1
        self._pending_total += len(ids)
        if self._pending_total >= _FLUSH_COUNT or now - self._pending_since >= _FLUSH_SECONDS:
            self._flush_usage()

    def _sync_index(self) -> None:
        """Bring the approximate index in step with the key matrix (load, extend or rebuild)."""
        if self._index is None:
            return
        matrix = self._current_matrix()
        if matrix is None:
            return

        def removed_since(generation: int) -> int:
            return int(
                self._conn()
                .execute("SELECT COUNT(*) FROM removed_rows WHERE generation > ?", (generation,))
                .fetchone()[0]
            )

        self._index.sync(matrix, removed_since)

    # --- checks and lifetime ---------------------------------------------------------------------

    def verify(self) -> builtins.list[Problem]:
        """Check every blob hash, every row invariant and SQLite's integrity; change nothing.

        Returns:
            The problems found (empty when the memory is sound). An unreferenced blob is not a
            problem (``gc`` reclaims it).
        """
        return verify_memory(self.db_path, self._blobs)

    def close(self) -> None:
        """Write pending usage counters and caches, then close the connection."""
        if self._pid == -2:
            return
        try:
            if self._pid == os.getpid():
                self._flush_usage()
                self._save_cache_if_useful()
                if self._index is not None:
                    self._index.save()
        finally:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None
            self._pid = -2

    def _save_cache_if_useful(self) -> None:
        if self._matrix is not None and len(self._matrix) >= _CACHE_MIN_KEYS:
            self._save_cache()

    def __enter__(self) -> SkillMemory:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SkillMemory({str(self.path)!r}, index={self.index_kind!r})"
