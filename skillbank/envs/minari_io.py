"""Round trips between skillbank datasets and local Minari datasets (no remote hub).

A Minari dataset lives at ``ROOT/<dataset id>/data`` where ROOT is the ``root`` argument, else
``$MINARI_DATASETS_PATH``, else ``~/.minari/datasets`` (Minari's own rule). Export writes HDF5
without JPEG encoding, so images stay exact; every array keeps its dtype.

What Minari has no field for travels as JSON: the dataset's metadata holds ``"skillbank"``
(format version, env id, demonstrator, meta, failures), and each episode's metadata holds
``"skillbank"`` (task, mission, seed, success, demonstrator, annotations, observation order,
state-only flag). A state-only episode is stored with zero actions of the dataset's action shape
and comes back with ``actions=None``. Importing a Minari dataset skillbank did not write works
too: episode seeds come from Minari's episode metadata (else the episode index), success from
``infos["success"]`` (else the last termination).

minari (and h5py) are imported lazily; without them these functions raise
:class:`~skillbank.errors.MissingExtraError`.

Example:
    >>> path = export_minari("demos/toy-fetch", root="minari-data")  # doctest: +SKIP
    >>> name = "skillbank/toy-fetch-v0"
    >>> info = import_minari(name, "demos/copy", root="minari-data")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt

from skillbank.envs.dataset import Dataset, DatasetInfo, DatasetWriter, load_dataset
from skillbank.errors import DatasetError, MissingExtraError
from skillbank.types import Episode, SubgoalAnnotation, TaskSpec

__all__ = ["default_minari_name", "export_minari", "import_minari", "minari_root"]

_FORMAT = 1
_KEY = "skillbank"
_HINT = "pip install 'skillbank[minari]'"


def _import_minari() -> Any:
    try:
        import minari
    except ImportError as exc:
        raise MissingExtraError(
            "Minari import/export needs minari, which is not installed", hint=_HINT
        ) from exc
    if importlib.util.find_spec("h5py") is None:  # Minari's HDF5 storage
        raise MissingExtraError(
            "Minari import/export needs h5py, which is not installed", hint=_HINT
        )
    return minari


def minari_root(root: Path | str | None = None) -> Path:
    """Where local Minari datasets live: ``root``, else ``$MINARI_DATASETS_PATH``, else
    ``~/.minari/datasets``."""
    # Absolute: Minari's storage mis-joins relative paths.
    if root is not None:
        return Path(root).absolute()
    env = os.environ.get("MINARI_DATASETS_PATH")
    return (Path(env) if env else Path.home() / ".minari" / "datasets").absolute()


def default_minari_name(info: DatasetInfo) -> str:
    """A Minari dataset id for a skillbank dataset: ``skillbank/<env id, slashes as dashes>-v0``."""
    slug = re.sub(r"[^-_\w]", "-", info.env_id.replace("/", "-"))
    return f"skillbank/{slug}-v0"


def _check_name(name: str) -> None:
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(name)
    except ValueError as exc:
        raise ValueError(
            f"Minari dataset name {name!r} must read (namespace/)name-v<version>, e.g. "
            "'skillbank/toy-fetch-v0'"
        ) from exc


# --- export ---------------------------------------------------------------------------------------


def _box_for(array: npt.NDArray[Any]) -> gym.spaces.Box:
    """A Box describing one step of ``array`` (T, ...): its shape and dtype, unbounded."""
    dtype = array.dtype
    shape = array.shape[1:]
    if dtype == np.bool_:
        return gym.spaces.Box(0, 1, shape=shape, dtype=np.int8)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return gym.spaces.Box(int(info.min), int(info.max), shape=shape, dtype=dtype)
    return gym.spaces.Box(-np.inf, np.inf, shape=shape, dtype=dtype)


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a/b": x}`` -> ``{"a": {"b": x}}``: Minari stores a ``/`` in a name as a subgroup, and
    :func:`_flatten` joins nested keys with ``/`` on the way back."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split("/")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise DatasetError(f"observation {key!r} clashes with observation {part!r}")
        if leaf in node:
            raise DatasetError(f"observation {key!r} clashes with another observation")
        node[leaf] = value
    return nested


def _dict_space(nested: Mapping[str, Any]) -> gym.spaces.Dict:
    return gym.spaces.Dict(
        {k: _dict_space(v) if isinstance(v, Mapping) else v for k, v in nested.items()}
    )


def _episode_meta(episode: Episode) -> str:
    notes = episode.annotations
    return json.dumps(
        {
            "format_version": _FORMAT,
            "env_id": episode.task.env_id,
            "mission": episode.task.mission,
            "seed": episode.seed,
            "success": episode.success,
            "demonstrator": episode.demonstrator,
            "observation_keys": list(episode.observations),
            "state_only": episode.state_only,
            "annotations": None
            if notes is None
            else {"boundaries": list(notes.boundaries), "labels": list(notes.labels)},
        },
        sort_keys=True,
    )


def export_minari(
    dataset: Dataset | Path | str, name: str | None = None, *, root: Path | str | None = None
) -> Path:
    """Write a skillbank dataset as a local Minari dataset.

    Args:
        dataset: A loaded dataset or its directory.
        name: Minari dataset id (default :func:`default_minari_name`).
        root: Minari root directory (see :func:`minari_root`).

    Returns:
        The Minari dataset's directory (``ROOT/<name>``).

    Raises:
        DatasetError: The source is corrupted, empty, has an episode of no steps, or a Minari
            dataset of that name exists.
        MissingExtraError: minari or h5py is not installed.
    """
    minari = _import_minari()
    from minari.data_collector import EpisodeBuffer
    from minari.dataset.minari_storage import MinariStorage

    source = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    info = source.info
    name = name or default_minari_name(info)
    _check_name(name)
    if len(source) == 0:
        raise DatasetError(f"{info.root}: has no episodes to export")
    base = minari_root(root)
    target = base / name
    if target.exists():
        raise DatasetError(
            f"{target}: a Minari dataset named {name!r} already exists",
            hint="pass another --name, or delete the old one",
        )

    first = source[0]
    with_actions = next((e for e in source if e.actions is not None), None)
    obs_space = _dict_space(_nest({k: _box_for(v) for k, v in first.observations.items()}))
    if with_actions is not None and with_actions.actions is not None:
        action_space = _box_for(with_actions.actions)
    else:
        action_space = gym.spaces.Box(0, 0, shape=(), dtype=np.int64)
    filler = np.zeros(action_space.shape, dtype=action_space.dtype)

    def buffers() -> Iterator[Any]:
        for index, episode in enumerate(source):
            if episode.num_steps == 0:
                raise DatasetError(
                    f"{info.root}: episode of seed {episode.seed} has no steps; Minari cannot "
                    "store it"
                )
            actions = episode.actions
            if actions is None:
                actions = np.broadcast_to(filler, (episode.num_steps, *filler.shape)).copy()
            yield EpisodeBuffer(
                id=index,
                seed=episode.seed,
                observations=_nest(episode.observations),
                actions=actions,
                rewards=episode.rewards,
                terminations=episode.terminations,
                truncations=episode.truncations,
                infos={},
            )

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        storage = MinariStorage.new(
            staging / "data",
            observation_space=obs_space,
            action_space=action_space,
            data_format="hdf5",
            jpeg_encoding=False,
        )
        storage.update_metadata(
            {
                "dataset_id": name,
                "minari_version": minari.__version__,
                "algorithm_name": info.demonstrator,
                "author": {"skillbank"},
                "description": f"{info.env_id} demonstrations by {info.demonstrator}, "
                "exported by skillbank",
                _KEY: json.dumps(
                    {
                        "format_version": _FORMAT,
                        "env_id": info.env_id,
                        "demonstrator": info.demonstrator,
                        "meta": dict(info.meta),
                        "failures": {str(s): r for s, r in info.failures.items()},
                        "dataset_hash": info.hash,
                    },
                    sort_keys=True,
                ),
            }
        )
        storage.update_episodes(buffers())
        storage.update_episode_metadata(
            [{_KEY: _episode_meta(e)} for e in source], range(len(source))
        )
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _write_namespace_files(base, name)
    return target


def _write_namespace_files(base: Path, name: str) -> None:
    """Mark each namespace of ``name`` the way ``minari.create_namespace`` does."""
    parts = name.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        marker = base.joinpath(*parts[:depth], "namespace_metadata.json")
        if not marker.exists():
            marker.write_text("{}")


# --- import ---------------------------------------------------------------------------------------


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}/{key}" if prefix else str(key), item, out)
    elif isinstance(value, tuple):
        for index, item in enumerate(value):
            _flatten(f"{prefix}/{index}" if prefix else str(index), item, out)
    else:
        out[prefix or "obs"] = value


def _to_episode(
    data: Any,
    meta: Mapping[str, Any],
    *,
    env_id: str,
    demonstrator: str,
    where: str,
) -> Episode:
    flat: dict[str, Any] = {}
    _flatten("", data.observations, flat)
    mission: str | None = None
    observations: dict[str, npt.NDArray[Any]] = {}
    for key, value in flat.items():
        if isinstance(value, list):  # a Text space: one string per step
            mission = str(value[0]) if value else None
        else:
            observations[key] = np.asarray(value)
    if isinstance(data.actions, Mapping | tuple):
        raise DatasetError(f"{where}: composite action spaces are not supported")
    actions = np.asarray(data.actions)
    rewards = np.asarray(data.rewards, dtype=np.float32)
    terminations = np.asarray(data.terminations, dtype=np.bool_)
    truncations = np.asarray(data.truncations, dtype=np.bool_)
    extra = meta.get(_KEY)
    try:
        if extra is not None:
            notes = json.loads(extra)
            if notes.get("format_version") != _FORMAT:
                raise DatasetError(
                    f"{where}: skillbank metadata version {notes.get('format_version')!r}, "
                    f"expected {_FORMAT}"
                )
            order = notes["observation_keys"]
            observations = {k: observations[k] for k in order}
            raw = notes["annotations"]
            return Episode(
                observations=observations,
                actions=None if notes["state_only"] else actions,
                rewards=rewards,
                terminations=terminations,
                truncations=truncations,
                task=TaskSpec(env_id=notes["env_id"], mission=notes["mission"]),
                success=bool(notes["success"]),
                seed=int(notes["seed"]),
                demonstrator=notes["demonstrator"],
                annotations=None
                if raw is None
                else SubgoalAnnotation(tuple(raw["boundaries"]), tuple(raw["labels"])),
            )
        infos = data.infos or {}
        success = infos.get("success")
        if success is not None and len(success):
            succeeded = bool(np.asarray(success)[-1])
        else:
            succeeded = bool(terminations[-1]) if len(terminations) else False
        seed = meta.get("seed")
        return Episode(
            observations=observations,
            actions=actions,
            rewards=rewards,
            terminations=terminations,
            truncations=truncations,
            task=TaskSpec(env_id=env_id, mission=mission),
            success=succeeded,
            seed=int(seed) if seed is not None else int(data.id),
            demonstrator=demonstrator,
        )
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{where}: cannot read episode {data.id} ({exc})") from exc


def import_minari(
    name: str,
    out: Path | str,
    *,
    root: Path | str | None = None,
    env_id: str | None = None,
    demonstrator: str | None = None,
) -> DatasetInfo:
    """Write a local Minari dataset as a skillbank dataset.

    Args:
        name: Minari dataset id, e.g. ``"skillbank/toy-fetch-v0"``.
        out: New skillbank dataset directory.
        root: Minari root directory (see :func:`minari_root`).
        env_id: Env id to record when the dataset was not written by skillbank (default: the
            Minari dataset's environment id, else its dataset id).
        demonstrator: Demonstrator to record likewise (default: its ``algorithm_name``).

    Returns:
        The new dataset's :class:`DatasetInfo`.

    Raises:
        DatasetError: No such Minari dataset, or it cannot be read.
        MissingExtraError: minari or h5py is not installed.
    """
    _import_minari()
    from minari import MinariDataset

    _check_name(name)
    path = minari_root(root) / name / "data"
    if not path.is_dir():
        raise DatasetError(
            f"{path}: no local Minari dataset named {name!r}",
            hint="pass --root or set MINARI_DATASETS_PATH to the directory holding it",
        )
    try:
        source = MinariDataset(path)
        metadata = source.storage.metadata
    except (ValueError, KeyError, OSError, AssertionError) as exc:
        raise DatasetError(f"{path}: not a readable Minari dataset ({exc})") from exc
    header: dict[str, Any] = {}
    if _KEY in metadata:
        try:
            header = json.loads(metadata[_KEY])
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}: skillbank metadata is not valid JSON ({exc})") from exc
    spec = source.env_spec
    env_id = header.get("env_id") or env_id or (spec.id if spec is not None else None) or name
    demonstrator = (
        header.get("demonstrator")
        or demonstrator
        or str(metadata.get("algorithm_name") or "minari")
    )
    meta = {str(k): str(v) for k, v in header.get("meta", {}).items()}
    meta.setdefault("minari_dataset", name)
    writer = DatasetWriter(out, env_id=env_id, demonstrator=demonstrator, meta=meta)
    indices = list(source.episode_indices)
    metas = list(source.storage.get_episode_metadata(indices))
    for data, episode_meta in zip(source.iterate_episodes(indices), metas, strict=True):
        episode = _to_episode(
            data, episode_meta, env_id=env_id, demonstrator=demonstrator, where=str(path)
        )
        writer.write(episode)
    for seed, reason in header.get("failures", {}).items():
        writer.log_failure(int(seed), reason)
    return writer.close()
