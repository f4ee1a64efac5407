"""skillbank: procedural-memory agents.

Agents learn skills from demonstrations, keep each skill as its own small neural module in a
persistent key-value memory (keys: latent skill codes; values: safetensors weights with
provenance), retrieve them by attention, compose them, and adapt copies to new tasks.

Example:
    >>> import skillbank
    >>> skillbank.__version__
    '0.1.0'
"""

from __future__ import annotations

from skillbank.errors import (
    ArchitectureError,
    DatasetError,
    EnvironmentNotFoundError,
    MemoryCorruptionError,
    MemoryLockedError,
    MissingExtraError,
    PackError,
    SkillbankError,
    SkillMemoryError,
    SkillNotFoundError,
    TrainingError,
)
from skillbank.events import Event, EventLog, Observer
from skillbank.types import (
    Episode,
    Provenance,
    Retrieval,
    RetrievalFilter,
    SkillRecord,
    SubgoalAnnotation,
    TaskSpec,
    UsageStats,
)

__version__ = "0.1.0"

__all__ = [
    "ArchitectureError",
    "DatasetError",
    "EnvironmentNotFoundError",
    "Episode",
    "Event",
    "EventLog",
    "MemoryCorruptionError",
    "MemoryLockedError",
    "MissingExtraError",
    "Observer",
    "PackError",
    "Provenance",
    "Retrieval",
    "RetrievalFilter",
    "SkillMemoryError",
    "SkillNotFoundError",
    "SkillRecord",
    "SkillbankError",
    "SubgoalAnnotation",
    "TaskSpec",
    "TrainingError",
    "UsageStats",
    "__version__",
]
