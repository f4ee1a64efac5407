"""k-means with the silhouette rule for how many skills."""

from __future__ import annotations

import numpy as np

from skillbank.learning.cluster import ClusterConfig, cluster_codes, silhouette


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
