"""Content-addressed blob files: ``blobs/ab/<sha256>.safetensors``.

A blob is written before the database row that references it (temporary file, fsync, atomic
rename, fsync of the directory), so a crash leaves at worst an unreferenced blob or a stray
temporary file, which :meth:`BlobStore.sweep` reclaims. Temporary files carry the writer's pid so a
sweep never removes one a live process is still writing.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterator, Set
from dataclasses import dataclass
from pathlib import Path

from skillbank.errors import MemoryCorruptionError
from skillbank.memory.weights import sha256_hex

__all__ = ["BLOB_SUFFIX", "BlobStore", "SweepResult"]

BLOB_SUFFIX = ".safetensors"
_SHA = re.compile(r"[0-9a-f]{64}")
_TMP = re.compile(r"\.([0-9a-f]{64})\.(\d+)\.[0-9a-f]+\.tmp")
#: A temporary file older than this is stray even if its pid is alive (pids get reused).
TMP_MAX_AGE_S = 3600.0


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What a sweep removed.

    Attributes:
        removed_sha256: Hashes of the removed unreferenced blobs.
        num_tmp_removed: Stray temporary files removed.
        bytes_freed: Bytes of everything removed.
    """

    removed_sha256: tuple[str, ...]
    num_tmp_removed: int
    bytes_freed: int

    def __post_init__(self) -> None:
        if self.num_tmp_removed < 0 or self.bytes_freed < 0:
            raise ValueError("SweepResult counts must be non-negative")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """The ``blobs/`` directory of one memory.

    Args:
        root: The ``blobs`` directory (created when missing).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        """Where the blob with this hash lives."""
        if not _SHA.fullmatch(sha256):
            raise ValueError(f"blob hash {sha256!r} must be 64 lower-case hex digits")
        return self.root / sha256[:2] / f"{sha256}{BLOB_SUFFIX}"

    def exists(self, sha256: str) -> bool:
        """True when the blob file is present (its content is not checked)."""
        return self.path(sha256).is_file()

    def write(self, data: bytes, sha256: str) -> bool:
        """Store ``data`` under ``sha256`` durably unless already present.

        Returns:
            True when a new file was written, False when it was already there (deduplicated).
        """
        target = self.path(sha256)
        if target.is_file():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{sha256}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
        return True

    def read(self, sha256: str, *, check: bool = True) -> bytes:
        """Read the blob's bytes.

        Raises:
            MemoryCorruptionError: the file is missing, or (with ``check``) its bytes do not hash
                to ``sha256``.
        """
        path = self.path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise MemoryCorruptionError(f"blob {path} is missing") from None
        if check and sha256_hex(data) != sha256:
            raise MemoryCorruptionError(f"blob {path} does not match its SHA-256 (corrupted)")
        return data

    def iter_blobs(self) -> Iterator[tuple[str, Path]]:
        """Yield (sha256, path) of every blob file on disk."""
        if not self.root.is_dir():
            return
        for sub in sorted(self.root.iterdir()):
            if not sub.is_dir():
                continue
            for path in sorted(sub.glob(f"*{BLOB_SUFFIX}")):
                sha = path.name.removesuffix(BLOB_SUFFIX)
                if _SHA.fullmatch(sha):
                    yield sha, path

    def sweep(self, referenced: Set[str]) -> SweepResult:
        """Remove blobs not in ``referenced`` and stray temporary files.

        The caller must hold the database write lock: a writer checks its blobs exist under the
        same lock before committing, so a blob it depends on is rewritten if swept meanwhile.
        """
        removed: list[str] = []
        num_tmp = 0
        freed = 0
        for sha, path in list(self.iter_blobs()):
            if sha not in referenced:
                freed += path.stat().st_size
                path.unlink(missing_ok=True)
                removed.append(sha)
        now = time.time()
        for sub in self.root.iterdir() if self.root.is_dir() else ():
            if not sub.is_dir():
                continue
            for tmp in sub.glob(".*.tmp"):
                match = _TMP.fullmatch(tmp.name)
                try:
                    stat = tmp.stat()
                except FileNotFoundError:
                    continue
                stray = match is None or not _pid_alive(int(match.group(2)))
                if stray or now - stat.st_mtime > TMP_MAX_AGE_S:
                    tmp.unlink(missing_ok=True)
                    num_tmp += 1
                    freed += stat.st_size
        return SweepResult(tuple(removed), num_tmp, freed)
