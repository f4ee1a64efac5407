"""One demonstration episode as one lossless, pickle-free file (the bytes of a ``.npz``).

The file is a zip of ``.npy`` arrays that :func:`numpy.load` reads with ``allow_pickle=False``:
``observations/<name>`` (T+1, ...), ``actions`` (T, ...; absent for a state-only episode),
``rewards`` (T,), ``terminations`` (T,), ``truncations`` (T,) and ``meta``, a UTF-8 JSON document
(format version, task, seed, success, demonstrator, annotations, observation order) stored as a
uint8 array. Entries carry a fixed timestamp and a fixed order, so the same episode always gives
the same bytes; arrays keep their dtype (images stay uint8), so storage is lossless.

Example:
    >>> data = encode_episode(episode)  # doctest: +SKIP
    >>> decode_episode(data).seed == episode.seed  # doctest: +SKIP
    True
"""

from __future__ import annotations

import io
import json
import os
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from skillbank.errors import DatasetError
from skillbank.types import Episode, SubgoalAnnotation, TaskSpec

__all__ = [
    "EPISODES_DIR",
    "FORMAT_VERSION",
    "decode_episode",
    "encode_episode",
    "episode_filename",
    "write_file_atomic",
]

FORMAT_VERSION = 1
"""Version of the on-disk format (manifest and episode files); bumped on any incompatible change."""

EPISODES_DIR = "episodes"
"""Folder of a dataset that holds the episode files."""

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the zip epoch: no wall-clock time inside episode files
_OBS_PREFIX = "observations/"


# --- episode files --------------------------------------------------------------------------------


def episode_filename(seed: int) -> str:
    """Path of the episode file for ``seed``, relative to the dataset root."""
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    return f"{EPISODES_DIR}/seed-{seed:010d}.npz"


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


# --- atomic writes --------------------------------------------------------------------------------


def write_file_atomic(path: Path, data: bytes) -> None:
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
