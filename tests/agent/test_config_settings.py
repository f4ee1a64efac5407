"""AgentConfig.with_settings: part.field=value settings, parsed like the field, checked."""

from __future__ import annotations

import pytest

from skillbank.agent import AgentConfig
from skillbank.errors import ConfigError


def test_settings_parse_as_their_fields() -> None:
    config = AgentConfig().with_settings(
        [
            "skill.argument=hindsight",
            "controller.target_copy=true",
            "controller.history=none",
            "controller.hidden_dims=64, 32",
            "skill.learning_rate=3e-4",
            "top_k=2",
            "composites=off",
        ]
    )
    assert config.skill.argument == "hindsight" and config.controller.target_copy is True
    assert config.controller.history is None and config.controller.hidden_dims == (64, 32)
    assert config.skill.learning_rate == 3e-4 and config.top_k == 2 and config.composites is False
    # an unset switch takes true/false too; later settings win
    again = config.with_settings(["controller.history=true", "top_k=3"])
    assert again.controller.history is True and again.top_k == 3
    assert AgentConfig().with_settings([]) == AgentConfig()


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("skill.nope=1", "SkillTrainConfig has no field 'nope'"),
        ("nopart.x=1", "AgentConfig has no part 'nopart'"),
        ("top_k.x=1", "AgentConfig has no part 'top_k'"),
        ("skill=3", "'skill' is a part, not a field"),
        ("top_k=x", "'x' is not a whole number"),
        ("controller.history=maybe", "not true/false/none or a number"),
        ("composites=perhaps", "'perhaps' is not true/false"),
        ("skill.argument=wrong", "must be learned|hindsight"),
        ("top_k=0", "top_k and .explain_candidates must be >= 1"),
        ("skill.argument", "is not part.field=value"),
        ("a.b.c=1", "is not part.field=value"),
    ],
)
def test_bad_settings_are_one_clear_error(setting: str, message: str) -> None:
    with pytest.raises(ConfigError, match="setting") as caught:
        AgentConfig().with_settings([setting])
    assert message in str(caught.value) and caught.value.hint


def test_settings_of_one_part_are_checked_together_in_any_order() -> None:
    # relabel_targets alone is refused (it needs hindsight); given with it, either order works
    config = AgentConfig().with_settings(["skill.relabel_targets=true", "skill.argument=hindsight"])
    assert config.skill.relabel_targets and config.skill.argument == "hindsight"
    with pytest.raises(ConfigError, match="relabels hindsight targets"):
        AgentConfig().with_settings(["skill.relabel_targets=true"])
    assert AgentConfig().with_settings(["top_k=2", "top_k=3"]).top_k == 3


def test_an_optional_field_holding_a_number_can_be_unset() -> None:
    # none unsets a switch that holds a number (splitting needs merging off)
    merging = AgentConfig().with_settings(["cluster.merge_silhouette=0.55"])
    assert merging.cluster.merge_silhouette == 0.55
    config = merging.with_settings(
        ["cluster.merge_silhouette=none", "cluster.split_silhouette=0.7"]
    )
    assert config.cluster.merge_silhouette is None and config.cluster.split_silhouette == 0.7
    with pytest.raises(ConfigError, match=r"cluster\.merge_silhouette=none"):
        merging.with_settings(["cluster.split_silhouette=0.7"])
    with pytest.raises(ConfigError, match="'none' is not a whole number"):
        AgentConfig().with_settings(["cluster.max_clusters=none"])


def test_a_preset_stands_for_its_settings_in_place() -> None:
    from skillbank.agent import SETTING_PRESETS

    bundled = AgentConfig().with_settings(["@hindsight"])
    assert bundled == AgentConfig().with_settings(list(SETTING_PRESETS["hindsight"]))
    assert bundled.skill.argument == "hindsight" and bundled.controller.target_copy is True
    assert bundled.sequence_positions == 32
    # settings after the preset override it, settings before it are overridden by it
    after = AgentConfig().with_settings(["@hindsight", "sequence_positions=12"])
    assert after.sequence_positions == 12
    before = AgentConfig().with_settings(["sequence_positions=12", "@hindsight"])
    assert before.sequence_positions == 32


def test_an_unknown_preset_is_one_clear_error_naming_the_presets() -> None:
    with pytest.raises(ConfigError, match="no preset 'hindsite'") as caught:
        AgentConfig().with_settings(["@hindsite"])
    assert caught.value.hint is not None and "@hindsight" in caught.value.hint


def test_the_hindsight_preset_reads_a_map_only_where_one_is_recorded() -> None:
    from skillbank.nn.grid_trunk import GridSlice

    skill = AgentConfig().with_settings(["@hindsight"]).skill
    assert skill.read_history is True
    image = GridSlice(offset=0, height=7, width=7, channels=20)
    explored = GridSlice(offset=980, height=13, width=13, channels=17)
    unread = AgentConfig().with_settings(["@hindsight", "skill.read_history=false"]).skill
    # no map in the demonstrations: the skills' trunk is the same either way
    assert skill.grid_spec((image,)) == unread.grid_spec((image,))
    # a map: read with the preset, skipped without
    history = ((980, 980 + explored.size),)
    assert skill.grid_spec((image, explored), history=history).grids == (image, explored)
    assert unread.grid_spec((image, explored), history=history).grids == (image,)
