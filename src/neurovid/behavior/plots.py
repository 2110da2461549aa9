"""Behavior figures for the report: ethogram, trajectory heat map, speed trace,
confusion matrix, segment timeline vs ground truth.

Each function draws one figure, saves it with :func:`neurovid.plots.save_figure`
(PNG, atomic, provenance in the metadata, stable bytes) and returns the
:class:`matplotlib.figure.Figure` (closed, but its artists can still be read,
which is how the tests check what was drawn). Labels keep one colour across
figures (:func:`label_colors`). Segments are DataFrames with ``start_frame``
(inclusive), ``stop_frame`` (exclusive) and ``label``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from neurovid.io import PathLike
from neurovid.plots import plt, save_figure

BACKGROUND = "other"
# Fixed colours for the demo's labels; any other label gets the next tab10 colour.
KNOWN_COLORS = {"rearing": "tab:orange", "grooming": "tab:green", "other": "0.85"}


def label_colors(labels: Sequence[str]) -> dict[str, Any]:
    """A colour per label: fixed for known labels, tab10 in sorted order for the rest."""
    palette = [c for c in plt.get_cmap("tab10").colors if c is not None]
    out: dict[str, Any] = {}
    others = sorted({str(label) for label in labels} - set(KNOWN_COLORS))
    for label in sorted({str(label) for label in labels}):
        out[label] = KNOWN_COLORS.get(label) or palette[others.index(label) % len(palette)]
    return out


def runs(labels: Sequence[str] | np.ndarray) -> pd.DataFrame:
    """All runs of equal labels: ``start_frame``, ``stop_frame`` (exclusive), ``label``."""
    labels = np.asarray(labels).astype(str)
    if labels.size == 0:
        return pd.DataFrame({"start_frame": [], "stop_frame": [], "label": []})
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts, stops = np.r_[0, change], np.r_[change, labels.size]
    return pd.DataFrame({"start_frame": starts, "stop_frame": stops, "label": labels[starts]})


def _bars(
    ax: Any,
    segments: pd.DataFrame,
    y: float,
    height: float,
    fps: float,
    colors: Mapping[str, Any],
    background: str | None,
) -> None:
    """One ``broken_barh`` per label on row ``y``, in seconds; its ``label`` is the class."""
    for label, group in segments.groupby("label", sort=True):
        if label == background:
            continue
        start = group["start_frame"].to_numpy(float) / fps
        width = (group["stop_frame"].to_numpy(float) - group["start_frame"].to_numpy(float)) / fps
        ax.broken_barh(
            list(zip(start, width, strict=True)),
            (y - height / 2, height),
            facecolors=colors[str(label)],
            label=str(label),
        )


def _legend(ax: Any, colors: Mapping[str, Any], shown: Sequence[str]) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=colors[label], label=label) for label in shown]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)


def ethogram(
    labels_by_video: Mapping[str, Sequence[str] | np.ndarray],
    fps: float,
    path: PathLike,
    *,
    background: str = BACKGROUND,
    title: str = "Ethogram",
    provenance: Mapping[str, Any] | None = None,
) -> plt.Figure:
    """One row per video (top to bottom in the given order), a bar per bout of each label.

    Frames labelled ``background`` are left blank. The x axis is time in s.
    """
    videos = list(labels_by_video)
    all_labels = sorted({str(v) for labels in labels_by_video.values() for v in labels})
    colors = label_colors(all_labels)
    longest = max((len(labels) for labels in labels_by_video.values()), default=0)
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(videos) + 1.4))
    for row, video in enumerate(videos):
        _bars(ax, runs(labels_by_video[video]), -row, 0.8, fps, colors, background)
    ax.set_yticks([-row for row in range(len(videos))], videos)
    ax.set_xlim(0, longest / fps if longest else 1)
    ax.set_ylim(-len(videos) + 0.4, 0.6)
    ax.set_xlabel("time (s)")
    ax.set_title(title)
    _legend(ax, colors, [label for label in all_labels if label != background])
    save_figure(fig, path, provenance or {"step": "ethogram"})
    return fig


def trajectory_heatmap(
    xy_cm: np.ndarray,
    arena: Sequence[float] | None,
    path: PathLike,
    *,
    fps: float | None = None,
    bin_cm: float = 2.0,
    centre_fraction: float | None = 0.5,
    title: str = "Occupancy",
    provenance: Mapping[str, Any] | None = None,
) -> plt.Figure:
    """Time spent per ``bin_cm`` square (s with ``fps``, else frames) with the track on top.

    ``arena`` (x0, y0, width, height in cm, image axes: y down) sets the bins'
    extent and is outlined, with its centre square when ``centre_fraction`` is
    given; without it the track's extent is used. Missing positions are skipped.
    The image's array (``fig.axes[0].images[0]``) is the occupancy, rows = y bins.
    """
    from matplotlib.patches import Rectangle

    xy = np.asarray(xy_cm, dtype=float)
    finite = np.isfinite(xy).all(axis=1)
    if arena is not None:
        x0, y0, w, h = (float(v) for v in arena)
    elif finite.any():
        (x0, y0), (x1, y1) = xy[finite].min(axis=0), xy[finite].max(axis=0)
        w, h = max(x1 - x0, bin_cm), max(y1 - y0, bin_cm)
    else:
        x0, y0, w, h = 0.0, 0.0, bin_cm, bin_cm
    nx, ny = max(int(np.ceil(w / bin_cm)), 1), max(int(np.ceil(h / bin_cm)), 1)
    counts, _, _ = np.histogram2d(
        xy[finite, 1], xy[finite, 0], bins=(ny, nx), range=((y0, y0 + h), (x0, x0 + w))
    )
    occupancy = counts / fps if fps else counts
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    image = ax.imshow(
        occupancy,
        extent=(x0, x0 + w, y0 + h, y0),
        origin="upper",
        cmap="magma",
        interpolation="nearest",
    )
    fig.colorbar(image, ax=ax, label="time (s)" if fps else "frames")
    ax.plot(xy[:, 0], xy[:, 1], color="white", lw=0.5, alpha=0.5)
    if arena is not None:
        ax.add_patch(Rectangle((x0, y0), w, h, fill=False, edgecolor="cyan", lw=1.2))
        if centre_fraction:
            cw, ch = w * centre_fraction, h * centre_fraction
            ax.add_patch(
                Rectangle(
                    (x0 + (w - cw) / 2, y0 + (h - ch) / 2),
                    cw,
                    ch,
                    fill=False,
                    edgecolor="cyan",
                    lw=0.8,
                    ls="--",
                )
            )
    ax.set_xlim(x0, x0 + w)
    ax.set_ylim(y0 + h, y0)  # image axes: y down
    ax.set_aspect("equal")
    ax.set_xlabel("x (cm)")
    ax.set_ylabel("y (cm)")
    ax.set_title(title)
    save_figure(fig, path, provenance or {"step": "trajectory_heatmap"})
    return fig


def speed_trace(
    times: np.ndarray,
    speed: np.ndarray,
    path: PathLike,
    *,
    threshold: float | None = None,
    labels: Sequence[str] | np.ndarray | None = None,
    background: str = BACKGROUND,
    title: str = "Speed",
    provenance: Mapping[str, Any] | None = None,
) -> plt.Figure:
    """Speed (cm/s) over time; the moving threshold as a dashed line; bouts of ``labels``
    (per frame, same length as ``times``) shaded behind the trace.
    """
    times = np.asarray(times, dtype=float)
    speed = np.asarray(speed, dtype=float)
    fig, ax = plt.subplots(figsize=(9, 3))
    if labels is not None and len(times):
        bouts = runs(labels)
        colors = label_colors(bouts["label"].astype(str))
        step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
        for start, stop, label in bouts.itertuples(index=False):
            if label != background:
                ax.axvspan(
                    times[start] - step / 2,
                    times[stop - 1] + step / 2,
                    color=colors[label],
                    alpha=0.3,
                    lw=0,
                )
        _legend(ax, colors, sorted(set(bouts["label"]) - {background}))
    ax.plot(times, speed, color="k", lw=0.8, label="speed")
    if threshold is not None:
        ax.axhline(threshold, color="C3", ls="--", lw=0.8)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("speed (cm/s)")
    ax.set_xlim(times[0] if len(times) else 0, times[-1] if len(times) else 1)
    ax.set_title(title)
    save_figure(fig, path, provenance or {"step": "speed_trace"})
    return fig


def confusion_matrix_figure(
    matrix: np.ndarray,
    classes: Sequence[str],
    path: PathLike,
    *,
    normalize: bool = True,
    title: str = "Confusion matrix",
    provenance: Mapping[str, Any] | None = None,
) -> plt.Figure:
    """Rows = true class, columns = predicted; colour = row fraction (``normalize``) and
    each cell annotated with its count (and fraction).
    """
    counts = np.asarray(matrix, dtype=float)
    if counts.shape != (len(classes), len(classes)):
        raise ValueError(f"confusion matrix {counts.shape} does not match {len(classes)} classes")
    totals = counts.sum(axis=1, keepdims=True)
    fractions = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    shown = fractions if normalize else counts
    size = 1.0 + 0.8 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, label="fraction of true class" if normalize else "count")
    for i in range(len(classes)):
        for j in range(len(classes)):
            text = f"{counts[i, j]:.0f}" + (f"\n{fractions[i, j]:.2f}" if normalize else "")
            dark = shown[i, j] > 0.5 * (shown.max() or 1)
            ax.text(
                j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black"
            )
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    save_figure(fig, path, provenance or {"step": "confusion_matrix"})
    return fig


def segment_timeline(
    predicted_segments: pd.DataFrame,
    truth_segments: pd.DataFrame,
    n_frames: int,
    fps: float,
    path: PathLike,
    *,
    background: str = BACKGROUND,
    title: str = "Segments vs ground truth",
    provenance: Mapping[str, Any] | None = None,
) -> plt.Figure:
    """Two rows, ground truth (top, y = 1) and predicted (y = 0), a bar per segment coloured
    by label; x is time in s over the whole video (``n_frames``).
    """
    labels = sorted(
        set(truth_segments["label"].astype(str)) | set(predicted_segments["label"].astype(str))
    )
    colors = label_colors(labels)
    fig, ax = plt.subplots(figsize=(9, 2.2))
    _bars(ax, truth_segments, 1.0, 0.7, fps, colors, background)
    _bars(ax, predicted_segments, 0.0, 0.7, fps, colors, background)
    ax.set_yticks([1.0, 0.0], ["ground truth", "predicted"])
    ax.set_ylim(-0.6, 1.6)
    ax.set_xlim(0, n_frames / fps)
    ax.set_xlabel("time (s)")
    ax.set_title(title)
    _legend(ax, colors, [label for label in labels if label != background])
    save_figure(fig, path, provenance or {"step": "segment_timeline"})
    return fig
