"""Figures for the report: group maps on the brain, score distributions, predicted traces.

Every figure is written atomically as PNG with its provenance (JSON) in the PNG
``Description`` text chunk, and without timestamps, so reruns give the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")  # batch jobs have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from neurovid import __version__  # noqa: E402
from neurovid.io import PathLike, atomic_path, to_json  # noqa: E402


def save_figure(fig: plt.Figure, path: PathLike, provenance: Mapping[str, Any]) -> None:
    """Save ``fig`` as PNG atomically, provenance in the metadata, then close it."""
    metadata = {"Software": f"neurovid {__version__}", "Description": to_json(dict(provenance))}
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, metadata=metadata, bbox_inches="tight")
    plt.close(fig)


def thresholded(t_img, fdr_mask_img):
    """The t map with voxels outside the FDR mask set to 0."""
    import nibabel as nib

    t = np.asarray(t_img.get_fdata(), dtype=np.float32)
    keep = np.asarray(fdr_mask_img.get_fdata()) > 0
    return nib.Nifti1Image(np.where(keep, np.nan_to_num(t), 0).astype(np.float32), t_img.affine)


def display_range(img) -> tuple[float, float]:
    """Colour range of a thresholded map: its smallest shown value to its 99th percentile.

    With few subjects a t map has extreme peaks; the percentile keeps the rest visible.
    """
    values = np.asarray(img.get_fdata())
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return 1e-6, 1.0
    return float(values.min()), float(max(np.percentile(values, 99), values.min() + 1e-6))


def surface_figure(
    t_img, fdr_mask_img, path: PathLike, title: str, provenance: Mapping[str, Any]
) -> None:
    """FDR-thresholded group t map on nilearn's bundled fsaverage5 (both hemispheres, 2 views)."""
    from nilearn import datasets, plotting
    from nilearn.surface import SurfaceImage

    mesh = datasets.load_fsaverage("fsaverage5")
    sulcal = datasets.load_fsaverage_data(
        mesh="fsaverage5", mesh_type="inflated", data_type="sulcal"
    )
    shown = thresholded(t_img, fdr_mask_img)
    surf = SurfaceImage.from_volume(mesh=mesh["pial"], volume_img=shown)
    vmin, vmax = display_range(shown)
    fig, axes = plt.subplots(2, 2, figsize=(9, 7), subplot_kw={"projection": "3d"})
    for row, hemi in enumerate(("left", "right")):
        for col, view in enumerate(("lateral", "posterior")):
            plotting.plot_surf_stat_map(
                surf_mesh=mesh["inflated"],
                stat_map=surf,
                bg_map=sulcal,
                hemi=hemi,
                view=view,
                cmap="hot",
                symmetric_cbar=False,
                vmin=vmin,
                vmax=vmax,
                threshold=vmin,
                colorbar=col == 1,
                axes=axes[row, col],
                figure=fig,
                title=f"{hemi} {view}",
            )
    fig.suptitle(title)
    save_figure(fig, path, provenance)


def glass_brain_figure(
    t_img, fdr_mask_img, path: PathLike, title: str, provenance: Mapping[str, Any]
) -> None:
    """Glass brain of the FDR-thresholded group t map."""
    from nilearn import plotting

    shown = thresholded(t_img, fdr_mask_img)
    vmin, vmax = display_range(shown)
    fig = plt.figure(figsize=(9, 3.5))
    plotting.plot_glass_brain(
        shown,
        display_mode="lyrz",
        colorbar=True,
        plot_abs=False,
        threshold=vmin,
        vmax=vmax,
        symmetric_cbar=False,
        cmap="hot",
        figure=fig,
        title=title,
    )
    save_figure(fig, path, provenance)


def score_histogram(
    scores: Mapping[str, np.ndarray], path: PathLike, title: str, provenance: Mapping[str, Any]
) -> None:
    """Histogram of held-out r per subject (density, shared bins), mean marked."""
    finite = {s: np.asarray(r, dtype=float)[np.isfinite(r)] for s, r in scores.items()}
    values = np.concatenate([r for r in finite.values() if r.size] or [np.zeros(1)])
    bins = np.linspace(min(-0.2, values.min()), max(0.2, values.max()), 50)
    fig, ax = plt.subplots(figsize=(7, 4))
    for subject, r in finite.items():
        label = (
            f"{subject} (n={r.size}, mean r={r.mean():.3f})" if r.size else f"{subject} (no scores)"
        )
        ax.hist(r, bins=bins, histtype="step", density=True, linewidth=1.5, label=label)
    ax.axvline(0, color="k", linewidth=0.8)
    ax.set_xlabel("held-out Pearson r")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(fontsize=8)
    save_figure(fig, path, provenance)


def traces_figure(
    predictions: Mapping[str, np.ndarray],
    path: PathLike,
    title: str,
    seconds: float,
    provenance: Mapping[str, Any],
) -> None:
    """Recorded vs held-out predicted responses of the best targets, first ``seconds`` of a run.

    ``predictions`` has the arrays of an encoding ``predictions.h5``: times, run,
    recorded [T, K], predicted [T, K], target_names [K], r [K].
    """
    runs = np.asarray(predictions["run"]).astype(str)
    first_run = runs[0]
    in_run = runs == first_run
    times = np.asarray(predictions["times"])[in_run]
    window = times <= times[0] + seconds
    names = np.asarray(predictions["target_names"]).astype(str)
    n_targets = len(names)
    fig, axes = plt.subplots(
        n_targets, 1, figsize=(9, 1.6 * n_targets + 0.6), sharex=True, squeeze=False
    )
    for k, ax in enumerate(axes[:, 0]):
        ax.plot(
            times[window],
            predictions["recorded"][in_run][window, k],
            color="0.3",
            lw=1,
            label="recorded",
        )
        ax.plot(
            times[window],
            predictions["predicted"][in_run][window, k],
            color="C3",
            lw=1.2,
            label="predicted (held out)",
        )
        ax.set_ylabel(names[k], fontsize=8)
        ax.text(
            0.99,
            0.9,
            f"r = {predictions['r'][k]:.2f}",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
        )
    axes[0, 0].legend(loc="upper left", fontsize=8, ncol=2)
    axes[-1, 0].set_xlabel(f"time in run {first_run} (s)")
    fig.suptitle(title)
    save_figure(fig, path, provenance)


def model_comparison_figure(
    mean_r: Mapping[str, Mapping[str, float]],
    path: PathLike,
    provenance: Mapping[str, Any],
    title: str = "Held-out prediction accuracy per model",
) -> None:
    """Grouped bars: per subject, the mean held-out r of every model fit on it.

    ``mean_r`` maps model -> {subject label: mean r}; a model missing for a
    subject (another modality) leaves a gap. The plotted values go into the
    PNG's provenance (``plotted``).
    """
    models = list(mean_r)
    subjects = list(dict.fromkeys(s for scores in mean_r.values() for s in scores))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(subjects) * max(len(models), 2)), 4))
    _grouped_bars(ax, mean_r, subjects, fmt="%.2f")
    _finish_bars(ax, subjects, "mean held-out Pearson r", title)
    plotted = {model: {s: float(v) for s, v in scores.items()} for model, scores in mean_r.items()}
    save_figure(fig, path, {**dict(provenance), "plotted": plotted})


def _grouped_bars(
    ax: Any,
    series: Mapping[str, Mapping[str, float]],
    columns: list[str],
    *,
    fmt: str,
    label: Callable[[str], str] = str,
    color: Callable[[int, str], str | None] = lambda j, name: None,
) -> None:
    """One bar series per key of ``series`` ({name: {column: value}}), side by side at
    each column; a column a series lacks is a gap. Values are written on the bars."""
    width = 0.8 / max(len(series), 1)
    for j, (name, values) in enumerate(series.items()):
        xs = [i for i, c in enumerate(columns) if c in values]
        bars = ax.bar(
            np.asarray(xs) + (j - (len(series) - 1) / 2) * width,
            [float(values[columns[i]]) for i in xs],
            width,
            label=label(name),
            color=color(j, name),
        )
        ax.bar_label(bars, fmt=fmt, fontsize=7, padding=1)


def _finish_bars(ax: Any, columns: list[str], ylabel: str, title: str) -> None:
    ax.axhline(0, color="k", linewidth=0.8)
    ax.set_xticks(range(len(columns)), columns, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, frameon=False)


def partition_figure(
    means: Mapping[str, Mapping[str, float]],
    path: PathLike,
    provenance: Mapping[str, Any],
    title: str = "Variance partitioning",
) -> None:
    """Grouped bars per subject: mean held-out unique variance of each space, and shared.

    ``means`` maps subject label -> {part: mean over targets} with the parts in order
    (``unique_<space>`` ..., ``shared``: :func:`neurovid.partition.partition_parts`).
    The plotted values go into the PNG's provenance (``plotted``).
    """
    subjects = list(means)
    parts = list(dict.fromkeys(p for values in means.values() for p in values))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(subjects) * max(len(parts), 2)), 4))
    by_part = {p: {s: v[p] for s, v in means.items() if p in v} for p in parts}
    _grouped_bars(
        ax,
        by_part,
        subjects,
        fmt="%.3f",
        label=lambda p: "shared" if p == "shared" else f"unique: {p.removeprefix('unique_')}",
        color=lambda j, p: "0.6" if p == "shared" else f"C{j}",
    )
    _finish_bars(ax, subjects, "mean held-out R² (unique per space, shared)", title)
    plotted = {s: {p: float(v) for p, v in values.items()} for s, values in means.items()}
    save_figure(fig, path, {**dict(provenance), "plotted": plotted})


def partition_targets_figure(
    unique: Mapping[str, Mapping[str, np.ndarray]],
    path: PathLike,
    provenance: Mapping[str, Any],
    title: str = "Unique variance per target",
) -> None:
    """Per subject, each target (neuron, voxel, parcel) as a point: its unique held-out
    variance of one space against another's, one panel per pair of spaces.

    ``unique`` maps subject label -> {space: unique R² per target [N]} (spaces in
    order). A target explained by one space alone lies along that space's axis; the
    count of targets above 0.05 on each axis goes into the panel and into the PNG's
    provenance (``plotted``).
    """
    subjects = list(unique)
    spaces = list(dict.fromkeys(s for values in unique.values() for s in values))
    pairs = [(a, b) for i, a in enumerate(spaces) for b in spaces[i + 1 :]]
    fig, axes = plt.subplots(
        len(pairs), len(subjects), figsize=(3.2 * len(subjects), 3.0 * len(pairs)), squeeze=False
    )
    plotted: dict[str, dict[str, int]] = {}
    for col, subject in enumerate(subjects):
        values = {s: np.asarray(v, dtype=np.float64) for s, v in unique[subject].items()}
        plotted[subject] = {s: int(np.sum(v > 0.05)) for s, v in values.items()}
        for row, (a, b) in enumerate(pairs):
            ax = axes[row][col]
            x, y = values[a], values[b]
            ax.scatter(x, y, s=4 if len(x) > 500 else 12, alpha=0.5, linewidths=0, rasterized=True)
            ax.axhline(0, color="k", linewidth=0.6)
            ax.axvline(0, color="k", linewidth=0.6)
            ax.set_xlabel(f"unique R²: {a}", fontsize=8)
            ax.set_ylabel(f"unique R²: {b}", fontsize=8)
            counts = f"> 0.05: {plotted[subject][a]} on x,\n{plotted[subject][b]} on y, of {len(x)}"
            ax.text(0.98, 0.97, counts, transform=ax.transAxes, ha="right", va="top", fontsize=7)
            ax.set_title(subject, fontsize=9)
            ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, {**dict(provenance), "plotted": plotted})


def partition_maps_figure(
    images: Mapping[str, Any], path: PathLike, title: str, provenance: Mapping[str, Any]
) -> None:
    """Glass brains of a subject's variance partition, one row per part (``images``:
    label -> volume), on one colour scale: positive values from the smallest shown
    to the 99th percentile of all parts (negative held-out shares are not drawn)."""
    import nibabel as nib
    from nilearn import plotting

    shown = {}
    for label, img in images.items():
        values = np.nan_to_num(np.asarray(img.get_fdata(), dtype=np.float32))
        shown[label] = nib.Nifti1Image(np.clip(values, 0, None), img.affine)
    positive = np.concatenate(
        [np.asarray(img.get_fdata()).ravel() for img in shown.values()] or [np.zeros(1)]
    )
    positive = positive[positive > 0]
    vmax = float(np.percentile(positive, 99)) if positive.size else 1.0
    threshold = min(0.01, vmax / 2)  # shares of R² below 1% are left blank
    fig = plt.figure(figsize=(9, 3.2 * len(shown)))
    for row, (label, img) in enumerate(shown.items()):
        axes = fig.add_axes((0.0, 1 - (row + 1) / len(shown), 1.0, 1 / len(shown) * 0.92))
        plotting.plot_glass_brain(
            img,
            display_mode="lyrz",
            colorbar=True,
            plot_abs=False,
            threshold=threshold,
            vmin=0,
            vmax=max(vmax, threshold * 1.01),
            symmetric_cbar=False,
            cmap="hot",
            figure=fig,
            axes=axes,
            title=label,
        )
    fig.suptitle(title, y=1.02)
    save_figure(fig, path, {**dict(provenance), "vmax": vmax, "threshold": threshold})
