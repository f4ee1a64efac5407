"""Reading and writing the files of a skill pack: a directory or a ``.tar.gz``.

Reading never extracts anything to disk and never follows a link. Each archive member is checked
before its bytes are read: a relative path without ``..`` (no absolute path, drive letter or
backslash), a regular file (no symlink, hardlink, device, FIFO), no repeated name, and size limits
per file, in total and in number. Files whose name or first bytes say pickle (``.pt``, ``.pkl``,
``.bin``, ... or a ``\\x80\\x02``-``\\x80\\x05`` protocol header, or a zip as ``torch.save`` writes)
are refused outright. Every problem raises :class:`~skillbank.errors.PackError` naming the file.

Writing is atomic: the pack is built beside its destination and renamed into place; a ``.tar.gz``
is byte-for-byte reproducible for the same contents (fixed mtimes, owners, modes; gzip mtime 0).
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from skillbank.errors import PackError
from skillbank.memory.safetensors_check import SafetensorsLimits

__all__ = [
    "PICKLE_SUFFIXES",
    "PackLimits",
    "is_archive_path",
    "pack_name",
    "read_pack_files",
    "write_pack_files",
]

#: File name endings of formats that are (or may wrap) pickle; refused in a pack.
PICKLE_SUFFIXES = (
    ".pt",
    ".pth",
    ".pkl",
    ".pickle",
    ".bin",
    ".ckpt",
    ".joblib",
    ".dill",
    ".npy",
    ".npz",
)
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
_MAX_DEPTH = 16


@dataclass(frozen=True, slots=True)
class PackLimits:
    """Limits applied to a pack before its contents are trusted.

    Attributes:
        max_file_bytes: Largest single file (a weights file, the manifest, ...).
        max_header_bytes: Largest safetensors JSON header.
        max_total_bytes: Largest sum of all file sizes.
        max_files: Most entries (files and directories) a pack may hold.
    """

    max_file_bytes: int = 1024 * 1024 * 1024
    max_header_bytes: int = 100 * 1024 * 1024
    max_total_bytes: int = 4 * 1024 * 1024 * 1024
    max_files: int = 100_000

    def __post_init__(self) -> None:
        for name in ("max_file_bytes", "max_header_bytes", "max_total_bytes", "max_files"):
            if getattr(self, name) <= 0:
                raise ValueError(f"PackLimits.{name} must be positive")

    @property
    def safetensors(self) -> SafetensorsLimits:
        """The matching limits for one safetensors file."""
        return SafetensorsLimits(
            max_header_bytes=self.max_header_bytes, max_file_bytes=max(self.max_file_bytes, 9)
        )


def is_archive_path(path: Path) -> bool:
    """True when ``path`` names a ``.tar.gz`` / ``.tgz`` pack rather than a directory."""
    return path.name.endswith(_ARCHIVE_SUFFIXES)


def pack_name(path: Path) -> str:
    """The pack's name: its file or directory name without ``.tar.gz`` / ``.tgz``."""
    name = path.name
    for suffix in _ARCHIVE_SUFFIXES:
        name = name.removesuffix(suffix)
    return name or str(path)


# --- checks shared by both layouts ----------------------------------------------------------------


def _clean_member_name(raw: str, where: str) -> str:
    """Return the normalized relative path, or raise if it could escape the pack."""
    if not raw or "\x00" in raw:
        raise PackError(f"{where}: member with an empty or NUL-containing name")
    if raw.startswith(("/", "\\")) or (len(raw) > 1 and raw[1] == ":"):
        raise PackError(f"{where}: member {raw!r} has an absolute path")
    if "\\" in raw:
        raise PackError(f"{where}: member {raw!r} contains a backslash")
    parts = raw.split("/")
    while parts and parts[0] == ".":
        parts.pop(0)
    if ".." in parts:
        raise PackError(f"{where}: member {raw!r} contains '..'")
    parts = [p for p in parts if p not in ("", ".")]
    if not parts:
        raise PackError(f"{where}: member {raw!r} names no file")
    if len(parts) > _MAX_DEPTH:
        raise PackError(f"{where}: member {raw!r} is nested deeper than {_MAX_DEPTH} levels")
    return "/".join(parts)


def _safetensors_shaped(data: bytes) -> bool:
    """Whether ``data`` is laid out as safetensors: an 8-byte little-endian length, then that
    many bytes of a JSON object (``{`` ... ``}``, space-padded) inside the file. Its length's low
    bytes may read as a pickle protocol header (a 896-byte header starts ``\x80\x03``)."""
    if len(data) < 10:
        return False
    size = int.from_bytes(data[:8], "little")
    header = data[8 : 8 + size]
    return 2 <= size <= len(data) - 8 and header[:1] == b"{" and header.rstrip(b" ")[-1:] == b"}"


def _check_not_pickle(name: str, data: bytes) -> None:
    if name.lower().endswith(PICKLE_SUFFIXES):
        raise PackError(
            f"{name}: pickle-based file type refused (packs hold only JSON and safetensors)",
            hint="skillbank never unpickles; export the weights as safetensors",
        )
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5 and not _safetensors_shaped(data):
        raise PackError(
            f"{name}: starts with a pickle protocol header; refused",
            hint="skillbank never unpickles; export the weights as safetensors",
        )
    if data.startswith(b"PK\x03\x04"):
        raise PackError(
            f"{name}: is a zip archive (the torch.save format); refused",
            hint="skillbank never unpickles; export the weights as safetensors",
        )


class _Budget:
    def __init__(self, limits: PackLimits, where: str) -> None:
        self.limits, self.where, self.total, self.count = limits, where, 0, 0

    def take(self, name: str, size: int) -> None:
        if size > self.limits.max_file_bytes:
            raise PackError(
                f"{name}: {size} bytes exceeds the per-file limit of {self.limits.max_file_bytes}"
            )
        self.total += size
        if self.total > self.limits.max_total_bytes:
            raise PackError(f"{self.where}: exceeds the limit of {self.limits.max_total_bytes} B")
        self.take_entry(name)

    def take_entry(self, name: str) -> None:
        """Count one entry (file or directory) against ``max_files``."""
        self.count += 1
        if self.count > self.limits.max_files:
            raise PackError(f"{self.where}: holds more than {self.limits.max_files} entries")


# --- reading --------------------------------------------------------------------------------------


def _read_tar(path: Path, limits: PackLimits) -> dict[str, bytes]:
    where = path.name
    files: dict[str, bytes] = {}
    budget = _Budget(limits, where)
    try:
        with tarfile.open(path, mode="r:*") as tar:
            while (member := tar.next()) is not None:
                name = _clean_member_name(member.name, where)
                if member.isdir():
                    budget.take_entry(name)
                    continue
                if member.issym() or member.islnk():
                    raise PackError(f"{name}: is a link inside {where}; links are refused")
                if not member.isreg():
                    raise PackError(f"{name}: is a device, FIFO or special file; refused")
                if name in files:
                    raise PackError(f"{name}: appears twice in {where}")
                budget.take(name, member.size)
                handle = tar.extractfile(member)
                assert handle is not None  # a regular member always has a file object
                data = handle.read(member.size)
                if len(data) != member.size:
                    raise PackError(f"{name}: truncated inside {where}")
                _check_not_pickle(name, data)
                files[name] = data
    except PackError:
        raise
    except (tarfile.TarError, EOFError, OSError, zlib.error, ValueError) as exc:
        raise PackError(f"{where}: not a readable .tar.gz pack ({exc})") from None
    return files


def _read_regular(path: Path, name: str, budget: _Budget) -> bytes:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise PackError(f"{name}: cannot be opened ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise PackError(f"{name}: is not a regular file; refused")
        if info.st_nlink > 1:
            raise PackError(f"{name}: is a hardlink; links are refused")
        budget.take(name, info.st_size)
        data = handle.read(info.st_size + 1)
    if len(data) != info.st_size:
        raise PackError(f"{name}: changed size while being read")
    return data


def _read_dir(root: Path, limits: PackLimits) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    budget = _Budget(limits, root.name)

    def walk(directory: Path, prefix: str, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise PackError(f"{prefix}: nested deeper than {_MAX_DEPTH} levels")
        with os.scandir(directory) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                name = f"{prefix}{entry.name}"
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(info.st_mode):
                    raise PackError(f"{name}: is a symlink; links are refused")
                if stat.S_ISDIR(info.st_mode):
                    budget.take_entry(name)
                    walk(Path(entry.path), f"{name}/", depth + 1)
                elif stat.S_ISREG(info.st_mode):
                    data = _read_regular(Path(entry.path), name, budget)
                    _check_not_pickle(name, data)
                    files[name] = data
                else:
                    raise PackError(f"{name}: is a device, FIFO or special file; refused")

    try:
        walk(root, "", 0)
    except PackError:
        raise
    except OSError as exc:
        raise PackError(f"{root.name}: cannot be read ({exc})") from None
    return files


def read_pack_files(path: Path, limits: PackLimits | None = None) -> dict[str, bytes]:
    """Read every file of the pack at ``path`` into memory, after checking each one.

    Args:
        path: A pack directory, or a ``.tar.gz`` / ``.tgz`` file.
        limits: Size limits; defaults to :class:`PackLimits` ().

    Returns:
        Relative POSIX path -> bytes, for every regular file of the pack.

    Raises:
        PackError: the pack is missing, unreadable, or has an unsafe or oversized member.
    """
    limits = limits or PackLimits()
    if not path.exists():
        raise PackError(f"{path}: no such pack", hint="give a pack directory or .tar.gz file")
    if path.is_dir():
        return _read_dir(path, limits)
    if not path.is_file():
        raise PackError(f"{path}: neither a directory nor a regular file; refused")
    return _read_tar(path, limits)


# --- writing --------------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_tar(staging: Path, files: Mapping[str, bytes], mtime: int) -> None:
    with open(staging, "wb") as raw:
        with (
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for name in sorted(files):
                data = files[name]
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), mtime, 0o644
                tar.addfile(info, io.BytesIO(data))
        raw.flush()
        os.fsync(raw.fileno())


def _write_dir(staging: Path, files: Mapping[str, bytes]) -> None:
    for name in sorted(files):
        target = staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as handle:
            handle.write(files[name])
            handle.flush()
            os.fsync(handle.fileno())


def write_pack_files(out: Path, files: Mapping[str, bytes], *, mtime: int = 0) -> None:
    """Write ``files`` as a pack at ``out`` atomically (``.tar.gz``/``.tgz`` or a directory).

    Raises:
        PackError: ``out`` already exists, or a name is unsafe.
    """
    for name in files:
        if _clean_member_name(name, out.name) != name:
            raise ValueError(f"pack file name {name!r} is not a normalized relative path")
    if out.exists() or out.is_symlink():
        raise PackError(f"{out}: already exists", hint="choose a new --out path or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        if is_archive_path(out):
            _write_tar(staging, files, mtime)
        else:
            staging.mkdir()
            _write_dir(staging, files)
        os.rename(staging, out)
        _fsync_dir(out.parent)
    finally:
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
        elif staging.exists():
            staging.unlink()
