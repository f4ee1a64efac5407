"""Mission clauses and success by mission kind."""

from __future__ import annotations

import pytest

from skillbank.envs.babyai_missions import mission_clauses, success_by_mission


@pytest.mark.parametrize(
    ("mission", "kinds"),
    [
        ("go to the red ball", ("go to",)),
        ("pick up a key and open the yellow door", ("pick up", "open")),
        ("put the box next to the ball, then go to a door", ("put", "go to")),
        (
            "open the door on your left after you put a key next to the grey box",
            ("open", "put"),
        ),
        ("go to a ball, then pick up a box and go to a key", ("go to", "pick up", "go to")),
        ("get the lavender ball", ("other",)),
    ],
)
def test_mission_clauses_name_each_clause_by_its_verb(mission: str, kinds: tuple[str, ...]) -> None:
    assert mission_clauses(mission) == kinds


def test_success_by_mission_counts_clauses_and_verbs_once_per_episode() -> None:
    missions = [
        "go to a box",
        "go to a key, then go to a ball",  # "go to" counted once for this episode
        "put a key next to a ball and open a door",
        "pick up the box",
    ]
    table = success_by_mission(missions, [True, False, False, True])
    assert table["1 clause"] == {"episodes": 2, "success_rate": 1.0}
    assert table["2 clauses"] == {"episodes": 2, "success_rate": 0.0}
    assert table["go to"] == {"episodes": 2, "success_rate": 0.5}
    assert table["put"] == table["open"] == {"episodes": 1, "success_rate": 0.0}
    assert table["pick up"] == {"episodes": 1, "success_rate": 1.0}


def test_success_by_mission_refuses_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="2 missions for 1 outcomes"):
        success_by_mission(["go to a box", "open a door"], [True])
