"""The SQLite schema of a skill memory, its connection settings, and row <-> record conversion.

Tables:

- ``meta(key, value)``: ``memory_id`` (random, names the caches), ``key_dim`` (fixed by the
  first skill) and
  ``generation``, a counter every write that changes the set of latest keys bumps; caches of the
  key matrix and the approximate index are valid only for the generation they were built at.
- ``versions``: one row per skill version. ``row`` (AUTOINCREMENT, so never reused) labels the key
  in caches and indexes; ``key`` is the (Z,) float32 little-endian key as a BLOB.
- ``skills``: one row per skill: its latest version's ``row`` and the usage counters.
- ``removed_rows(generation, row)``: rows that stopped being latest (superseded or deleted) at a
  generation, so a cache built at generation g can be brought up to date without a full reload.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from skillbank.types import Provenance, SkillRecord, UsageStats

__all__ = [
    "DB_NAME",
    "RECORD_COLUMNS",
    "SCHEMA_VERSION",
    "check_skill_id",
    "connect",
    "dumps_json",
    "ensure_schema",
    "provenance_from_json",
    "provenance_to_json",
    "record_from_row",
]

DB_NAME = "skills.sqlite"
SCHEMA_VERSION = 1

_DDL = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER
);
CREATE TABLE IF NOT EXISTS versions (
    row INTEGER PRIMARY KEY AUTOINCREMENT,
    version_id TEXT NOT NULL UNIQUE,
    skill_id TEXT NOT NULL,
    version INTEGER NOT NULL CHECK (version >= 1),
    parent_version_id TEXT,
    name TEXT NOT NULL,
    key BLOB NOT NULL,
    arch_id TEXT NOT NULL,
    arch_config TEXT NOT NULL,
    weights_sha256 TEXT NOT NULL,
    provenance TEXT NOT NULL,
    task TEXT NOT NULL,
    tags TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (skill_id, version)
);
CREATE TABLE IF NOT EXISTS skills (
    skill_id TEXT PRIMARY KEY,
    latest_row INTEGER NOT NULL UNIQUE,
    num_retrieved INTEGER NOT NULL DEFAULT 0,
    num_executed INTEGER NOT NULL DEFAULT 0,
    num_succeeded INTEGER NOT NULL DEFAULT 0,
    last_used REAL
);
CREATE TABLE IF NOT EXISTS removed_rows (
    generation INTEGER NOT NULL,
    row INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS removed_rows_generation ON removed_rows (generation);
CREATE INDEX IF NOT EXISTS versions_weights ON versions (weights_sha256);
"""

#: Columns of ``versions`` (alias v) joined with ``skills`` (alias s) that build a SkillRecord.
RECORD_COLUMNS = (
    "v.skill_id, v.version, v.version_id, v.name, v.key, v.arch_id, v.arch_config, "
    "v.weights_sha256, v.provenance, v.created_at, v.parent_version_id, v.tags, "
    "s.num_retrieved, s.num_executed, s.num_succeeded, s.last_used, v.row"
)

_SKILL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_skill_id(skill_id: str, field: str = "skill_id") -> str:
    """Return ``skill_id`` if it is 1-128 chars of ``[A-Za-z0-9._-]`` starting alphanumeric."""
    if not isinstance(skill_id, str) or not _SKILL_ID.fullmatch(skill_id):
        raise ValueError(
            f"{field} {skill_id!r} must be 1-128 characters of A-Z a-z 0-9 . _ - "
            "starting with a letter or digit"
        )
    return skill_id


def connect(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """Open the database in autocommit mode (transactions are explicit) with WAL and FULL sync."""
    conn = sqlite3.connect(
        str(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    mode = _switch_to_wal(conn, busy_timeout_s)
    if str(mode).lower() != "wal":
        conn.close()
        raise sqlite3.OperationalError(f"could not switch {path} to WAL mode (got {mode})")
    conn.execute("PRAGMA synchronous = FULL")
    # 64 MiB page cache (default 2 MiB): the id indexes of a 1e6-skill memory are random-access.
    conn.execute("PRAGMA cache_size = -65536")
    return conn


def _switch_to_wal(conn: sqlite3.Connection, busy_timeout_s: float) -> str:
    """Set WAL mode, retrying while another process holds the lock.

    Switching a new database to WAL needs an exclusive lock, and SQLite answers SQLITE_BUSY at
    once, without calling the busy handler, when that would mean upgrading a shared lock while
    another connection waits: processes racing to create one memory hit exactly that.
    """
    deadline = time.monotonic() + busy_timeout_s
    delay = 0.005
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            busy = "locked" in str(exc) or "busy" in str(exc)
            if not busy or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay * (1.0 + random.random()))  # jitter: racers must not retry in step
        delay = min(delay * 2, 0.25)


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the tables if missing (idempotent, safe when several processes race to create)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            for statement in _DDL.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', 0)")
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('key_dim', NULL)")
            conn.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('memory_id', ?)",
                (secrets.randbits(62),),
            )
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {version} is not supported (this skillbank reads {SCHEMA_VERSION})"
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def dumps_json(value: Any, field: str) -> str:
    """Canonical JSON (sorted keys, no NaN); ``ValueError`` naming ``field`` if not JSON."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{field} must be JSON-serializable: {exc}") from None


def provenance_to_json(provenance: Provenance) -> str:
    """Provenance as canonical JSON."""
    return dumps_json(
        {
            "source": provenance.source,
            "task": provenance.task,
            "dataset_hash": provenance.dataset_hash,
            "extra": dict(provenance.extra),
        },
        "provenance",
    )


def provenance_from_json(text: str) -> Provenance:
    """Inverse of :func:`provenance_to_json`."""
    raw: Mapping[str, Any] = json.loads(text)
    return Provenance(
        source=raw["source"],
        task=raw.get("task", ""),
        dataset_hash=raw.get("dataset_hash", ""),
        extra=dict(raw.get("extra", {})),
    )


def record_from_row(row: Sequence[Any]) -> SkillRecord:
    """Build a SkillRecord from a row selected with :data:`RECORD_COLUMNS`."""
    key = np.frombuffer(row[4], dtype="<f4").astype(np.float32)  # (Z,), a writable copy
    return SkillRecord(
        skill_id=row[0],
        version=row[1],
        version_id=row[2],
        name=row[3],
        key=key,
        arch_id=row[5],
        arch_config=json.loads(row[6]),
        weights_sha256=row[7],
        provenance=provenance_from_json(row[8]),
        created_at=row[9],
        parent_version_id=row[10],
        tags=tuple(json.loads(row[11])),
        usage=UsageStats(
            num_retrieved=row[12],
            num_executed=row[13],
            num_succeeded=row[14],
            last_used=row[15],
        ),
    )
