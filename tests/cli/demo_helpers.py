"""Shared by the CLI tests: toy demonstration datasets and file-tree digests."""

from __future__ import annotations

import hashlib
from pathlib import Path

from skillbank.envs.dataset import DatasetWriter
from skillbank.envs.toy import DEMONSTRATOR, ToyDemonstrator


def write_toy_demos(root: Path, task: str, episodes: int) -> Path:
    """Write ``episodes`` toy demonstrations of ``task`` (seeds ``0..episodes-1``) to ``root``."""
    source = ToyDemonstrator(task)
    with DatasetWriter(root, env_id=source.env_id, demonstrator=DEMONSTRATOR) as writer:
        for seed in range(episodes):
            writer.write(source.demonstrate(seed))
    return root


def tree_digest(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root``, keyed by its relative path."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
