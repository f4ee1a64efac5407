"""k-means with the silhouette rule for how many skills."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from skillbank.learning.cluster import (
    ClusterConfig,
    cluster_codes,
    kmeans,
    merge_inseparable,
    silhouette,
    split_separable,
)
from skillbank.learning.metrics import cluster_purity


def test_cluster_codes_finds_the_number_of_separated_blobs() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    codes = np.concatenate([c + 0.3 * rng.standard_normal((40, 2)) for c in centres])
    result = cluster_codes(codes, ClusterConfig(max_clusters=8, seed=1))
    assert result.num_clusters == 4
    assert max(result.silhouettes, key=lambda k: result.silhouettes[k]) == 4
    # every blob lands in one cluster
    for b in range(4):
        assert len(set(result.labels[40 * b : 40 * (b + 1)].tolist())) == 1


def test_one_blob_stays_one_skill_and_silhouette_bounds() -> None:
    codes = np.random.default_rng(0).standard_normal((100, 3))
    assert cluster_codes(codes, ClusterConfig(min_silhouette=0.5)).num_clusters == 1
    labels = np.repeat([0, 1], 50)
    assert -1.0 <= silhouette(codes, labels) <= 1.0


def test_merge_equivalent_joins_only_mutually_interchangeable_clusters() -> None:
    from skillbank.learning.skill_vae import merge_equivalent

    cross = np.array(
        [
            [-0.50, -0.52, -4.0],  # 0 and 1 decode each other's segments as well as their own
            [-0.31, -0.30, -3.0],
            [-6.00, -5.00, -0.1],
        ]
    )
    assert merge_equivalent(cross, tolerance=0.05) == [0, 0, 1]
    assert merge_equivalent(cross, tolerance=0.0) == [0, 1, 2]


def _walks_and_two_interactions() -> tuple[np.ndarray, np.ndarray]:
    """A diffuse blob (600 "walks") and two tight groups of 100 near each other (a pick-up and a
    drop), clustered as two: the blob and the merged pair."""
    rng = np.random.default_rng(0)
    codes = np.concatenate(
        [
            rng.standard_normal((600, 2)),
            np.array([10.0, 0.0]) + 0.05 * rng.standard_normal((100, 2)),
            np.array([10.0, 1.0]) + 0.05 * rng.standard_normal((100, 2)),
        ]
    )
    labels = np.repeat([0, 1], [600, 200])
    return codes, labels


def test_a_cluster_of_two_separated_groups_is_split_a_diffuse_one_is_not() -> None:
    codes, labels = _walks_and_two_interactions()
    centres = np.stack([codes[labels == j].mean(0) for j in (0, 1)])
    config = ClusterConfig(split_silhouette=0.7)
    new_centres, new_labels = split_separable(
        codes, centres, labels, config, np.random.default_rng(0)
    )
    assert len(new_centres) == 3
    assert len(set(new_labels[:600].tolist())) == 1  # the walks stay one skill
    pick, drop = new_labels[600:700], new_labels[700:]
    assert len(set(pick.tolist())) == 1 and len(set(drop.tolist())) == 1 and pick[0] != drop[0]
    np.testing.assert_allclose(new_centres[drop[0]], [10.0, 1.0], atol=0.05)
    # no more clusters than max_clusters; a small side (under min_split_share) is no split
    capped = split_separable(
        codes,
        centres,
        labels,
        ClusterConfig(max_clusters=2, split_silhouette=0.7),
        np.random.default_rng(0),
    )
    assert len(capped[0]) == 2
    few = np.concatenate([codes[:700], codes[700:705]])
    few_labels = np.repeat([0, 1], [600, 105])
    few_centres = np.stack([few[few_labels == j].mean(0) for j in (0, 1)])
    assert (
        len(split_separable(few, few_centres, few_labels, config, np.random.default_rng(0))[0]) == 2
    )


def test_cluster_codes_splits_only_when_asked() -> None:
    codes, _ = _walks_and_two_interactions()
    # the silhouette keeps the pair merged (at k = 3 k-means splits the walks instead)
    plain = cluster_codes(codes, ClusterConfig(max_clusters=6, seed=0))
    assert plain.num_clusters == 2 and max(plain.silhouettes.values()) == plain.silhouettes[2]
    split = cluster_codes(codes, ClusterConfig(max_clusters=6, seed=0, split_silhouette=0.7))
    assert split.num_clusters == 3
    assert len(set(split.labels[600:700].tolist()) | set(split.labels[700:].tolist())) == 2
    with pytest.raises(ValueError, match="split_silhouette"):
        ClusterConfig(split_silhouette=1.5)
    with pytest.raises(ValueError, match="min_split_share"):
        ClusterConfig(min_split_share=0.0)


def _walk_spread_and_three_interactions() -> tuple[np.ndarray, np.ndarray]:
    """A wide, continuous spread of 900 "walks" (uniform on a ring, no gaps to cut at) and three
    tight groups of 80 ("open", "pick up", "drop") off it, two of them near each other."""
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, 900)
    radius = rng.uniform(2.0, 4.0, 900)
    walks = np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1)
    groups = [np.array(c) + 0.1 * rng.standard_normal((80, 2)) for c in ([12, 0], [0, 12], [0, 14])]
    truth = np.repeat([0, 1, 2, 3], [900, 80, 80, 80])
    return np.concatenate([walks, *groups]), truth


def test_merging_joins_fragments_of_a_spread_and_keeps_separate_groups() -> None:
    codes, truth = _walk_spread_and_three_interactions()
    for seed in range(3):
        rng = np.random.default_rng(seed)
        fits = [kmeans(codes, 10, rng) for _ in range(4)]
        over = min(fits, key=lambda fit: fit[2])[1]  # the ring in pieces, each group apart
        centres, labels = merge_inseparable(codes, over, ClusterConfig(merge_silhouette=0.55), rng)
        assert len(centres) == 4
        for group in range(4):  # each true group is one cluster, and no two share one
            assert len(set(labels[truth == group].tolist())) == 1
        assert len({int(labels[truth == g][0]) for g in range(4)}) == 4
        np.testing.assert_allclose(centres[labels[-1]], [0, 14], atol=0.1)
    # here the silhouette prefers joining the near pair to cutting the ring: 3 beats the merged 4,
    # so cluster_codes keeps 3 either way; the k scan is the same with merging on
    plain = cluster_codes(codes, ClusterConfig(max_clusters=10, seed=0))
    merged = cluster_codes(codes, ClusterConfig(max_clusters=10, merge_silhouette=0.55, seed=0))
    assert plain.num_clusters == merged.num_clusters == 3
    assert plain.labels[truth == 2][0] == plain.labels[truth == 3][0]
    assert plain.silhouettes == merged.silhouettes


def test_a_merged_clustering_that_scores_lower_loses() -> None:
    # one blob: the fragments merge into one cluster (silhouette 0), the k scan keeps its choice
    codes = np.random.default_rng(0).standard_normal((300, 2))
    plain = cluster_codes(codes, ClusterConfig(min_silhouette=0.0, seed=0))
    merged = cluster_codes(codes, ClusterConfig(min_silhouette=0.0, seed=0, merge_silhouette=0.55))
    assert merged.num_clusters == plain.num_clusters > 1
    np.testing.assert_array_equal(merged.labels, plain.labels)


def test_merge_inseparable_threshold_bounds() -> None:
    codes, truth = _walk_spread_and_three_interactions()
    rng = np.random.default_rng(0)
    # at -1 nothing merges; at 1 everything does
    keep = merge_inseparable(codes, truth, ClusterConfig(merge_silhouette=-0.99), rng)
    assert len(keep[0]) == 4 and np.array_equal(keep[1], truth)
    one = merge_inseparable(codes, truth, ClusterConfig(merge_silhouette=1.0), rng)
    assert len(one[0]) == 1 and (one[1] == 0).all()
    np.testing.assert_allclose(one[0][0], codes.mean(0))
    # labels that skip numbers come back as 0..K'-1
    gappy = merge_inseparable(codes, truth * 3, ClusterConfig(merge_silhouette=-0.99), rng)
    assert np.array_equal(gappy[1], truth)


def test_merge_silhouette_config_errors() -> None:
    with pytest.raises(ValueError, match="merge_silhouette"):
        ClusterConfig(merge_silhouette=1.5)
    with pytest.raises(ValueError, match="not both"):
        ClusterConfig(merge_silhouette=0.5, split_silhouette=0.7)


def test_babyai_codes_interactions_apart_walks_together() -> None:
    """1,500 of the skill encoder's codes of the twelve small-budget BabyAI levels' segments
    (seed 0, float16), with the bot's subgoal of each (to score only): the silhouette's k joins
    pick-up and drop (k-means at k = 4 cuts the walks instead); merging finds walks / open /
    pick-up / drop, at a higher silhouette."""
    data = np.load(Path(__file__).parent / "data" / "babyai_segment_codes.npz")
    codes = data["codes"].astype(np.float64)
    subgoal = data["subgoal_names"][data["subgoal"]]
    plain = cluster_codes(codes, ClusterConfig(seed=1))
    merged = cluster_codes(codes, ClusterConfig(seed=1, merge_silhouette=0.55))
    assert plain.num_clusters == 3 and merged.num_clusters == 4
    assert max(merged.silhouettes.values()) > max(plain.silhouettes.values())
    for labels, expected in ((plain.labels, 0.75), (merged.labels, 0.82)):
        assert cluster_purity(labels.tolist(), subgoal.tolist()) == pytest.approx(
            expected, abs=0.01
        )
    # in the merged clustering each interaction is (almost) one cluster of its own
    majority = {}
    for name in ("Open", "Pickup", "Drop"):
        clusters, counts = np.unique(merged.labels[subgoal == name], return_counts=True)
        assert counts.max() / counts.sum() > 0.98
        majority[name] = clusters[counts.argmax()]
    assert len(set(majority.values())) == 3
    walks = np.isin(subgoal, ["GoNextTo", "Explore"])
    assert np.unique(merged.labels[walks], return_counts=True)[1].max() / walks.sum() > 0.98
