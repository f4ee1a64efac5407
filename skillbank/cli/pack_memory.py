"""CLI helper: open ``--memory PATH`` read-only, where PATH is a memory or a skill pack.

* A memory directory (``skills.sqlite``) opens as it is.
* A pack directory (``manifest.json`` and no database) is verified and imported into a fresh
  temporary memory, deleted when the block ends; the pack itself is never written.
* A pack archive (``.tar.gz`` / ``.tgz``) is verified exactly as ``skillbank skills import`` does,
  once, and kept imported in a cache directory named by the archive's SHA-256
  (``$SKILLBANK_CACHE/packs/<sha256>``, default ``~/.cache/skillbank/packs/<sha256>``; built
  beside it and renamed into place, files made read-only). Later opens of the same bytes skip the
  verification. Each open works on a throwaway copy of the cached memory (the database copied,
  blobs hard-linked where possible), so what a read-only command writes (eval's usage counters)
  never reaches the cache.

Commands that write (``learn``, ``skills import/rm``, ``gc``) refuse a pack with
:func:`refuse_pack`: a pack is imported into a memory first.

Example:
    >>> with open_memory_or_pack(Path("packs/babyai.tar.gz")) as memory:  # doctest: +SKIP
    ...     print(len(memory.list()))
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from skillbank.errors import PackError, SkillMemoryError
from skillbank.memory.pack_archive import is_archive_path
from skillbank.memory.pack_manifest import MANIFEST_NAME
from skillbank.memory.pack_verify import read_pack
from skillbank.memory.packs import import_pack, import_verified_pack
from skillbank.memory.store import SkillMemory

__all__ = [
    "CACHE_ENV",
    "cached_pack_memory",
    "is_pack",
    "is_pack_archive",
    "is_pack_dir",
    "open_memory_or_pack",
    "pack_cache_dir",
    "refuse_pack",
]

CACHE_ENV = "SKILLBANK_CACHE"
"""Environment variable naming skillbank's cache directory (packs go under ``packs/``)."""

_DATABASE = "skills.sqlite"
_MARKER = "pack.json"  # written last: a cache entry without it is not trusted
_CHUNK = 1 << 20


def is_pack_dir(path: Path) -> bool:
    """Whether ``path`` is a directory pack rather than a memory (manifest, no database)."""
    return (path / MANIFEST_NAME).is_file() and not (path / _DATABASE).exists()


def is_pack_archive(path: Path) -> bool:
    """Whether ``path`` is a file named like a pack archive (``.tar.gz`` / ``.tgz``)."""
    return path.is_file() and is_archive_path(path)


def is_pack(path: Path) -> bool:
    """Whether ``path`` is a skill pack (a directory or an archive) rather than a memory."""
    return is_pack_dir(path) or is_pack_archive(path)


def refuse_pack(path: Path, action: str) -> None:
    """Raise if ``path`` is a pack: ``action`` (e.g. ``"learn into"``) needs a writable memory.

    Raises:
        SkillMemoryError: ``path`` is a skill pack (read-only).
    """
    if is_pack(path):
        raise SkillMemoryError(
            f"{path} is a skill pack, which is read-only: cannot {action} it",
            hint=f"import it first: `skillbank skills import {path} --memory DIR`, "
            "then pass --memory DIR",
        )


def pack_cache_dir() -> Path:
    """Where archives are kept imported: ``$SKILLBANK_CACHE/packs``, else the XDG cache."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root) / "packs"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "skillbank" / "packs"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _make_read_only(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


def cached_pack_memory(archive: Path, *, cache_dir: Path | None = None) -> Path:
    """The cached memory holding the pack archive ``archive`` (verified and built on first use).

    Args:
        archive: A ``.tar.gz`` / ``.tgz`` pack.
        cache_dir: Where entries live (default :func:`pack_cache_dir`).

    Returns:
        The cache entry's memory directory (do not write to it; see :func:`open_memory_or_pack`).

    Raises:
        PackError: the archive failed verification (nothing is cached).
    """
    root = cache_dir or pack_cache_dir()
    sha = _file_sha256(archive)
    entry = root / sha
    if (entry / _MARKER).is_file() and (entry / "memory" / _DATABASE).is_file():
        return entry / "memory"
    verified = read_pack(archive)  # every check of `skills import`, before anything is written
    root.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{sha[:16]}-", dir=root))
    try:
        with SkillMemory(building / "memory") as memory:
            import_verified_pack(memory, verified)
        shutil.rmtree(building / "memory" / "index", ignore_errors=True)  # rebuilt per copy
        marker = {
            "archive": archive.name,
            "archive_sha256": sha,
            "manifest_sha256": verified.manifest_sha256,
            "latest_only": verified.manifest.latest_only,
        }
        (building / _MARKER).write_text(json.dumps(marker, indent=1, sort_keys=True) + "\n")
        _make_read_only(building)
        if entry.exists():  # a broken entry (no marker) or one another process just finished
            if (entry / _MARKER).is_file():
                return entry / "memory"
            shutil.rmtree(entry)
        try:
            building.rename(entry)
        except OSError:
            if not (entry / _MARKER).is_file():
                raise
    finally:
        if building.exists():
            shutil.rmtree(building, ignore_errors=True)
    return entry / "memory"


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


@contextmanager
def _throwaway_copy(memory_dir: Path) -> Iterator[SkillMemory]:
    """A writable copy of ``memory_dir`` (database copied, blobs linked), deleted afterwards."""
    with tempfile.TemporaryDirectory(prefix=".open-", dir=memory_dir.parent.parent) as tmp:
        copy = Path(tmp) / "memory"
        copy.mkdir()
        for name in (_DATABASE, f"{_DATABASE}-wal"):  # a WAL is normally merged on close
            if (memory_dir / name).is_file():
                shutil.copyfile(memory_dir / name, copy / name)  # mode not copied: writable
        blobs = memory_dir / "blobs"
        if blobs.is_dir():
            shutil.copytree(blobs, copy / "blobs", copy_function=_link_or_copy)
        memory = SkillMemory(copy, create=False)
        try:
            yield memory
        finally:
            memory.close()


@contextmanager
def open_memory_or_pack(path: Path, *, hint: str | None = None) -> Iterator[SkillMemory]:
    """Yield the memory at ``path``, or a throwaway memory holding the pack at ``path``.

    Raises:
        SkillMemoryError: ``path`` is neither a memory nor a pack.
        PackError: the pack failed verification.
    """
    if is_pack_archive(path):
        with _throwaway_copy(cached_pack_memory(path)) as memory:
            yield memory
        return
    if is_pack_dir(path):
        with tempfile.TemporaryDirectory(prefix="skillbank-pack-") as tmp:
            memory = SkillMemory(Path(tmp) / "memory")
            try:
                import_pack(memory, path)
                yield memory
            finally:
                memory.close()
        return
    if path.is_file():
        raise PackError(
            f"{path}: not a skill memory, and not a pack archive (.tar.gz / .tgz)",
            hint="pass --memory DIR, a pack directory, or a pack .tar.gz",
        )
    if not (path / _DATABASE).is_file():
        raise SkillMemoryError(
            f"no skill memory at {path}",
            hint=hint or "pass --memory DIR (a memory, a pack directory, or a pack .tar.gz)",
        )
    memory = SkillMemory(path, create=False)
    try:
        yield memory
    finally:
        memory.close()
