"""Demonstration datasets on disk: one lossless, pickle-free file per seed plus a manifest.

Layout of a dataset directory::

    DIR/
      dataset.json            manifest (format version, env id, demonstrator, every file's hash)
      failures.jsonl          seeds the demonstrator failed on, one JSON line each (resume)
      episodes/
        seed-0000000007.npz   one episode

An episode file is a zip of ``.npy`` arrays that :func:`numpy.load` reads with
``allow_pickle=False``: ``observations/<name>`` (T+1, ...), ``actions`` (T, ...; absent for a
state-only episode), ``rewards`` (T,), ``terminations`` (T,), ``truncations`` (T,) and ``meta``, a
UTF-8 JSON document (task, seed, success, demonstrator, annotations, observation order) stored as a
uint8 array. Entries carry a fixed timestamp and a fixed order, so the same episode always gives the
same bytes; arrays keep their dtype (images stay uint8), so storage is lossless.

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
import io
import json
import logging
import os
import threading
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np
import numpy.typing as npt

from skillbank.errors import DatasetError
from skillbank.types import Episode, SubgoalAnnotation, TaskSpec

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

FORMAT_VERSION = 1
"""Version of the on-disk format (manifest and episode files); bumped on any incompatible change."""

MANIFEST_NAME = "dataset.json"
_FAILURES_NAME = "failures.jsonl"
_EPISODES_DIR = "episodes"
_WRITER_FILES = frozenset({_EPISODES_DIR, _FAILURES_NAME, MANIFEST_NAME})
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the zip epoch: no wall-clock time inside episode files
_OBS_PREFIX = "observations/"


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


# --- episode files --------------------------------------------------------------------------------


def episode_filename(seed: int) -> str:
    """Path of the episode file for ``seed``, relative to the dataset root."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return f"{_EPISODES_DIR}/seed-{seed:010d}.npz"


def _check_array(name: str, array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise ValueError(f"episode array {name!r} has dtype object; only plain dtypes are stored")
    return np.ascontiguousarray(array)


def _episode_meta(episode: Episode) -> dict[str, Any]:
    annotations = episode.annotations
    return {
        "format_version": FORMAT_VERSION,
        "env_id": episode.task.env_id,
        "mission": episode.task.mission,
        "success": bool(episode.success),
        "seed": int(episode.seed),
        "demonstrator": episode.demonstrator,
        "observation_keys": list(episode.observations),
        "state_only": episode.actions is None,
        "annotations": None
        if annotations is None
        else {"boundaries": list(annotations.boundaries), "labels": list(annotations.labels)},
    }


def encode_episode(episode: Episode) -> bytes:
    """Serialise an episode to the bytes of its file; the same episode always gives the same bytes.

    Raises:
        ValueError: If an array has an object dtype.
    """
    arrays: list[tuple[str, npt.NDArray[Any]]] = [
        (f"{_OBS_PREFIX}{name}", _check_array(f"observations[{name!r}]", value))
        for name, value in episode.observations.items()
    ]
    if episode.actions is not None:
        arrays.append(("actions", _check_array("actions", episode.actions)))
    arrays += [
        ("rewards", _check_array("rewards", episode.rewards)),
        ("terminations", _check_array("terminations", episode.terminations)),
        ("truncations", _check_array("truncations", episode.truncations)),
    ]
    meta = json.dumps(_episode_meta(episode), sort_keys=True, separators=(",", ":"))
    arrays.append(("meta", np.frombuffer(meta.encode(), dtype=np.uint8)))

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for name, array in arrays:
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return buffer.getvalue()


def decode_episode(data: bytes, *, where: str = "<bytes>") -> Episode:
    """Rebuild an episode from the bytes of its file.

    Args:
        data: The file's bytes.
        where: The file's name, used in error messages.

    Raises:
        DatasetError: If the bytes are not a valid episode file (truncated, bad JSON, wrong
            format version, missing arrays, object arrays).
    """
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
        raise DatasetError(
            f"{where}: not a readable episode file ({type(exc).__name__}: {exc})"
        ) from exc
    if "meta" not in arrays:
        raise DatasetError(f"{where}: episode file has no 'meta' entry")
    try:
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{where}: episode metadata is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise DatasetError(f"{where}: episode metadata must be a JSON object")
    if meta.get("format_version") != FORMAT_VERSION:
        raise DatasetError(
            f"{where}: episode format version {meta.get('format_version')!r}; this skillbank "
            f"reads version {FORMAT_VERSION}",
            hint="re-collect or convert the dataset with a matching skillbank version",
        )
    try:
        observations = {key: arrays.pop(f"{_OBS_PREFIX}{key}") for key in meta["observation_keys"]}
        actions = None if meta["state_only"] else arrays.pop("actions")
        notes = meta["annotations"]
        annotations = (
            None
            if notes is None
            else SubgoalAnnotation(
                boundaries=tuple(int(b) for b in notes["boundaries"]),
                labels=tuple(str(label) for label in notes["labels"]),
            )
        )
        return Episode(
            observations=observations,
            actions=actions,
            rewards=arrays.pop("rewards"),
            terminations=arrays.pop("terminations"),
            truncations=arrays.pop("truncations"),
            task=TaskSpec(env_id=meta["env_id"], mission=meta["mission"]),
            success=bool(meta["success"]),
            seed=int(meta["seed"]),
            demonstrator=meta["demonstrator"],
            annotations=annotations,
        )
    except KeyError as exc:
        raise DatasetError(f"{where}: episode file lacks {exc.args[0]!r}") from exc
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{where}: inconsistent episode ({exc})") from exc


def _foreign_entries(root: Path) -> list[str]:
    """Entries of ``root`` that no dataset writer makes (hidden temporary files excepted)."""
    return sorted(
        p.name for p in root.iterdir() if p.name not in _WRITER_FILES and not p.name.startswith(".")
    )


# --- atomic writes --------------------------------------------------------------------------------


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a mix."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms without directory handles
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- manifest -------------------------------------------------------------------------------------


def _manifest_json(info: DatasetInfo) -> bytes:
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
        (self.root / _EPISODES_DIR).mkdir(parents=True, exist_ok=True)
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
        _atomic_write(self.root / name, data)
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
        for path in sorted((self.root / _EPISODES_DIR).glob("seed-*.npz")):
            name = f"{_EPISODES_DIR}/{path.name}"
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
        _atomic_write(self.root / MANIFEST_NAME, _manifest_json(info))
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
