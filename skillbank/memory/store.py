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
import logging
import os
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
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
from skillbank.memory.index import INDEX_KINDS
from skillbank.memory.keyview import LATEST_JOIN, KeyView, filter_sql
from skillbank.memory.pack_manifest import MANIFEST_NAME
from skillbank.memory.retrieval import Metric, attention_weights
from skillbank.memory.schema import (
    DB_NAME,
    RECORD_COLUMNS,
    check_skill_id,
    connect,
    ensure_schema,
    record_from_row,
)
from skillbank.memory.specs import GcReport, SkillSpec, as_key
from skillbank.memory.verify import Problem, verify_memory
from skillbank.memory.weights import Weights, decode_weights
from skillbank.memory.writes import (
    bump,
    insert_prepared,
    meta_int,
    new_id,
    prepare,
)
from skillbank.types import Provenance, Retrieval, RetrievalFilter, SkillRecord, UsageStats

__all__ = ["SkillMemory", "new_id"]

logger = logging.getLogger(__name__)

_FLUSH_COUNT = 1024
_FLUSH_SECONDS = 2.0
_ALL_JOIN = "FROM versions v JOIN skills s ON s.skill_id = v.skill_id"


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
            if (self.path / MANIFEST_NAME).is_file():
                # Never turn a pack directory into an (empty) memory beside its files.
                raise SkillMemoryError(
                    f"{self.path} is a skill pack, not a skill memory",
                    hint="import it with `skillbank skills import PACK --memory DIR`; "
                    "`skillbank eval --memory PACK` reads packs directly",
                )
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
        self._pending: dict[str, int] = {}
        self._pending_total = 0
        self._pending_since = 0.0
        try:
            ensure_schema(self._conn())
            memory_id = meta_int(self._conn(), "memory_id")
        except sqlite3.DatabaseError as exc:
            raise self._db_error(exc) from None
        self._view = KeyView(self.path / "index", memory_id, index)
        if index != "exact":  # check the index against the database now, not on first use
            self._view.sync_index(self._conn())

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
        prepared, blobs = prepare(specs)
        for sha, data in blobs.items():
            self._blobs.write(data, sha)
        with self._write() as conn:
            return insert_prepared(conn, prepared, blobs, self._blobs, str(self.path))

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
                f"SELECT {RECORD_COLUMNS} {LATEST_JOIN} WHERE s.skill_id = ?", (skill_id,)
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
            prepared, blobs = prepare([spec])
            for sha, data in blobs.items():
                self._blobs.write(data, sha)
            (record,) = insert_prepared(conn, prepared, blobs, self._blobs, str(self.path))
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
            bump(conn, [int(row[0])])

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
            sql = f"SELECT {RECORD_COLUMNS} {LATEST_JOIN} WHERE s.skill_id = ?"
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
        """Latest versions of the skills matching ``filters``, least recently updated first."""
        where, params = filter_sql(filters)
        return self._records(
            f"SELECT {RECORD_COLUMNS} {LATEST_JOIN} {where} ORDER BY s.latest_row", params
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
        value = meta_int(self._conn(), "key_dim")
        return None if value < 0 else value

    # --- retrieval -------------------------------------------------------------------------------

    def keys(
        self, filters: RetrievalFilter | None = None
    ) -> tuple[builtins.list[str], npt.NDArray[np.float32]]:
        """Ids (N,) and keys (N, Z) of the latest versions matching ``filters``."""
        conn = self._conn()
        matrix = self._view.current(conn)
        if matrix is None:
            return [], np.zeros((0, 0), np.float32)
        mask = self._view.mask(conn, matrix, filters)
        if mask is None:
            return [matrix.skill_id(i) for i in range(len(matrix))], matrix.keys.copy()
        positions = np.flatnonzero(mask)
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
        if approximate and self._view.index is None:
            raise ValueError(
                "approximate=True needs an index: open with SkillMemory(path, index='faiss') "
                "or index='usearch'"
            )
        q = as_key(query, "query")
        matrix, positions, scores = self._view.search(
            self._conn(), q, k, filters=filters, metric=metric, approximate=approximate
        )
        if matrix is None or positions.size == 0:
            empty = np.zeros(0, np.float32)
            return Retrieval((), empty, empty)
        ids = tuple(matrix.skill_id(int(p)) for p in positions)
        if record and ids:
            self._note_retrieved(ids)
        return Retrieval(ids, scores, attention_weights(scores, temperature))

    def _note_retrieved(self, ids: Sequence[str]) -> None:
        now = time.time()
        if not self._pending:
            self._pending_since = now
        for skill_id in ids:
            self._pending[skill_id] = self._pending.get(skill_id, 0) + 1
        self._pending_total += len(ids)
        if self._pending_total >= _FLUSH_COUNT or now - self._pending_since >= _FLUSH_SECONDS:
            pending = dict(self._pending)
            try:
                self._flush_usage()
            except MemoryLockedError:  # another writer holds the lock: keep counting, retry later
                self._pending = pending
                self._pending_total = sum(pending.values())
                logger.info("%s: usage counters deferred (database busy)", self.path)

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
                self._view.save()
        finally:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None
            self._pid = -2

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
