"""CLI helper: open ``--memory PATH`` read-only, where PATH is a memory or a directory skill pack.

A pack directory (``manifest.json`` and no ``skills.sqlite``) is verified and imported into a
fresh temporary memory, which is deleted when the block ends; the pack itself is never written.

Example:
    >>> with open_memory_or_pack(Path("packs/babyai")) as memory:  # doctest: +SKIP
    ...     print(len(memory.list()))
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from skillbank.errors import SkillMemoryError
from skillbank.memory.pack_manifest import MANIFEST_NAME
from skillbank.memory.packs import import_pack
from skillbank.memory.store import SkillMemory

__all__ = ["is_pack_dir", "open_memory_or_pack"]

_DATABASE = "skills.sqlite"


def is_pack_dir(path: Path) -> bool:
    """Whether ``path`` is a directory pack rather than a memory (manifest, no database)."""
    return (path / MANIFEST_NAME).is_file() and not (path / _DATABASE).exists()


@contextmanager
def open_memory_or_pack(path: Path, *, hint: str | None = None) -> Iterator[SkillMemory]:
    """Yield the memory at ``path``, or a temporary memory holding the pack at ``path``.

    Raises:
        SkillMemoryError: ``path`` is neither a memory nor a pack directory.
        PackError: the pack failed verification.
    """
    if is_pack_dir(path):
        with tempfile.TemporaryDirectory(prefix="skillbank-pack-") as tmp:
            memory = SkillMemory(Path(tmp) / "memory")
            try:
                import_pack(memory, path)
                yield memory
            finally:
                memory.close()
        return
    if not (path / _DATABASE).is_file():
        raise SkillMemoryError(
            f"no skill memory at {path}",
            hint=hint or "pass --memory DIR (a memory, or a pack directory with manifest.json)",
        )
    memory = SkillMemory(path, create=False)
    try:
        yield memory
    finally:
        memory.close()
