"""Benchmark plots: success against demonstrations (or per level, for a joint run), and a 2-D map
of the skill memory's keys.

Plots read result files only (``python -m skillbank.report.plots RESULT.json``); ``skillbank bench
babyai`` runs that entry point after writing its JSON (report and cli are both top-layer entry
points and do not import each other).

matplotlib is the ``report`` extra and is imported only when a plot is drawn; without it the
functions raise :class:`~skillbank.errors.MissingExtraError` naming the install command. Plots are
written with the non-interactive Agg backend.

Example:
    >>> plot_success_vs_demos(result_json["levels"], "runs/success.png")  # doctest: +SKIP
    >>> plot_skill_keys(keys, ids, "runs/skill-keys.png")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from skillbank.errors import MissingExtraError

__all__ = [
    "main",
    "pca_2d",
    "plot_bench_result",
    "plot_skill_keys",
    "plot_success_by_level",
    "plot_success_vs_demos",
]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:
        raise MissingExtraError(
            "plots need matplotlib, which is not installed", hint="pip install 'skillbank[report]'"
        ) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: Path | str) -> Path:
    """Lay out ``fig``, write it to ``path`` (PNG, parents made) and close it."""
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


_METHODS = (("skillbank_success", "skillbank"), ("flat_bc_success", "flat BC"))
"""Result keys of the two methods every success plot shows, with their labels."""


def pca_2d(keys: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float64]:
    """Project (N, Z) keys onto their first two principal components: (N, 2).

    Fewer than two components (N < 2 or Z < 2) are padded with zeros.
    """
    x = np.asarray(keys, dtype=np.float64)
    out = np.zeros((len(x), 2))
    if len(x) < 2 or x.ndim != 2 or x.shape[1] == 0:
        return out
    centred = x - x.mean(axis=0)  # (N, Z)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)  # vt: (min(N, Z), Z)
    projected = centred @ vt[:2].T  # (N, <=2)
    out[:, : projected.shape[1]] = projected
    return out


def plot_success_vs_demos(levels: Sequence[Mapping[str, Any]], path: Path | str) -> Path:
    """Success rate against demonstrations used, one point per level, skillbank vs flat BC.

    Args:
        levels: Per-level records with ``level``, ``demos_cumulative`` (or ``demos``),
            ``skillbank_success`` and ``flat_bc_success`` (``None`` where not measured).
        path: Output image (PNG).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for (key, label), marker in zip(_METHODS, ("o", "s"), strict=True):
        points = [
            (r.get("demos_cumulative", r["demos"]), 100 * r[key], r["level"])
            for r in levels
            if r.get(key) is not None
        ]
        if not points:
            continue
        xs, ys, _ = zip(*points, strict=True)
        ax.plot(xs, ys, marker=marker, label=label)
        for x, y, name in points:
            ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("demonstrations seen (cumulative over the curriculum)")
    ax.set_ylabel("success rate on held-out seeds (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(plt, fig, path)


def plot_success_by_level(levels: Sequence[Mapping[str, Any]], path: Path | str) -> Path:
    """Success rate per level, skillbank and flat BC side by side (bars): for runs where every
    level was learned from the same demonstrations (``--protocol joint``).

    Args:
        levels: Per-level records with ``level``, ``skillbank_success`` and ``flat_bc_success``
            (``None`` where not measured).
        path: Output image (PNG).
    """
    plt = _pyplot()
    names = [r["level"] for r in levels]
    x = np.arange(len(names), dtype=np.float64)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(names) + 2), 4.5))
    for offset, (key, label) in zip((-0.2, 0.2), _METHODS, strict=True):
        heights = [100 * r[key] if r.get(key) is not None else np.nan for r in levels]
        ax.bar(x + offset, heights, width=0.4, label=label)
    ax.set_xticks(x, names, rotation=30, ha="right")
    total = levels[0].get("demos_cumulative") if levels else None
    ax.set_xlabel(f"level (all learned from the same {total} demonstrations)")
    ax.set_ylabel("success rate on held-out seeds (%)")
    ax.set_ylim(0, 102)
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    return _save(plt, fig, path)


def plot_skill_keys(
    keys: npt.NDArray[np.floating[Any]], labels: Sequence[str], path: Path | str
) -> Path:
    """A 2-D map (PCA) of the memory's (N, Z) skill keys, each point labelled.

    Args:
        keys: (N, Z) keys.
        labels: (N,) names to print beside the points.
        path: Output image (PNG).
    """
    if len(labels) != len(keys):
        raise ValueError(f"got {len(labels)} labels for {len(keys)} keys")
    plt = _pyplot()
    xy = pca_2d(keys)  # (N, 2)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(xy[:, 0], xy[:, 1], s=30)
    for (x, y), name in zip(xy, labels, strict=True):
        ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(f"skill keys ({len(labels)} skills, PCA)")
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def plot_bench_result(result_json: Path | str, out_dir: Path | str | None = None) -> list[Path]:
    """Draw every plot of a ``skillbank bench babyai`` result file.

    Writes ``success.png`` (success vs demonstrations; per level for a joint run) and, when
    the file lists skill keys, ``skill-keys.png`` into ``out_dir`` (default: beside the file).

    Returns:
        The images written.
    """
    path = Path(result_json)
    payload = json.loads(path.read_text())
    directory = Path(out_dir) if out_dir is not None else path.parent
    success = plot_success_by_level if payload.get("protocol") == "joint" else plot_success_vs_demos
    written = [success(payload["levels"], directory / "success.png")]
    keys = np.asarray(payload.get("skill_keys") or [], dtype=np.float32)
    if len(keys):
        written.append(
            plot_skill_keys(keys, list(payload["skill_ids"]), directory / "skill-keys.png")
        )
    return written


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m skillbank.report.plots RESULT.json [OUT_DIR]``: draw a result file's plots."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not 1 <= len(args) <= 2:
        raise SystemExit("usage: python -m skillbank.report.plots RESULT.json [OUT_DIR]")
    for image in plot_bench_result(args[0], args[1] if len(args) == 2 else None):
        sys.stdout.write(f"{image}\n")


if __name__ == "__main__":
    main()
