"""The retrieval side of a skill memory: the key matrix kept in step with the database, its cache
file, filter masks, and the optional approximate index.

Every search first reads the database ``generation`` (one cheap query); when another process (or
this one) has written since, the matrix is brought up to date from the change log before
scoring. The caches never decide anything: a cache that disagrees with the database's row count
or largest row is thrown away and the matrix is read from SQLite.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from skillbank.memory.index import IndexCache
from skillbank.memory.keymatrix import KeyMatrix, load_cache, load_matrix, save_cache, update_matrix
from skillbank.memory.retrieval import Metric, score_keys, top_k
from skillbank.memory.writes import meta_int
from skillbank.types import RetrievalFilter

__all__ = ["CACHE_MIN_KEYS", "LATEST_JOIN", "KeyView", "exact_search", "filter_sql"]

logger = logging.getLogger(__name__)

#: Write the key-matrix cache file when at least this many keys are held (small ones load fast).
CACHE_MIN_KEYS = 10_000
#: Joins every skill to its latest version (aliases ``s`` and ``v``).
LATEST_JOIN = "FROM skills s JOIN versions v ON v.row = s.latest_row"
_MAX_MASKS = 16


def filter_sql(filters: RetrievalFilter | None) -> tuple[str, list[Any]]:
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


def exact_search(
    matrix: KeyMatrix,
    query: npt.NDArray[np.float32],
    k: int,
    metric: Metric,
    mask: npt.NDArray[np.bool_] | None,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Exact top-k over the matrix: positions (K,) and scores (K,), best first.

    Args:
        matrix: The key matrix (N, Z).
        query: (Z,) float32.
        k: How many to keep.
        metric: ``"dot"`` or ``"cosine"``.
        mask: (N,) allowed positions, or ``None`` for all.
    """
    norms = matrix.norms() if metric == "cosine" else None
    if mask is None:
        scores = score_keys(query, matrix.keys, metric=metric, norms=norms)  # (N,)
        best = top_k(scores, k)
        return best, scores[best]
    subset = np.flatnonzero(mask)
    if subset.size == 0:
        return subset.astype(np.int64), np.zeros(0, np.float32)
    sub_norms = None if norms is None else norms[subset]
    scores = score_keys(query, matrix.keys[subset], metric=metric, norms=sub_norms)
    best = top_k(scores, k)
    return subset[best].astype(np.int64), scores[best]


class KeyView:
    """Latest keys of one memory, ready to search (internal to :class:`SkillMemory`).

    Args:
        index_dir: The memory's ``index/`` directory (caches live there).
        memory_id: The memory's random id (names the cache files).
        index_kind: ``"exact"``, ``"faiss"`` or ``"usearch"``.
    """

    def __init__(self, index_dir: Path, memory_id: int, index_kind: str) -> None:
        self.index_dir = index_dir
        self.cache_path = index_dir / f"keys-{memory_id}.bin"
        self.matrix: KeyMatrix | None = None
        self.index = None if index_kind == "exact" else IndexCache(index_dir, index_kind, memory_id)
        self._cache_generation = -1
        self._masks: dict[tuple[RetrievalFilter, int], npt.NDArray[np.bool_]] = {}

    def current(self, conn: sqlite3.Connection) -> KeyMatrix | None:
        """The matrix at the database's current generation (``None`` if never written)."""
        generation = meta_int(conn, "generation")
        if self.matrix is not None and self.matrix.generation == generation:
            return self.matrix
        conn.execute("BEGIN")  # one snapshot for the generation and the rows
        try:
            matrix = self._load(conn)
        finally:
            conn.execute("COMMIT")
        if matrix is None:
            return None
        self.matrix = matrix
        self._masks.clear()
        if self._cache_generation < 0 and len(matrix) >= CACHE_MIN_KEYS:
            self.save_cache()
        return matrix

    def _load(self, snap: sqlite3.Connection) -> KeyMatrix | None:
        generation = meta_int(snap, "generation")
        key_dim = meta_int(snap, "key_dim")
        if key_dim < 0:
            return None
        matrix = self.matrix
        if matrix is None:
            cached = load_cache(self.cache_path)
            if cached is not None and cached.key_dim == key_dim and cached.generation <= generation:
                matrix = cached
                self._cache_generation = cached.generation
        if matrix is not None:
            matrix = update_matrix(snap, matrix, generation)
            count, max_row = snap.execute(
                "SELECT COUNT(*), COALESCE(MAX(latest_row), 0) FROM skills"
            ).fetchone()
            if len(matrix) != count or matrix.max_row != max_row:
                logger.warning("%s: key cache disagrees with the database; reloading", snap)
                matrix = None
        if matrix is None:
            matrix = load_matrix(snap, key_dim, generation)
        return matrix

    def save_cache(self) -> None:
        """Write the matrix cache file if it is stale (a failure only logs: it is a cache)."""
        if self.matrix is None or self.matrix.generation == self._cache_generation:
            return
        try:
            save_cache(self.cache_path, self.matrix)
            self._cache_generation = self.matrix.generation
        except OSError as exc:
            logger.warning("%s: could not write the key cache: %s", self.cache_path, exc)

    def save(self) -> None:
        """Persist the caches worth keeping (called on close)."""
        if self.matrix is not None and len(self.matrix) >= CACHE_MIN_KEYS:
            self.save_cache()
        if self.index is not None:
            self.index.save()

    def mask(
        self, conn: sqlite3.Connection, matrix: KeyMatrix, filters: RetrievalFilter | None
    ) -> npt.NDArray[np.bool_] | None:
        """(N,) positions of the matrix whose skills match ``filters`` (``None``: all match)."""
        if filters is None or filters.is_empty:
            return None
        cache_key = (filters, matrix.generation)
        mask = self._masks.get(cache_key)
        if mask is None:
            where, params = filter_sql(filters)
            sql = f"SELECT s.latest_row {LATEST_JOIN} {where}"
            rows = np.fromiter((r for (r,) in conn.execute(sql, params)), dtype=np.int64)
            mask = np.isin(matrix.rows, rows)
            if len(self._masks) >= _MAX_MASKS:
                self._masks.clear()
            self._masks[cache_key] = mask
        return mask

    def sync_index(self, conn: sqlite3.Connection) -> None:
        """Bring the approximate index in step with the matrix (load, extend or rebuild)."""
        matrix = self.current(conn)
        if self.index is None or matrix is None:
            return

        def removed_since(generation: int) -> int:
            sql = "SELECT COUNT(*) FROM removed_rows WHERE generation > ?"
            return int(conn.execute(sql, (generation,)).fetchone()[0])

        self.index.sync(matrix, removed_since)

    def search(
        self,
        conn: sqlite3.Connection,
        query: npt.NDArray[np.float32],
        k: int,
        *,
        filters: RetrievalFilter | None,
        metric: Metric,
        approximate: bool,
    ) -> tuple[KeyMatrix | None, npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Top-k positions (K,) and scores (K,) for a (Z,) query, and the matrix they index.

        Approximate search (dot metric only) takes the index's candidates and re-scores them
        exactly; it falls back to exact search when the index cannot supply k candidates.
        """
        empty = (np.zeros(0, np.int64), np.zeros(0, np.float32))
        matrix = self.current(conn)
        if matrix is None or len(matrix) == 0:
            return matrix, *empty
        if query.shape[0] != matrix.key_dim:
            raise ValueError(
                f"query has dimension {query.shape[0]}; this memory's keys have dimension "
                f"{matrix.key_dim}"
            )
        mask = self.mask(conn, matrix, filters)
        if approximate and metric == "dot" and self.index is not None:
            self.sync_index(conn)
            positions = self.index.search(matrix, query, k, mask)
            if positions is not None:
                return matrix, positions, score_keys(query, matrix.keys[positions], metric="dot")
        positions, scores = exact_search(matrix, query, k, metric, mask)
        return matrix, positions, scores
