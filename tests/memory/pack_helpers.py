"""Shared helpers of the pack tests: real small skills, pack file surgery, memory dumps."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import sqlite3
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from skillbank.memory.store import SkillMemory
from skillbank.types import Provenance

KEY_DIM = 8
CONFIG: dict[str, Any] = {"in_dim": 3, "hidden_dims": [5], "out_dim": 2}


def mlp_weights(rng: np.random.Generator, config: Mapping[str, Any] = CONFIG) -> dict[str, Any]:
    """Random weights with the exact tensors of ``mlp-v1`` for ``config``."""
    dims = [config["in_dim"], *config["hidden_dims"], config["out_dim"]]
    weights: dict[str, Any] = {}
    for i, (d_in, d_out) in enumerate(itertools.pairwise(dims)):
        weights[f"net.{2 * i}.weight"] = rng.standard_normal((d_out, d_in)).astype(np.float32)
        weights[f"net.{2 * i}.bias"] = rng.standard_normal(d_out).astype(np.float32)
    return weights


def populate(memory: SkillMemory, seed: int = 0, prefix: str = "s") -> list[str]:
    """Store three skills; the second has three versions (lineage). Returns their ids."""
    rng = np.random.default_rng(seed)
    ids = []
    for i in range(3):
        record = memory.add(
            f"{prefix}-skill-{i}",
            rng.standard_normal(KEY_DIM).astype(np.float32),
            "mlp-v1",
            CONFIG,
            mlp_weights(rng),
            Provenance(source="test", task=f"toy/task-{i}", extra={"seed": str(seed)}),
            tags=("test", f"t{i}"),
            skill_id=f"{prefix}{seed}-{i}",
        )
        ids.append(record.skill_id)
    for _ in range(2):
        memory.add_version(
            ids[1],
            weights=mlp_weights(rng),
            key=rng.standard_normal(KEY_DIM).astype(np.float32),
            provenance=Provenance(source="adapt", task="toy/task-1b"),
        )
    return ids


def dump_memory(path: Path) -> dict[str, Any]:
    """Every row of every table, plus the SHA-256 of every file outside the database and index."""
    rows: dict[str, Any] = {}
    uri = f"file:{path / 'skills.sqlite'}?mode=ro"
    with sqlite3.connect(uri, uri=True) as conn:
        tables = [
            name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        for table in sorted(tables):
            rows[table] = sorted(repr(row) for row in conn.execute(f'SELECT * FROM "{table}"'))
    conn.close()
    files = {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file() and not p.name.startswith("skills.sqlite") and "index" not in p.parts
    }
    return {"rows": rows, "files": files}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def reseal(files: dict[str, bytes]) -> dict[str, bytes]:
    """Recompute the manifest's file list (checksums, sizes) for the files now in ``files``."""
    manifest = json.loads(files["manifest.json"])
    manifest["files"] = {
        name: {"sha256": sha256(data), "size": len(data)}
        for name, data in sorted(files.items())
        if name != "manifest.json"
    }
    return {**files, "manifest.json": json.dumps(manifest, indent=1).encode()}


def edit_manifest(files: dict[str, bytes], edit: Any) -> dict[str, bytes]:
    """Apply ``edit(manifest_dict)`` to the manifest (no reseal needed: it lists other files)."""
    manifest = json.loads(files["manifest.json"])
    edit(manifest)
    return {**files, "manifest.json": json.dumps(manifest, indent=1).encode()}


def write_dir(files: Mapping[str, bytes], out: Path) -> Path:
    for name, data in files.items():
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return out


def write_tar(
    files: Mapping[str, bytes],
    out: Path,
    extra: list[tuple[tarfile.TarInfo, bytes]] = (),  # type: ignore[assignment]
) -> Path:
    """Write ``files`` as a .tar.gz, plus raw ``extra`` members (links, devices, odd names)."""
    with tarfile.open(out, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return out
