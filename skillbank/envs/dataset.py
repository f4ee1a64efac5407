"""Demonstration datasets on disk: one lossless, pickle-free file per seed plus a manifest.

Layout of a dataset directory::

    DIR/
      dataset.json            manifest (format version, env id, demonstrator, every file's hash)
      failures.jsonl          seeds the demonstrator failed on, one JSON line each (resume)
      episodes/
        seed-0000000007.npz   one episode

Episode files are described in :mod:`skillbank.envs.episode_file` (lossless, pickle-free, the
same episode always gives the same bytes), the manifest in :mod:`skillbank.envs.dataset_manifest`.
This module writes and reads whole datasets and re-exports what a caller needs.

Every write is atomic (temporary file, fsync, ``os.replace``). A dataset that fails a check —
missing file, hash or size mismatch, truncated zip, bad JSON, unknown format version — raises
:class:`~skillbank.errors.DatasetError` naming the file and what is wrong.

Example:
    >>> writer = DatasetWriter(root, env_id="toy/fetch", demonstrator="toy")  # doctest: +SKIP
    >>> for seed in range(100):  # doctest: +SKIP
    ...     if not writer.has(seed):
    ...         episode = source.demonstrate(seed)
    ...         writer.write(episode) if episode else writer.log_failure(seed, "no solution")
    >>> info = writer.close()  # doctest: +SKIP
    >>> dataset = load_dataset(root)  # doctest: +SKIP
    >>> dataset[0].observations["obs"].shape  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import overload

from skillbank.envs.dataset_manifest import (
    MANIFEST_NAME,
    DatasetInfo,
    EpisodeRecord,
    dataset_hash,
    dataset_info,
    manifest_bytes,
)
from skillbank.envs.episode_file import (
    EPISODES_DIR,
    FORMAT_VERSION,
    decode_episode,
    encode_episode,
    episode_filename,
    write_file_atomic,
)
from skillbank.errors import DatasetError
from skillbank.types import Episode

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "Dataset",
    "DatasetInfo",
    "DatasetWriter",
    "EpisodeRecord",
    "dataset_hash",
    "dataset_info",
    "decode_episode",
    "encode_episode",
    "episode_filename",
    "load_dataset",
]

logger = logging.getLogger(__name__)

_FAILURES_NAME = "failures.jsonl"
_WRITER_FILES = frozenset({EPISODES_DIR, _FAILURES_NAME, MANIFEST_NAME})


def _foreign_entries(root: Path) -> list[str]:
    """Entries of ``root`` that no dataset writer makes (hidden temporary files excepted)."""
    return sorted(
        p.name for p in root.iterdir() if p.name not in _WRITER_FILES and not p.name.startswith(".")
    )


# --- writing --------------------------------------------------------------------------------------


class DatasetWriter:
    """Writes one episode file per seed, resumably, then the manifest.

    Reopening a directory that already holds a dataset of the same ``env_id`` and demonstrator
    resumes it: :meth:`has` reports the seeds already written, and :meth:`close` lists every
    episode file present, old and new.

    Args:
        root: Dataset directory (created if missing).
        env_id: Canonical environment id; every written episode must have it.
        demonstrator: Who produces the episodes; every written episode must have it.
        meta: Free string facts stored in the manifest (merged over those already there).

    Raises:
        DatasetError: If ``root`` holds a dataset of another env id or demonstrator, or an
            unreadable manifest.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        env_id: str,
        demonstrator: str,
        meta: Mapping[str, str] | None = None,
    ) -> None:
        if not env_id or not demonstrator:
            raise ValueError("env_id and demonstrator must be non-empty strings")
        self.root = Path(root)
        self.env_id = env_id
        self.demonstrator = demonstrator
        self._meta: dict[str, str] = {}
        self._records: dict[str, EpisodeRecord] = {}  # file -> record, for files written here
        self._failures: dict[int, str] = {}
        self._closed = False

        if (self.root / MANIFEST_NAME).exists():
            old = dataset_info(self.root)
            if (old.env_id, old.demonstrator) != (env_id, demonstrator):
                raise DatasetError(
                    f"{self.root / MANIFEST_NAME}: holds {old.env_id} by {old.demonstrator}, not "
                    f"{env_id} by {demonstrator}",
                    hint="choose another --out directory",
                )
            self._meta.update(old.meta)
            self._failures.update(old.failures)
        elif self.root.exists() and _foreign_entries(self.root):
            # Only a writer's own files (another writer of this dataset starting at the same
            # time) may precede the manifest.
            raise DatasetError(
                f"{self.root}: directory is not empty and holds no {MANIFEST_NAME}",
                hint="choose an empty or new --out directory",
            )
        if meta:
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
                raise ValueError("meta must map strings to strings")
            self._meta.update(meta)
        (self.root / EPISODES_DIR).mkdir(parents=True, exist_ok=True)
        self._failures.update(self._read_failure_log())
        if not (self.root / MANIFEST_NAME).exists():
            self._write_manifest()  # marks the directory as this dataset from the start

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._closed:
            self.close()

    def has(self, seed: int) -> bool:
        """True when the episode for ``seed`` is already written."""
        return (self.root / episode_filename(seed)).is_file()

    def has_failure(self, seed: int) -> bool:
        """True when ``seed`` was logged as a failure (and has no episode)."""
        return seed in self._failures and not self.has(seed)

    def write(self, episode: Episode) -> None:
        """Write the episode's file atomically (replacing an earlier one for the same seed).

        Raises:
            ValueError: If the episode is of another env id or demonstrator, or holds object arrays.
        """
        self._check_open()
        if episode.task.env_id != self.env_id:
            raise ValueError(
                f"episode of seed {episode.seed} is of {episode.task.env_id!r}; this dataset "
                f"holds {self.env_id!r}"
            )
        if episode.demonstrator != self.demonstrator:
            raise ValueError(
                f"episode of seed {episode.seed} is by {episode.demonstrator!r}; this dataset "
                f"holds episodes by {self.demonstrator!r}"
            )
        name = episode_filename(episode.seed)
        data = encode_episode(episode)
        write_file_atomic(self.root / name, data)
        self._records[name] = EpisodeRecord(
            seed=episode.seed,
            file=name,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            num_steps=episode.num_steps,
            success=bool(episode.success),
            state_only=episode.state_only,
        )
        self._failures.pop(episode.seed, None)

    def log_failure(self, seed: int, reason: str) -> None:
        """Record that the demonstrator produced no episode for ``seed``, and why (one line)."""
        self._check_open()
        episode_filename(seed)  # validates the seed
        reason = " ".join(reason.split()) or "unknown"
        self._failures[seed] = reason
        logger.info("%s seed %d: %s", self.env_id, seed, reason)
        with open(self.root / _FAILURES_NAME, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"seed": seed, "reason": reason}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def close(self) -> DatasetInfo:
        """Hash every episode file present and write the manifest atomically.

        Returns:
            The dataset's :class:`DatasetInfo`.
        """
        self._check_open()
        info = self._write_manifest()
        self._closed = True
        return info

    # --- internals ---

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"DatasetWriter for {self.root} is closed")

    def _read_failure_log(self) -> dict[int, str]:
        path = self.root / _FAILURES_NAME
        failures: dict[int, str] = {}
        if not path.is_file():
            return failures
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                failures[int(entry["seed"])] = str(entry["reason"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue  # a line cut short by an interruption
        return failures

    def _write_manifest(self) -> DatasetInfo:
        records: list[EpisodeRecord] = []
        for path in sorted((self.root / EPISODES_DIR).glob("seed-*.npz")):
            name = f"{EPISODES_DIR}/{path.name}"
            data = path.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            known = self._records.get(name)
            if known is not None and known.sha256 == sha:
                records.append(known)
                continue
            # A file from an earlier, interrupted run: check it decodes before listing it.
            episode = decode_episode(data, where=str(path))
            if name != episode_filename(episode.seed):
                raise DatasetError(f"{path}: holds the episode of seed {episode.seed}")
            records.append(
                EpisodeRecord(
                    seed=episode.seed,
                    file=name,
                    sha256=sha,
                    size=len(data),
                    num_steps=episode.num_steps,
                    success=bool(episode.success),
                    state_only=episode.state_only,
                )
            )
        records.sort(key=lambda r: r.seed)  # file names sort by seed only up to 10 digits
        self._failures.update(self._read_failure_log())  # failures other writers logged
        stored = {r.seed for r in records}
        info = DatasetInfo(
            root=self.root,
            format_version=FORMAT_VERSION,
            env_id=self.env_id,
            demonstrator=self.demonstrator,
            meta=dict(self._meta),
            episodes=tuple(records),
            failures={s: r for s, r in self._failures.items() if s not in stored},
        )
        write_file_atomic(self.root / MANIFEST_NAME, manifest_bytes(info))
        return info


# --- reading --------------------------------------------------------------------------------------


class Dataset(Sequence[Episode]):
    """A stored dataset: a lazy sequence of episodes, sorted by seed; one file read per item.

    Build one with :func:`load_dataset`. Every item read is checked against the manifest's size
    and SHA-256.
    """

    def __init__(self, info: DatasetInfo) -> None:
        self.info = info
        self.root = info.root

    def __repr__(self) -> str:
        return f"Dataset({str(self.root)!r}, env_id={self.info.env_id!r}, episodes={len(self)})"

    def __len__(self) -> int:
        return len(self.info.episodes)

    @overload
    def __getitem__(self, index: int) -> Episode: ...

    @overload
    def __getitem__(self, index: slice) -> list[Episode]: ...

    def __getitem__(self, index: int | slice) -> Episode | list[Episode]:
        if isinstance(index, slice):
            return [self._load(r) for r in self.info.episodes[index]]
        return self._load(self.info.episodes[index])

    def __iter__(self) -> Iterator[Episode]:
        for record in self.info.episodes:
            yield self._load(record)

    @property
    def seeds(self) -> tuple[int, ...]:
        """Seeds of the stored episodes, ascending."""
        return self.info.seeds

    def by_seed(self, seed: int) -> Episode:
        """The episode of ``seed``.

        Raises:
            KeyError: If the dataset has no episode for that seed.
        """
        for record in self.info.episodes:
            if record.seed == seed:
                return self._load(record)
        raise KeyError(f"{self.root}: no episode for seed {seed}")

    def _load(self, record: EpisodeRecord) -> Episode:
        data = _read_checked(self.root, record)
        episode = decode_episode(data, where=str(self.root / record.file))
        if episode.seed != record.seed:
            raise DatasetError(
                f"{self.root / record.file}: holds seed {episode.seed}, manifest says {record.seed}"
            )
        return episode


def _read_checked(root: Path, record: EpisodeRecord) -> bytes:
    path = root / record.file
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: episode file listed in the manifest is missing") from None
    if len(data) != record.size:
        raise DatasetError(
            f"{path}: {len(data)} bytes, manifest says {record.size} (truncated or replaced)"
        )
    sha = hashlib.sha256(data).hexdigest()
    if sha != record.sha256:
        raise DatasetError(f"{path}: SHA-256 {sha[:12]}… does not match the manifest")
    return data


def load_dataset(root: Path | str, *, verify: bool = True) -> Dataset:
    """Open the dataset at ``root``.

    Args:
        root: Dataset directory.
        verify: Read and hash every episode file now (each item is checked again when read).

    Raises:
        DatasetError: On a missing or malformed manifest, a missing, truncated or altered file.

    Example:
        >>> dataset = load_dataset("demos/toy-fetch")  # doctest: +SKIP
        >>> len(dataset), dataset.info.env_id  # doctest: +SKIP
        (100, 'toy/fetch')
    """
    info = dataset_info(root)
    for record in info.episodes:
        if verify:
            _read_checked(info.root, record)
        elif not (info.root / record.file).is_file():
            raise DatasetError(
                f"{info.root / record.file}: episode file listed in the manifest is missing"
            )
    return Dataset(info)
