"""The one exception tree of skillbank.

Every error a user can meet derives from :class:`SkillbankError` and carries a ``hint``: one line
that says what to do. The CLI prints ``message`` and ``hint`` and exits non-zero.

```
SkillbankError
├── SkillMemoryError                  the skill memory
│   ├── SkillNotFoundError        no skill / version with that id
│   ├── MemoryCorruptionError     a blob or row fails a check (verify reports these)
│   ├── MemoryLockedError         another process holds the write lock past the busy timeout
│   └── PackError                 a skill pack is refused on import or cannot be written
├── ArchitectureError             unknown architecture id, or weights that do not fit it
├── ConfigError                   a setting (``--set part.field=value``) unknown or malformed
├── DatasetError                  a demonstration dataset is missing, malformed or corrupted
├── EnvironmentNotFoundError      an unknown environment id (lists the closest valid names)
├── MissingExtraError             an optional dependency is not installed (names the pip command)
└── TrainingError                 learning failed (diverged, no data, ...)
```

Bad arguments to a function raise ``ValueError``; ``assert`` guards internal invariants only.
"""

from __future__ import annotations

__all__ = [
    "ArchitectureError",
    "ConfigError",
    "DatasetError",
    "EnvironmentNotFoundError",
    "MemoryCorruptionError",
    "MemoryLockedError",
    "MissingExtraError",
    "PackError",
    "SkillMemoryError",
    "SkillNotFoundError",
    "SkillbankError",
    "TrainingError",
]


class SkillbankError(Exception):
    """Base of every skillbank error.

    Args:
        message: What went wrong, in one line.
        hint: What the user can do about it, in one line.
    """

    default_hint = "run with --debug for the full traceback"

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        return self.message


class SkillMemoryError(SkillbankError):
    """Something about the skill memory."""

    default_hint = "run `skillbank verify --memory DIR` to check the memory"


class SkillNotFoundError(SkillMemoryError):
    """No skill (or version) with the given id."""

    default_hint = "list the stored skills with `skillbank skills ls`"


class MemoryCorruptionError(SkillMemoryError):
    """A stored blob or database row fails an integrity check."""


class MemoryLockedError(SkillMemoryError):
    """The database stayed locked by another process past the busy timeout."""

    default_hint = "another process is writing; retry, or raise the busy timeout"


class PackError(SkillMemoryError):
    """A skill pack was refused on import, or could not be written. The memory is unchanged."""

    default_hint = "the memory was not changed; re-export the pack from its source"


class ArchitectureError(SkillbankError):
    """An architecture id is not allow-listed, its config is invalid, or weights do not fit it."""

    default_hint = "see `skillbank.architectures.ARCHITECTURES` for the allow-listed ids"


class ConfigError(SkillbankError):
    """A setting given by name (``part.field=value``) that is unknown or does not parse."""

    default_hint = "settings read part.field=value, e.g. skill.argument=hindsight"


class DatasetError(SkillbankError):
    """A demonstration dataset is missing, malformed or corrupted."""

    default_hint = "re-collect it with `skillbank demos collect`"


class EnvironmentNotFoundError(SkillbankError):
    """An environment id that no registry knows."""

    default_hint = "ids read babyai/<Level>, metaworld/<task>-v3, toy/<task>, or a Gymnasium id"


class MissingExtraError(SkillbankError):
    """An optional dependency is not installed."""


class TrainingError(SkillbankError):
    """Learning could not proceed (no data, diverged loss, ...)."""
