"""The in-memory matrix of latest keys that exact retrieval scans, and its cache file.

The database holds the truth; this matrix is rebuilt from it. To make opening a large memory fast
it is also kept in ``index/keys.bin``, valid only for the database ``generation`` it was built at:
a stale cache is brought up to date from the ``removed_rows`` log and the rows added since (rows
are never reused, so "added since" is "row greater than the cache's largest row").

Cache file layout: ``b"SKBKEYS1"``, u64 little-endian header length, JSON header (generation,
key_dim, num_rows, id_width, crc32), then rows (N,) int64, keys (N, Z) float32, ids (N,) bytes,
all little-endian and contiguous.
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from skillbank.memory.retrieval import key_norms

__all__ = ["KeyMatrix", "load_cache", "load_matrix", "save_cache", "update_matrix"]

_MAGIC = b"SKBKEYS1"
_CHUNK = 65536
_LATEST = (
    "SELECT s.latest_row, s.skill_id, v.key FROM skills s JOIN versions v ON v.row = s.latest_row"
)


@dataclass(slots=True)
class KeyMatrix:
    """Latest keys of every skill, rows ascending. Internal, mutable cache state.

    Attributes:
        rows: (N,) int64 database rows (labels), strictly increasing.
        keys: (N, Z) float32, C-contiguous.
        ids: (N,) fixed-width bytes skill ids (UTF-8).
        generation: The database generation this matrix reflects.
        key_dim: Z.
    """

    rows: npt.NDArray[np.int64]
    keys: npt.NDArray[np.float32]
    ids: npt.NDArray[np.bytes_]
    generation: int
    key_dim: int
    _norms: npt.NDArray[np.float32] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @property
    def max_row(self) -> int:
        """Largest row in the matrix (0 when empty)."""
        return int(self.rows[-1]) if len(self) else 0

    def norms(self) -> npt.NDArray[np.float32]:
        """(N,) key norms, computed once per matrix."""
        if self._norms is None:
            self._norms = key_norms(self.keys)
        return self._norms

    def skill_id(self, position: int) -> str:
        """The skill id at a matrix position."""
        return bytes(self.ids[position]).decode()

    def positions(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Matrix positions of ``rows`` (K,), -1 where a row is not in the matrix."""
        if not len(self):
            return np.full(rows.shape, -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.rows, rows), len(self) - 1).astype(np.int64)
        result: npt.NDArray[np.int64] = np.where(self.rows[pos] == rows, pos, -1)
        return result


def _empty(key_dim: int, generation: int) -> KeyMatrix:
    return KeyMatrix(
        rows=np.zeros(0, np.int64),
        keys=np.zeros((0, key_dim), np.float32),
        ids=np.zeros(0, "S1"),
        generation=generation,
        key_dim=key_dim,
    )


def _read_latest(
    conn: sqlite3.Connection, key_dim: int, where: str, params: tuple[int, ...], count: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.bytes_]]:
    rows = np.empty(count, np.int64)
    keys = np.empty((count, key_dim), np.float32)
    ids: list[bytes] = []
    cursor = conn.execute(f"{_LATEST} {where} ORDER BY s.latest_row", params)
    i = 0
    while batch := cursor.fetchmany(_CHUNK):
        b = len(batch)
        if i + b > count:  # cannot happen inside one read transaction
            raise AssertionError("latest rows changed during a snapshot read")
        batch_rows, batch_ids, batch_keys = zip(*batch, strict=True)
        rows[i : i + b] = batch_rows
        keys[i : i + b] = np.frombuffer(b"".join(batch_keys), dtype="<f4").reshape(b, key_dim)
        ids.extend(s.encode() for s in batch_ids)
        i += b
    assert i == count, "latest rows changed during a snapshot read"
    return rows, keys, np.array(ids, dtype=np.bytes_) if ids else np.zeros(0, "S1")


def load_matrix(conn: sqlite3.Connection, key_dim: int, generation: int) -> KeyMatrix:
    """Read every latest key from the database (call inside a read transaction)."""
    count = conn.execute("SELECT COUNT(*) FROM skills").fetchone()[0]
    if count == 0:
        return _empty(key_dim, generation)
    rows, keys, ids = _read_latest(conn, key_dim, "", (), count)
    return KeyMatrix(rows, keys, ids, generation, key_dim)


def update_matrix(conn: sqlite3.Connection, matrix: KeyMatrix, generation: int) -> KeyMatrix:
    """Bring ``matrix`` from its generation to ``generation`` (inside a read transaction).

    Drops the rows the log says stopped being latest and appends the latest rows added since.
    """
    if generation == matrix.generation:
        return matrix
    removed = np.fromiter(
        (
            r
            for (r,) in conn.execute(
                "SELECT row FROM removed_rows WHERE generation > ?", (matrix.generation,)
            )
        ),
        dtype=np.int64,
    )
    since = matrix.max_row
    count = conn.execute("SELECT COUNT(*) FROM skills WHERE latest_row > ?", (since,)).fetchone()[0]
    new_rows, new_keys, new_ids = _read_latest(
        conn, matrix.key_dim, "WHERE s.latest_row > ?", (since,), count
    )
    rows, keys, ids = matrix.rows, matrix.keys, matrix.ids
    if removed.size:
        keep = ~np.isin(rows, removed)
        rows, keys, ids = rows[keep], keys[keep], ids[keep]
    if count:
        rows = np.concatenate([rows, new_rows])
        keys = np.concatenate([keys, new_keys])  # (N, Z)
        ids = np.concatenate([ids, new_ids]) if ids.size else new_ids
    return KeyMatrix(
        np.ascontiguousarray(rows),
        np.ascontiguousarray(keys),
        ids,
        generation,
        matrix.key_dim,
    )


def save_cache(path: Path, matrix: KeyMatrix) -> None:
    """Write the matrix to ``path`` atomically (temporary file, fsync, rename)."""
    # Write the arrays' own buffers: no copy of the (N, Z) keys, whatever N is.
    parts = [
        np.ascontiguousarray(matrix.rows, dtype="<i8"),
        np.ascontiguousarray(matrix.keys, dtype="<f4"),
        np.ascontiguousarray(matrix.ids),
    ]
    crc = 0
    for part in parts:
        crc = zlib.crc32(part.data, crc)
    header = json.dumps(
        {
            "generation": matrix.generation,
            "key_dim": matrix.key_dim,
            "num_rows": len(matrix),
            "id_width": int(matrix.ids.dtype.itemsize),
            "crc32": crc,
        }
    ).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(_MAGIC + struct.pack("<Q", len(header)) + header)
        for part in parts:
            handle.write(part.data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_cache(path: Path) -> KeyMatrix | None:
    """Read a cache file; ``None`` when missing, truncated or failing its checksum."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return None
    try:
        with handle:
            if handle.read(8) != _MAGIC:
                return None
            (header_len,) = struct.unpack("<Q", handle.read(8))
            if header_len > 4096:
                return None
            header = json.loads(handle.read(header_len))
            n, z, width = int(header["num_rows"]), int(header["key_dim"]), int(header["id_width"])
            expected = 16 + header_len + n * (8 + 4 * z + width)
            if os.fstat(handle.fileno()).st_size != expected:
                return None
            rows = np.fromfile(handle, dtype="<i8", count=n).astype(np.int64, copy=False)
            keys = np.fromfile(handle, dtype="<f4", count=n * z).reshape(n, z)  # (N, Z)
            ids = np.fromfile(handle, dtype=f"S{width}", count=n) if n else np.zeros(0, "S1")
        crc = 0
        for part in (rows, keys, ids):  # the order save_cache wrote them
            crc = zlib.crc32(part.data, crc)
        if crc != header["crc32"]:
            return None
    except (ValueError, KeyError, TypeError, struct.error, OSError):
        return None
    return KeyMatrix(rows, keys.astype(np.float32, copy=False), ids, int(header["generation"]), z)
