"""The manifest of a demonstration dataset: what it holds and the hash of every file.

``DIR/dataset.json`` lists the format version, env id, demonstrator, free string facts, one record
per episode file (seed, path, SHA-256, size, steps, success, state-only) and the seeds the
demonstrator failed on. It is written atomically and deterministically (no timestamps), so the
same episodes give the same manifest and the same :func:`dataset_hash`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from skillbank.envs.episode_file import FORMAT_VERSION
from skillbank.errors import DatasetError

__all__ = [
    "MANIFEST_NAME",
    "DatasetInfo",
    "EpisodeRecord",
    "dataset_hash",
    "dataset_info",
    "manifest_bytes",
]

MANIFEST_NAME = "dataset.json"
"""File name of the manifest inside a dataset directory."""


# --- records --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EpisodeRecord:
    """One episode file as the manifest lists it.

    Attributes:
        seed: The environment seed of the episode.
        file: Path of the file relative to the dataset root (``episodes/seed-....npz``).
        sha256: SHA-256 of the file's bytes (64 hex chars).
        size: Size of the file in bytes.
        num_steps: T, the number of steps.
        success: Whether the demonstrator succeeded.
        state_only: True when the episode has no actions.
    """

    seed: int
    file: str
    sha256: str
    size: int
    num_steps: int
    success: bool
    state_only: bool

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ValueError(f"EpisodeRecord.seed must be >= 0, got {self.seed}")
        if len(self.sha256) != 64:
            raise ValueError("EpisodeRecord.sha256 must be 64 hex chars")
        if self.size < 0 or self.num_steps < 0:
            raise ValueError("EpisodeRecord.size and .num_steps must be >= 0")


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """What the manifest of a dataset says.

    Attributes:
        root: The dataset directory.
        format_version: On-disk format version.
        env_id: Canonical environment id of every episode, e.g. ``"babyai/GoToLocal"``.
        demonstrator: Who produced the episodes, e.g. ``"babyai-bot"``.
        meta: Free string facts (collection command, versions, ...).
        episodes: One record per episode file, sorted by seed.
        failures: Seed -> why the demonstrator produced no episode for it.
    """

    root: Path
    format_version: int
    env_id: str
    demonstrator: str
    meta: Mapping[str, str] = field(default_factory=dict)
    episodes: tuple[EpisodeRecord, ...] = ()
    failures: Mapping[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.env_id:
            raise ValueError("DatasetInfo.env_id must be a non-empty string")
        if not self.demonstrator:
            raise ValueError("DatasetInfo.demonstrator must be a non-empty string")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.meta.items()):
            raise ValueError("DatasetInfo.meta must map strings to strings")
        seeds = [r.seed for r in self.episodes]
        if seeds != sorted(set(seeds)):
            raise ValueError("DatasetInfo.episodes must be sorted by seed, one per seed")

    @property
    def seeds(self) -> tuple[int, ...]:
        """Seeds of the stored episodes, ascending."""
        return tuple(r.seed for r in self.episodes)

    @property
    def num_episodes(self) -> int:
        """Number of stored episodes."""
        return len(self.episodes)

    @property
    def num_steps(self) -> int:
        """Total steps over every stored episode."""
        return sum(r.num_steps for r in self.episodes)

    @property
    def num_success(self) -> int:
        """Stored episodes in which the demonstrator succeeded."""
        return sum(r.success for r in self.episodes)

    @property
    def success_rate(self) -> float:
        """Successful episodes over attempts (stored episodes plus logged failures); 0 if none."""
        attempts = len(self.episodes) + len(self.failures)
        return self.num_success / attempts if attempts else 0.0

    @property
    def state_only(self) -> bool:
        """True when every stored episode lacks actions (and there is at least one)."""
        return bool(self.episodes) and all(r.state_only for r in self.episodes)

    @property
    def hash(self) -> str:
        """SHA-256 over the seeds and file hashes: identifies the dataset's content."""
        digest = hashlib.sha256()
        for record in self.episodes:
            digest.update(f"{record.seed}:{record.sha256}\n".encode())
        return digest.hexdigest()


# --- manifest -------------------------------------------------------------------------------------


def manifest_bytes(info: DatasetInfo) -> bytes:
    """The manifest of ``info`` as UTF-8 JSON (sorted keys, so deterministic)."""
    payload = {
        "format_version": info.format_version,
        "env_id": info.env_id,
        "demonstrator": info.demonstrator,
        "meta": dict(sorted(info.meta.items())),
        "seeds": list(info.seeds),
        "episodes": [
            {
                "seed": r.seed,
                "file": r.file,
                "sha256": r.sha256,
                "size": r.size,
                "num_steps": r.num_steps,
                "success": r.success,
                "state_only": r.state_only,
            }
            for r in info.episodes
        ],
        "failures": [{"seed": s, "reason": info.failures[s]} for s in sorted(info.failures)],
        "num_episodes": info.num_episodes,
        "num_steps": info.num_steps,
        "success_rate": info.success_rate,
        "dataset_hash": info.hash,
    }
    return (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode()


def dataset_info(root: Path | str) -> DatasetInfo:
    """Read and check the manifest of the dataset at ``root`` (files are not hashed here).

    Raises:
        DatasetError: If the manifest is missing, not valid JSON, of another format version, or
            malformed.
    """
    root = Path(root)
    path = root / MANIFEST_NAME
    if not root.is_dir():
        raise DatasetError(
            f"{root}: no such dataset directory",
            hint="check the path, or collect one with `skillbank demos collect`",
        )
    if not path.is_file():
        raise DatasetError(
            f"{path}: no dataset manifest (is {root} a skillbank dataset?)",
            hint="collect one with `skillbank demos collect`, or finish an interrupted one by "
            "running the same command again",
        )
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: manifest is not valid JSON ({exc})") from exc
    if not isinstance(payload, dict):
        raise DatasetError(f"{path}: manifest must be a JSON object")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise DatasetError(
            f"{path}: format version {version!r}; this skillbank reads version {FORMAT_VERSION}",
            hint="re-collect or convert the dataset with a matching skillbank version",
        )
    try:
        episodes = tuple(
            EpisodeRecord(
                seed=int(e["seed"]),
                file=str(e["file"]),
                sha256=str(e["sha256"]),
                size=int(e["size"]),
                num_steps=int(e["num_steps"]),
                success=bool(e["success"]),
                state_only=bool(e["state_only"]),
            )
            for e in payload["episodes"]
        )
        failures = {int(f["seed"]): str(f["reason"]) for f in payload["failures"]}
        return DatasetInfo(
            root=root,
            format_version=version,
            env_id=str(payload["env_id"]),
            demonstrator=str(payload["demonstrator"]),
            meta={str(k): str(v) for k, v in payload["meta"].items()},
            episodes=episodes,
            failures=failures,
        )
    except KeyError as exc:
        raise DatasetError(f"{path}: manifest lacks the field {exc.args[0]!r}") from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise DatasetError(f"{path}: malformed manifest ({exc})") from exc


def dataset_hash(root: Path | str) -> str:
    """SHA-256 over the manifest's seeds and file hashes: the provenance id of a dataset."""
    return dataset_info(root).hash
