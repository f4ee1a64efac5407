"""Group segment codes into skills: k-means over a range of k, the count chosen by silhouette.

The rule for how many skills: fit k-means (k-means++ seeding, several restarts) for every k in
``[min_clusters, max_clusters]`` and keep the k with the highest mean silhouette (Rousseeuw,
1987). If no k reaches ``min_silhouette`` the codes form one skill.

Separable splits (``split_silhouette``, off by default): the silhouette of k is an average over
every code, so a cluster made of two tight, well-separated groups can survive when the many
codes of a large diffuse cluster (walks) weigh the score toward fewer clusters. Then each cluster
whose own 2-means split reaches ``split_silhouette`` (and leaves ``min_split_share`` of its codes
on the smaller side) is split in two, again and again, up to ``max_clusters`` (a divisive check in
the spirit of X-means, Pelleg & Moore, 2000). BabyAI, six benchmark levels, the skill encoder's
codes: the silhouette chose three skills, merging pick-up with drop (seed 1) or open with drop
(seed 0), whose splits score 0.94; the clusters bot subgoals keep apart score 0.26-0.51. In the
learn runs (the five hindsight/history switches, the six levels in one call, seeds 0-3) it split
only seed 1's pick-up-and-drop skill: PutNextLocal 81.3% vs 50.0, BossLevel 52.3 vs 50.0 (256
unseen episodes); the other seeds acted exactly as without it.

Merging inseparable pairs (``merge_silhouette``, off by default) proposes one more clustering,
kept when its mean silhouette beats every k's: fit k-means at ``max_clusters`` (over-cluster),
then merge the pair of clusters that is least separable, again and again, while that pair's
silhouette is below ``merge_silhouette``. A pair is scored on a balanced sample (as
many codes from each side), so a large diffuse cluster does not drown a small tight one. The
fragments k-means cuts from one continuous spread of codes (walks heading anywhere) score low
against each other and merge; groups apart from the rest (pick-up, drop, open) score high and
stay. It finds clusterings k-means misses: at k = 4 k-means may cut the walks rather than part
pick-up from drop. BabyAI, the twelve small-budget levels' 23,979 segments, the skill encoder's
codes of seeds 0/1/2 (the README's five switches; success figures there): the k scan chose
3 / 4 / 4 clusters (seed 0 with pick-up and drop as one, purity 0.760, silhouette 0.632; seeds
1 and 2 walks / open / pick-up / drop, purity 0.821, silhouette 0.684 / 0.676); the merged one was
those four for all three seeds (silhouette 0.705 / 0.684 / 0.676), so it changed seed 0 only.
The k scan's pick is fragile (seed 1's codes with k-means seeded 0: k = 8, the walks in six
pieces); merging gave the same four for k-means seeds 0-2 and over-clustering at k = 6, 8 or 10.
Walk fragments scored 0.27-0.46 against each other, the walks against drop, pick-up and open
0.61-0.70, pairs of interactions 0.75-0.95. The rule only merges: groups that k-means at
``max_clusters`` keeps under one centre stay one skill, and where joining them scores higher (a
tight near pair beside a wide spread) the k scan's choice stands.

Example:
    >>> result = cluster_codes(codes, ClusterConfig(max_clusters=8))  # doctest: +SKIP
    >>> result.centres.shape  # (K, Z)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = [
    "ClusterConfig",
    "Clustering",
    "best_kmeans",
    "cluster_codes",
    "kmeans",
    "merge_inseparable",
    "silhouette",
    "split_separable",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """Settings of :func:`cluster_codes`.

    Attributes:
        min_clusters: Smallest k tried (>= 2; one cluster is the fallback).
        max_clusters: Largest k tried (clipped to the number of distinct codes).
        min_silhouette: Below this best silhouette, all codes form one skill.
        num_restarts: k-means restarts per k (the lowest inertia wins).
        max_silhouette_points: Codes subsampled to score the silhouette (it is O(N^2)).
        seed: Seed of seeding and subsampling.
        split_silhouette: Split a chosen cluster in two while its own 2-means split reaches
            this silhouette (see the module); ``None``: never.
        min_split_share: Least share of a cluster's codes on the smaller side of a split.
        merge_silhouette: Also over-cluster at ``max_clusters`` and merge the least separable
            pair while its balanced silhouette is below this (see the module); that clustering
            wins when its mean silhouette beats every k's. ``None``: k-means' k only.
    """

    min_clusters: int = 2
    max_clusters: int = 10
    min_silhouette: float = 0.2
    num_restarts: int = 4
    max_silhouette_points: int = 1500
    seed: int = 0
    split_silhouette: float | None = None
    min_split_share: float = 0.05
    merge_silhouette: float | None = None

    def __post_init__(self) -> None:
        if self.min_clusters < 2 or self.max_clusters < self.min_clusters:
            raise ValueError("ClusterConfig needs 2 <= min_clusters <= max_clusters")
        if self.num_restarts < 1 or self.max_silhouette_points < 10:
            raise ValueError("ClusterConfig.num_restarts >= 1 and max_silhouette_points >= 10")
        if self.split_silhouette is not None and not 0.0 < self.split_silhouette <= 1.0:
            raise ValueError(
                f"ClusterConfig.split_silhouette must be in (0, 1] or None, got "
                f"{self.split_silhouette}"
            )
        if self.merge_silhouette is not None and not -1.0 < self.merge_silhouette <= 1.0:
            raise ValueError(
                f"ClusterConfig.merge_silhouette must be in (-1, 1] or None, got "
                f"{self.merge_silhouette}"
            )
        if self.merge_silhouette is not None and self.split_silhouette is not None:
            raise ValueError(
                "ClusterConfig: set merge_silhouette or split_silhouette, not both (merging "
                "over-clusters and joins; splitting starts from the silhouette's choice); to "
                "split, also set cluster.merge_silhouette=none"
            )
        if not 0.0 < self.min_split_share <= 0.5:
            raise ValueError(
                f"ClusterConfig.min_split_share must be in (0, 0.5], got {self.min_split_share}"
            )


@dataclass(frozen=True, slots=True)
class Clustering:
    """Codes grouped into skills.

    Attributes:
        centres: (K, Z) cluster centres, the skills' keys.
        labels: (N,) cluster of each code.
        silhouettes: k -> mean silhouette of the k tried (where the merged clustering won,
            its count's entry is its own).
    """

    centres: FloatArray
    labels: IntArray
    silhouettes: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.centres.ndim != 2 or self.labels.ndim != 1:
            raise ValueError("Clustering.centres must be (K, Z) and .labels (N,)")

    @property
    def num_clusters(self) -> int:
        """K."""
        return len(self.centres)


def kmeans(
    codes: FloatArray, k: int, rng: np.random.Generator, *, num_iterations: int = 50
) -> tuple[FloatArray, IntArray, float]:
    """Lloyd's k-means with k-means++ seeding on codes (N, Z): centres (k, Z), labels, inertia."""
    n = len(codes)
    centres = [codes[rng.integers(n)]]
    for _ in range(1, k):
        dist = ((codes[:, None, :] - np.stack(centres)[None]) ** 2).sum(-1).min(1)  # (N,)
        total = dist.sum()
        centres.append(
            codes[rng.choice(n, p=dist / total)] if total > 0 else codes[rng.integers(n)]
        )
    centre_array = np.stack(centres)  # (k, Z)
    labels = np.zeros(n, np.int64)
    for _ in range(num_iterations):
        dist = ((codes[:, None, :] - centre_array[None]) ** 2).sum(-1)  # (N, k)
        new = dist.argmin(1)
        for j in range(k):
            if (new == j).any():
                centre_array[j] = codes[new == j].mean(0)
        if np.array_equal(new, labels):
            break
        labels = new
    inertia = float(((codes - centre_array[labels]) ** 2).sum())
    return centre_array, labels, inertia


def best_kmeans(
    codes: FloatArray, k: int, rng: np.random.Generator, restarts: int
) -> tuple[FloatArray, IntArray]:
    """The lowest-inertia of ``restarts`` :func:`kmeans` fits of codes (N, Z): centres (k, Z),
    labels (N,)."""
    fits = [kmeans(codes, k, rng) for _ in range(restarts)]
    centres, labels, _ = min(fits, key=lambda f: f[2])
    return centres, labels


def silhouette(codes: FloatArray, labels: IntArray) -> float:
    """Mean silhouette of codes (N, Z) under labels (N,); 0 for fewer than two clusters."""
    clusters = np.unique(labels)
    if len(clusters) < 2:
        return 0.0
    dist = np.sqrt(((codes[:, None, :] - codes[None]) ** 2).sum(-1))  # (N, N)
    mean_to = np.stack([dist[:, labels == c].mean(1) for c in clusters], axis=1)  # (N, C)
    own = np.searchsorted(clusters, labels)
    sizes = np.array([(labels == c).sum() for c in clusters])[own]
    a = mean_to[np.arange(len(codes)), own] * sizes / np.maximum(sizes - 1, 1)
    mean_to[np.arange(len(codes)), own] = np.inf
    b = mean_to.min(1)
    s = np.where(sizes > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(s.mean())


def cluster_codes(codes: FloatArray, config: ClusterConfig | None = None) -> Clustering:
    """Cluster segment codes (N, Z) into skills, choosing how many by silhouette.

    Raises:
        ValueError: If there are no codes.
    """
    cfg = config or ClusterConfig()
    codes = np.asarray(codes, np.float64)
    if codes.ndim != 2 or len(codes) == 0:
        raise ValueError("cluster_codes: codes must be a non-empty (N, Z) array")
    rng = np.random.default_rng(cfg.seed)
    distinct = len(np.unique(np.round(codes, 6), axis=0))
    sample = rng.permutation(len(codes))[: cfg.max_silhouette_points]
    merge_rng = copy.deepcopy(rng)  # its own stream: the k scan's fits are as without merging
    best: tuple[float, FloatArray, IntArray] | None = None
    silhouettes: dict[int, float] = {}
    for k in range(cfg.min_clusters, min(cfg.max_clusters, distinct) + 1):
        centres, labels = best_kmeans(codes, k, rng, cfg.num_restarts)
        score = silhouette(codes[sample], labels[sample])
        silhouettes[k] = score
        if best is None or score > best[0]:
            best = (score, centres, labels)
    if cfg.merge_silhouette is not None and distinct >= 2:
        merged = _over_cluster_and_merge(
            codes, min(cfg.max_clusters, distinct), sample, cfg, merge_rng
        )
        if best is None or merged[0] > best[0]:
            best = merged
            silhouettes[len(merged[1])] = merged[0]
    if best is None or best[0] < cfg.min_silhouette:
        return Clustering(codes.mean(0, keepdims=True), np.zeros(len(codes), np.int64), silhouettes)
    centres, labels = best[1], best[2]
    if cfg.split_silhouette is not None:
        centres, labels = split_separable(codes, centres, labels, cfg, rng)
    return Clustering(centres, labels, silhouettes)


def split_separable(
    codes: FloatArray,
    centres: FloatArray,
    labels: IntArray,
    config: ClusterConfig,
    rng: np.random.Generator,
) -> tuple[FloatArray, IntArray]:
    """Split clusters of codes (N, Z) in two while a split's own silhouette reaches
    ``config.split_silhouette`` with ``config.min_split_share`` on its smaller side, up to
    ``config.max_clusters``: new centres (K', Z) and labels (N,) (the split halves take the old
    index and K, K+1, ...)."""
    assert config.split_silhouette is not None
    centre_list = list(centres)
    labels = labels.copy()
    pending = list(range(len(centre_list)))
    while pending and len(centre_list) < config.max_clusters:
        j = pending.pop(0)
        members = np.flatnonzero(labels == j)
        sub = codes[members]
        if len(np.unique(np.round(sub, 6), axis=0)) < 2:
            continue
        halves, half = best_kmeans(sub, 2, rng, config.num_restarts)
        share = min(int((half == 0).sum()), int((half == 1).sum())) / len(sub)
        if share < config.min_split_share:
            continue
        sample = rng.permutation(len(sub))[: config.max_silhouette_points]
        if silhouette(sub[sample], half[sample]) < config.split_silhouette:
            continue
        centre_list[j] = halves[0]
        centre_list.append(halves[1])
        labels[members[half == 1]] = len(centre_list) - 1
        pending += [j, len(centre_list) - 1]
    return np.stack(centre_list), labels


def _over_cluster_and_merge(
    codes: FloatArray,
    k: int,
    sample: IntArray,
    config: ClusterConfig,
    rng: np.random.Generator,
) -> tuple[float, FloatArray, IntArray]:
    """k-means at k on codes (N, Z), then :func:`merge_inseparable`: the merged clustering's
    silhouette (on ``sample``), centres (K', Z) and labels (N,)."""
    _, labels = best_kmeans(codes, k, rng, config.num_restarts)
    centres, labels = merge_inseparable(codes, labels, config, rng)
    return silhouette(codes[sample], labels[sample]), centres, labels


def merge_inseparable(
    codes: FloatArray, labels: IntArray, config: ClusterConfig, rng: np.random.Generator
) -> tuple[FloatArray, IntArray]:
    """Merge the least separable pair of clusters of codes (N, Z) while its balanced silhouette
    is below ``config.merge_silhouette``: centres (K', Z) and labels (N,), the surviving
    clusters numbered 0..K'-1 in the order of their old labels."""
    assert config.merge_silhouette is not None
    labels = labels.copy()
    per_side = max(5, config.max_silhouette_points // 2)
    scores: dict[tuple[int, int], float] = {}  # (a, b), a < b -> balanced pair silhouette
    while True:
        ids = np.unique(labels).tolist()
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                if (a, b) not in scores:
                    pair = np.concatenate(
                        [rng.permutation(np.flatnonzero(labels == c))[:per_side] for c in (a, b)]
                    )
                    scores[(a, b)] = silhouette(codes[pair], labels[pair])
        if not scores:
            break
        (a, b), score = min(scores.items(), key=lambda item: item[1])
        if score >= config.merge_silhouette:
            break
        labels[labels == b] = a
        scores = {pair: s for pair, s in scores.items() if a not in pair and b not in pair}
    _, labels = np.unique(labels, return_inverse=True)
    centres = np.stack([codes[labels == j].mean(0) for j in range(int(labels.max()) + 1)])
    return centres, labels.astype(np.int64)
