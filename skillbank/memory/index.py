"""Approximate nearest-neighbour indexes over skill keys (the ``index`` extra), and the cache that
keeps one in step with the database.

Two implementations of :class:`skillbank.interfaces.VectorIndex`, both HNSW graphs (Malkov &
Yashunin, 2018, "Efficient and robust approximate nearest neighbor search using Hierarchical
Navigable Small World graphs") under the inner-product metric:

- :class:`FaissHnswIndex`: ``faiss.IndexIDMap(faiss.IndexHNSWFlat)``.
- :class:`UsearchIndex`: ``usearch.index.Index(metric="ip")``.

Both libraries are imported lazily; a missing one raises :class:`MissingExtraError` naming
``pip install 'skillbank[index]'``.

:class:`IndexCache` keeps one index in ``DIR/index/`` as a cache, never the truth: it records the
database generation and largest row it reflects, adds rows stored since, counts rows that stopped
being latest (their stale entries are filtered out of results) and rebuilds when more than a
quarter of the entries are stale or the files do not match the memory.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from skillbank.errors import MissingExtraError
from skillbank.memory.keymatrix import KeyMatrix

__all__ = ["INDEX_KINDS", "FaissHnswIndex", "IndexCache", "UsearchIndex", "make_index"]

logger = logging.getLogger(__name__)

INDEX_KINDS: tuple[str, ...] = ("faiss", "usearch")
_STALE_FRACTION = 0.25


def _import(name: str) -> Any:
    try:
        return __import__(name, fromlist=["_"])
    except ImportError:
        raise MissingExtraError(
            f"the approximate index needs {name.split('.')[0]}, which is not installed",
            hint="pip install 'skillbank[index]'",
        ) from None


def _as_queries(queries: npt.NDArray[np.float32], dim: int) -> npt.NDArray[np.float32]:
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]  # (1, Z)
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f"queries must have shape (B, {dim}), got {queries.shape}")
    return q


class FaissHnswIndex:
    """FAISS HNSW over inner products, labels kept by an ID map.

    Args:
        dim: Z.
        m: HNSW neighbours per node.
        ef_construction: Build-time beam width.
        ef_search: Query-time beam width (recall vs speed).
    """

    def __init__(
        self, dim: int, *, m: int = 32, ef_construction: int = 80, ef_search: int = 96
    ) -> None:
        faiss = _import("faiss")
        self._faiss = faiss
        hnsw = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = ef_construction
        hnsw.hnsw.efSearch = ef_search
        self._index = faiss.IndexIDMap(hnsw)
        self._hnsw = hnsw
        self._dim = dim

    @property
    def dim(self) -> int:
        """Z, the key dimension."""
        return self._dim

    @property
    def ef_search(self) -> int:
        """Query-time beam width."""
        return int(self._hnsw.hnsw.efSearch)

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self._hnsw.hnsw.efSearch = int(value)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, labels: npt.NDArray[np.int64], keys: npt.NDArray[np.float32]) -> None:
        """Add keys (N, Z) under labels (N,)."""
        keys = _as_queries(keys, self._dim)
        self._index.add_with_ids(keys, np.ascontiguousarray(labels, dtype=np.int64))

    def search(
        self, queries: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Labels (B, K) and inner products (B, K) for queries (B, Z); -1 where missing."""
        scores, labels = self._index.search(_as_queries(queries, self._dim), k)
        return labels.astype(np.int64), scores.astype(np.float32)

    def save(self, path: str) -> None:
        """Write the index to ``path`` atomically."""
        tmp = f"{path}.{os.getpid()}.tmp"
        self._faiss.write_index(self._index, tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str, *, ef_search: int = 96) -> FaissHnswIndex:
        """Read an index written by :meth:`save`."""
        faiss = _import("faiss")
        index = faiss.read_index(path)
        self = cls.__new__(cls)
        self._faiss = faiss
        self._index = index
        self._hnsw = faiss.downcast_index(index.index)
        self._hnsw.hnsw.efSearch = ef_search
        self._dim = int(index.d)
        return self


class UsearchIndex:
    """usearch HNSW over inner products.

    Args:
        dim: Z.
        connectivity: HNSW neighbours per node.
        expansion_add: Build-time beam width.
        expansion_search: Query-time beam width.
    """

    def __init__(
        self,
        dim: int,
        *,
        connectivity: int = 32,
        expansion_add: int = 80,
        expansion_search: int = 192,
    ) -> None:
        usearch_index = _import("usearch.index")
        self._index = usearch_index.Index(
            ndim=dim,
            metric="ip",
            dtype="f32",
            connectivity=connectivity,
            expansion_add=expansion_add,
            expansion_search=expansion_search,
        )
        self._dim = dim

    @property
    def dim(self) -> int:
        """Z, the key dimension."""
        return self._dim

    @property
    def ef_search(self) -> int:
        """Query-time beam width."""
        return int(self._index.expansion_search)

    @ef_search.setter
    def ef_search(self, value: int) -> None:
        self._index.expansion_search = int(value)

    def __len__(self) -> int:
        return len(self._index)

    def add(self, labels: npt.NDArray[np.int64], keys: npt.NDArray[np.float32]) -> None:
        """Add keys (N, Z) under labels (N,)."""
        keys = _as_queries(keys, self._dim)
        self._index.add(np.ascontiguousarray(labels, dtype=np.uint64), keys, threads=0)

    def search(
        self, queries: npt.NDArray[np.float32], k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Labels (B, K) and inner products (B, K) for queries (B, Z); -1 where missing."""
        q = _as_queries(queries, self._dim)
        labels = np.full((q.shape[0], k), -1, dtype=np.int64)
        scores = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        if len(self._index) == 0:
            return labels, scores
        matches = self._index.search(q, k, threads=1)
        if hasattr(matches, "counts"):  # BatchMatches: (B, K) arrays and per-query counts
            keys, dists, counts = matches.keys, matches.distances, matches.counts
        else:  # Matches of a single query
            keys, dists = matches.keys[None, :], matches.distances[None, :]
            counts = np.array([len(matches.keys)])
        for b in range(q.shape[0]):
            c = int(counts[b])
            labels[b, :c] = keys[b, :c].astype(np.int64)
            scores[b, :c] = 1.0 - dists[b, :c]  # usearch's "ip" distance is 1 - dot
        return labels, scores

    def save(self, path: str) -> None:
        """Write the index to ``path`` atomically."""
        tmp = f"{path}.{os.getpid()}.tmp"
        self._index.save(tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str, *, ef_search: int = 192) -> UsearchIndex:
        """Read an index written by :meth:`save`."""
        usearch_index = _import("usearch.index")
        index = usearch_index.Index.restore(path)
        if index is None:
            raise ValueError(f"{path} is not a usearch index")
        index.expansion_search = ef_search
        self = cls.__new__(cls)
        self._index = index
        self._dim = int(index.ndim)
        return self


def make_index(kind: str, dim: int) -> FaissHnswIndex | UsearchIndex:
    """A new empty index of ``kind`` (``"faiss"`` or ``"usearch"``) for keys of dimension Z."""
    if kind == "faiss":
        return FaissHnswIndex(dim)
    if kind == "usearch":
        return UsearchIndex(dim)
    raise ValueError(f"index kind must be one of {INDEX_KINDS}, got {kind!r}")


def _load_index(kind: str, path: str) -> FaissHnswIndex | UsearchIndex:
    return FaissHnswIndex.load(path) if kind == "faiss" else UsearchIndex.load(path)


class IndexCache:
    """One approximate index kept in ``directory`` in step with a memory's key matrix.

    Args:
        directory: The memory's ``index/`` directory.
        kind: ``"faiss"`` or ``"usearch"``.
        memory_id: The memory's random id (a cache of another memory is never used).
    """

    def __init__(self, directory: Path, kind: str, memory_id: int) -> None:
        if kind not in INDEX_KINDS:
            raise ValueError(f"index kind must be one of {INDEX_KINDS}, got {kind!r}")
        make_index(kind, 1)  # fail early, with the install hint, if the extra is missing
        self.directory = directory
        self.kind = kind
        self.memory_id = memory_id
        self.index: FaissHnswIndex | UsearchIndex | None = None
        self.generation = -1
        self.max_row = 0
        self.num_stale = 0
        self._dirty = False

    @property
    def _meta_path(self) -> Path:
        return self.directory / f"{self.kind}-{self.memory_id}.json"

    def _load(self) -> None:
        try:
            meta = json.loads(self._meta_path.read_text())
            index = _load_index(self.kind, str(self.directory / meta["file"]))
            self.generation = int(meta["generation"])
            self.max_row = int(meta["max_row"])
            self.num_stale = int(meta["num_stale"])
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            logger.warning(
                "%s: unreadable %s index cache (%s); rebuilding", self.directory, self.kind, exc
            )
            return
        self.index = index

    def sync(self, matrix: KeyMatrix, removed_since: Callable[[int], int]) -> None:
        """Make the index reflect ``matrix``: load it, add new rows, or rebuild it."""
        if self.index is not None and self.generation == matrix.generation:
            return
        if self.index is None:
            self._load()
        index = self.index
        usable = (
            index is not None
            and index.dim == matrix.key_dim
            and self.generation <= matrix.generation
        )
        if usable and index is not None:
            new = matrix.rows > self.max_row
            stale = self.num_stale + removed_since(self.generation)
            if stale <= _STALE_FRACTION * max(len(matrix), 1):
                if new.any():
                    index.add(matrix.rows[new], matrix.keys[new])
                    self._dirty = True
                self.num_stale = stale
                self.max_row = max(self.max_row, matrix.max_row)
                self._dirty = self._dirty or self.generation != matrix.generation
                self.generation = matrix.generation
                return
        self.rebuild(matrix)

    def rebuild(self, matrix: KeyMatrix) -> None:
        """Build the index from scratch over ``matrix`` and save it."""
        index = make_index(self.kind, matrix.key_dim)
        if len(matrix):
            index.add(matrix.rows, matrix.keys)
        self.index = index
        self.generation = matrix.generation
        self.max_row = matrix.max_row
        self.num_stale = 0
        self._dirty = True
        self.save()

    def save(self) -> None:
        """Write the index and its state if they changed (index file first, then the state)."""
        if not self._dirty or self.index is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{self.kind}-{self.memory_id}-{self.generation}.bin"
        try:
            self.index.save(str(self.directory / name))
            old = self._old_file()
            meta = {
                "kind": self.kind,
                "file": name,
                "generation": self.generation,
                "max_row": self.max_row,
                "num_stale": self.num_stale,
            }
            tmp = self._meta_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(meta))
            os.replace(tmp, self._meta_path)
            if old is not None and old != name:
                (self.directory / old).unlink(missing_ok=True)
        except OSError as exc:  # a cache is optional
            logger.warning("%s: could not save the %s index: %s", self.directory, self.kind, exc)
            return
        self._dirty = False

    def _old_file(self) -> str | None:
        try:
            return str(json.loads(self._meta_path.read_text())["file"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def search(
        self,
        matrix: KeyMatrix,
        query: npt.NDArray[np.float32],
        k: int,
        mask: npt.NDArray[np.bool_] | None,
    ) -> npt.NDArray[np.int64] | None:
        """Matrix positions (K,) of the approximate top-k by inner product, best first.

        Over-fetches to make up for stale entries and ``mask`` (allowed positions); returns
        ``None`` when the caller should search exactly instead (a selective filter, or too few
        candidates survived).
        """
        index = self.index
        if index is None or len(index) == 0:
            return None
        n = len(matrix)
        num_allowed = n if mask is None else int(np.count_nonzero(mask))
        if num_allowed == 0 or num_allowed <= 4 * k or num_allowed < n // 16:
            return None  # few candidates: an exact scan of them is as fast and exact
        fetch = k + self.num_stale * k // max(n, 1) + 1
        if mask is not None:
            fetch = fetch * n // num_allowed
        fetch = min(max(fetch, k), len(index), 4096)
        labels, _ = index.search(query[None, :], fetch)
        found = labels[0][labels[0] >= 0]
        positions = matrix.positions(found)
        positions = positions[positions >= 0]
        if mask is not None:
            positions = positions[mask[positions]]
        positions = np.unique(positions)
        if positions.size < min(k, num_allowed):
            return None
        scores = matrix.keys[positions] @ query  # (K',) exact inner products
        order = np.lexsort((positions, -scores))[:k]
        result: npt.NDArray[np.int64] = positions[order]
        return result
