"""The persistent skill memory: SQLite (the single source of truth) plus content-addressed
safetensors blobs. Knows arrays, bytes and JSON; never ``nn.Module`` classes.

Example:
    >>> from skillbank.memory import SkillMemory  # doctest: +SKIP
    >>> with SkillMemory("skillbank-memory") as memory:  # doctest: +SKIP
    ...     hits = memory.retrieve(query, k=5)
"""

from __future__ import annotations

from skillbank.memory.index import INDEX_KINDS, FaissHnswIndex, UsearchIndex, make_index
from skillbank.memory.retrieval import attention_weights, score_keys, top_k
from skillbank.memory.specs import GcReport, SkillSpec
from skillbank.memory.store import SkillMemory, new_id
from skillbank.memory.verify import PROBLEM_KINDS, Problem

__all__ = [
    "INDEX_KINDS",
    "PROBLEM_KINDS",
    "FaissHnswIndex",
    "GcReport",
    "Problem",
    "SkillMemory",
    "SkillSpec",
    "UsearchIndex",
    "attention_weights",
    "make_index",
    "new_id",
    "score_keys",
    "top_k",
]
