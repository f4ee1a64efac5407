"""BabyAI missions split into their clauses, to break evaluation results down by mission kind.

BabyAI's composite levels (Synth, SynthSeq, BossLevel) join single instructions ("go to the red
ball", "pick up a key", "open the door", "put the box next to the ball") with "and", ", then" and
"after you". :func:`mission_clauses` names each clause by its verb, so a result can be read as
"missions with a put clause succeed 2%" rather than one number for the level.

Example:
    >>> mission_clauses("put the red ball next to a door after you open the blue door")
    ('put', 'open')
    >>> success_by_mission(["go to a box", "put a key next to a ball"], [True, False])["put"]
    {'episodes': 1, 'success_rate': 0.0}
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["CLAUSE_KINDS", "mission_clauses", "success_by_mission"]

CLAUSE_KINDS = ("go to", "pick up", "open", "put")
"""The verbs BabyAI's instructions start with (a clause that starts with none is ``"other"``)."""

_JOINERS = re.compile(r", then | after you | and ")


def mission_clauses(mission: str) -> tuple[str, ...]:
    """The kind of each clause of ``mission``, in the order written."""
    kinds = []
    for clause in _JOINERS.split(mission.strip().lower()):
        clause = clause.strip()
        kinds.append(next((k for k in CLAUSE_KINDS if clause.startswith(k)), "other"))
    return tuple(kinds)


def success_by_mission(
    missions: Sequence[str], successes: Sequence[bool]
) -> dict[str, dict[str, float | int]]:
    """Success per mission kind: ``"<n> clauses"`` and, per verb, missions with such a clause.

    Raises:
        ValueError: ``missions`` and ``successes`` differ in length.
    """
    if len(missions) != len(successes):
        raise ValueError(
            f"success_by_mission: {len(missions)} missions for {len(successes)} outcomes"
        )
    groups: dict[str, list[bool]] = {}
    for mission, success in zip(missions, successes, strict=True):
        kinds = mission_clauses(mission)
        count = len(kinds)
        names = [f"{count} clause" + ("s" if count > 1 else ""), *dict.fromkeys(kinds)]
        for name in names:
            groups.setdefault(name, []).append(bool(success))
    return {
        name: {"episodes": len(group), "success_rate": sum(group) / len(group)}
        for name, group in sorted(groups.items())
    }
