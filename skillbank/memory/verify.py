"""Read-only checks of a skill memory: every blob hash, every row invariant, SQLite's integrity.

Problems are reported, never fixed; the database is opened read-only. An unreferenced blob is not
a problem (``gc`` reclaims it), but a blob whose bytes do not match its name is.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skillbank.architectures import expected_tensors
from skillbank.errors import ArchitectureError, MemoryCorruptionError
from skillbank.memory.blobs import BlobStore
from skillbank.memory.weights import decode_weights, sha256_hex

__all__ = ["PROBLEM_KINDS", "Problem", "verify_memory"]

#: Every kind of problem :func:`verify_memory` reports.
PROBLEM_KINDS: tuple[str, ...] = (
    "integrity",  # SQLite's PRAGMA integrity_check failed
    "schema",  # meta rows missing or invalid
    "key",  # a key of the wrong dimension or with non-finite values
    "versions",  # version numbers not 1..n, or a parent that is not the previous version
    "latest",  # the skills row does not point at the skill's last version
    "orphan",  # versions without a skills row
    "architecture",  # unknown architecture or invalid config
    "blob_missing",  # a referenced blob is not on disk
    "blob_hash",  # a blob's bytes do not hash to its name
    "weights",  # a blob's tensors do not fit the architecture, or are not finite
)


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found by ``verify``.

    Attributes:
        kind: One of :data:`PROBLEM_KINDS`.
        skill_id: The skill concerned, or ``None`` for the memory as a whole.
        detail: One line for people.
    """

    kind: str
    skill_id: str | None
    detail: str

    def __post_init__(self) -> None:
        if self.kind not in PROBLEM_KINDS:
            raise ValueError(f"Problem.kind must be one of {PROBLEM_KINDS}, got {self.kind!r}")
        if not self.detail:
            raise ValueError("Problem.detail must be non-empty")


def _connect_read_only(db_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(
        f"{db_path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None, timeout=30.0
    )
    conn.execute("PRAGMA query_only = ON")
    return conn


def _check_chain(skill_id: str, chain: list[tuple[int, str, str | None]]) -> Iterator[Problem]:
    for expected, (version, version_id, parent) in enumerate(chain, start=1):
        if version != expected:
            yield Problem(
                "versions", skill_id, f"versions are {[c[0] for c in chain]}; expected 1..n"
            )
            return
        want = None if expected == 1 else chain[expected - 2][1]
        if parent != want:
            yield Problem(
                "versions",
                skill_id,
                f"version {version} ({version_id}) has parent {parent!r}; expected {want!r}",
            )


def _check_rows(conn: sqlite3.Connection, key_dim: int) -> Iterator[Problem]:
    """Per-version checks: keys, version chains, architectures; remember blobs to check."""
    chain: list[tuple[int, str, str | None]] = []
    current: str | None = None
    cursor = conn.execute(
        "SELECT skill_id, version, version_id, parent_version_id, key, arch_id, arch_config "
        "FROM versions ORDER BY skill_id, version"
    )
    known_configs: dict[tuple[str, str], str | None] = {}
    for skill_id, version, version_id, parent, key, arch_id, config_json in cursor:
        if skill_id != current:
            if current is not None:
                yield from _check_chain(current, chain)
            current, chain = skill_id, []
        chain.append((version, version_id, parent))
        if not isinstance(key, bytes) or len(key) != 4 * key_dim:
            size = len(key) // 4 if isinstance(key, bytes) else "?"
            yield Problem("key", skill_id, f"version {version}: key has {size} dims, not {key_dim}")
        elif not bool(np.isfinite(np.frombuffer(key, dtype="<f4")).all()):
            yield Problem("key", skill_id, f"version {version}: key holds non-finite values")
        arch_key = (arch_id, config_json)
        if arch_key not in known_configs:
            try:
                expected_tensors(arch_id, json.loads(config_json))
                known_configs[arch_key] = None
            except (ArchitectureError, ValueError) as exc:
                known_configs[arch_key] = str(exc)
        if known_configs[arch_key] is not None:
            yield Problem("architecture", skill_id, f"version {version}: {known_configs[arch_key]}")
    if current is not None:
        yield from _check_chain(current, chain)


def _check_latest(conn: sqlite3.Connection) -> Iterator[Problem]:
    for skill_id, latest, vskill, version, max_version in conn.execute(
        "SELECT s.skill_id, s.latest_row, v.skill_id, v.version, "
        "(SELECT MAX(version) FROM versions WHERE skill_id = s.skill_id) "
        "FROM skills s LEFT JOIN versions v ON v.row = s.latest_row"
    ):
        if vskill != skill_id or version != max_version:
            yield Problem(
                "latest",
                skill_id,
                f"latest_row {latest} is not the skill's last version (version {version} of "
                f"{vskill!r}; last is {max_version})",
            )
    for (skill_id,) in conn.execute(
        "SELECT DISTINCT skill_id FROM versions WHERE skill_id NOT IN (SELECT skill_id FROM skills)"
    ):
        yield Problem("orphan", skill_id, "versions exist but the skill has no skills row")


def _check_blobs(conn: sqlite3.Connection, blobs: BlobStore) -> Iterator[Problem]:
    on_disk: dict[str, Path] = {}
    bad_hash: set[str] = set()
    for sha, path in blobs.iter_blobs():
        on_disk[sha] = path
        if sha256_hex(path.read_bytes()) != sha:
            bad_hash.add(sha)
    uses: dict[tuple[str, str, str], str] = {}  # (sha, arch_id, config) -> a skill using it
    for sha, arch_id, config_json, skill_id in conn.execute(
        "SELECT weights_sha256, arch_id, arch_config, MIN(skill_id) FROM versions "
        "GROUP BY weights_sha256, arch_id, arch_config"
    ):
        uses[(sha, arch_id, config_json)] = skill_id
    referenced = {sha for sha, _, _ in uses}
    for sha in sorted(bad_hash):
        owner = next((s for (h, _, _), s in uses.items() if h == sha), None)
        detail = f"blob {on_disk[sha]} does not match its SHA-256"
        yield Problem("blob_hash", owner, detail + ("" if sha in referenced else " (unreferenced)"))
    for (sha, arch_id, config_json), skill_id in sorted(uses.items()):
        if sha not in on_disk:
            yield Problem("blob_missing", skill_id, f"blob {sha} is missing")
            continue
        if sha in bad_hash:
            continue
        config: Any = json.loads(config_json)
        try:
            decode_weights(on_disk[sha].read_bytes(), arch_id, config, where=f"blob {sha}")
        except ArchitectureError as exc:
            yield Problem("weights", skill_id, exc.message)


def verify_memory(db_path: Path, blobs: BlobStore) -> list[Problem]:
    """Check the memory whose database is ``db_path`` and whose blobs are ``blobs``.

    Returns:
        Every problem found; empty when the memory is sound.

    Raises:
        MemoryCorruptionError: the database cannot be opened at all.
    """
    try:
        conn = _connect_read_only(db_path)
    except sqlite3.Error as exc:
        raise MemoryCorruptionError(f"{db_path}: cannot open the database ({exc})") from None
    problems: list[Problem] = []
    try:
        conn.execute("BEGIN")  # one snapshot for every check
        result = [r[0] for r in conn.execute("PRAGMA integrity_check")]
        if result != ["ok"]:
            problems.extend(Problem("integrity", None, line) for line in result[:20])
            return problems
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        key_dim = meta.get("key_dim")
        if not isinstance(meta.get("generation"), int):
            problems.append(Problem("schema", None, "meta row 'generation' is missing"))
        has_rows = conn.execute("SELECT EXISTS (SELECT 1 FROM versions)").fetchone()[0]
        if has_rows and not (isinstance(key_dim, int) and key_dim > 0):
            problems.append(Problem("schema", None, f"meta key_dim is {key_dim!r}"))
            key_dim = -1
        problems.extend(_check_rows(conn, key_dim if isinstance(key_dim, int) else -1))
        problems.extend(_check_latest(conn))
        problems.extend(_check_blobs(conn, blobs))
    except sqlite3.DatabaseError as exc:
        problems.append(Problem("integrity", None, f"database error: {exc}"))
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")
        conn.close()
    return problems
