"""Metric events: the second of three channels (logs, events, progress bars).

Library code reports measurements as :class:`Event` records to an :class:`Observer` passed in by
the caller; it never prints. The CLI turns events into progress bars and tables.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Event", "EventLog", "NullObserver", "Observer"]


@dataclass(frozen=True, slots=True)
class Event:
    """One measurement or milestone.

    Attributes:
        name: Dotted event name, e.g. ``"train.step"`` or ``"collect.episode"``.
        values: Numeric values of the event (loss, success, ...).
        info: Free-form string details (level name, skill id, ...).
        time: Wall-clock time the event was made (seconds since the epoch).
    """

    name: str
    values: Mapping[str, float] = field(default_factory=dict)
    info: Mapping[str, str] = field(default_factory=dict)
    time: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("Event.name must be a non-empty string")


class Observer(Protocol):
    """Receives events; must not raise."""

    def __call__(self, event: Event) -> None: ...


class NullObserver:
    """Drops every event."""

    def __call__(self, event: Event) -> None:
        return None


class EventLog:
    """Keeps every event in a list (handy in tests and for writing result files)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def named(self, name: str) -> list[Event]:
        """Return the events called ``name``, in order."""
        return [e for e in self.events if e.name == name]
