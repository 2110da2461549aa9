"""The figure of a SlowFast model's PCs (:mod:`neurovid.interpret`): per PC, the group t map
of the subjects' weights beside word clouds of the Kinetics classes loading on it.

Apart from :mod:`neurovid.plots` because it needs ``wordcloud``, which only the figures
env carries (the other stages import :mod:`neurovid.plots` too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from neurovid.io import PathLike
from neurovid.plots import plt, save_figure


def top_classes(
    loadings: np.ndarray, class_names: Sequence[str], sign: int, top: int
) -> dict[str, float]:
    """The ``top`` classes with the largest loadings of ``sign`` (+1 / -1) on one PC,
    largest first, as {name: |loading|} (a word cloud's word weights)."""
    signed = np.asarray(loadings, dtype=np.float64) * np.sign(sign)
    order = [i for i in np.argsort(-signed, kind="stable") if signed[i] > 0][:top]
    return {str(class_names[i]): float(signed[i]) for i in order}


def word_cloud(words: Mapping[str, float], color: str, seed: int = 0) -> np.ndarray:
    """A word cloud image [H, W, 3] of ``words`` sized by weight, all in ``color``
    (wordcloud's bundled font, horizontal words, fixed layout seed)."""
    from wordcloud import WordCloud

    if not words:
        return np.full((260, 420, 3), 255, dtype=np.uint8)
    cloud = WordCloud(
        width=420,
        height=260,
        background_color="white",
        prefer_horizontal=1.0,
        max_words=len(words),
        relative_scaling=0.8,
        random_state=seed,
        color_func=lambda *args, **kwargs: color,
    ).generate_from_frequencies(dict(words))
    return cloud.to_array()


#: Word colours: the ends of the glass brains' cold_hot colour map.
POSITIVE_COLOR, NEGATIVE_COLOR = "#c0392b", "#1f4e99"


def pc_maps_figure(
    t_img,
    fdr_mask_img,
    components: np.ndarray,
    class_names: Sequence[str],
    explained: np.ndarray,
    n_pcs: int,
    path: PathLike,
    title: str,
    provenance: Mapping[str, Any],
    top: int = 30,
    seed: int = 0,
) -> None:
    """One row per PC (the first ``n_pcs``): the FDR-thresholded group t map of the
    subjects' weights on the PC (4-D ``t_img``/``fdr_mask_img``, PC on the 4th axis) as
    a glass brain (red: t > 0, blue: t < 0), and two word clouds of the Kinetics classes
    weighted by their loadings (``components`` [K, C]): positive loadings in red,
    negative in blue. A red voxel responds more to stimuli scoring high on the PC, i.e.
    to the red classes. The words and loadings drawn go into the PNG's provenance
    (``plotted``)."""
    import nibabel as nib
    from nilearn import plotting

    t_all = np.asarray(t_img.get_fdata(), dtype=np.float32)
    keep_all = np.asarray(fdr_mask_img.get_fdata()) > 0
    n_pcs = min(int(n_pcs), t_all.shape[-1], len(components))
    fig = plt.figure(figsize=(16, 3.2 * n_pcs))
    grid = fig.add_gridspec(n_pcs, 3, width_ratios=(2.4, 1, 1), wspace=0.05, hspace=0.25)
    plotted: dict[str, Any] = {}
    for pc in range(n_pcs):
        shown = np.where(keep_all[..., pc], np.nan_to_num(t_all[..., pc]), 0).astype(np.float32)
        magnitudes = np.abs(shown[shown != 0])
        threshold = float(magnitudes.min()) if magnitudes.size else 1e-6
        vmax = (
            float(max(np.percentile(magnitudes, 99), threshold + 1e-6)) if magnitudes.size else 1.0
        )
        label = f"PC {pc + 1} ({100 * float(explained[pc]):.1f}% of class variance)"
        plotting.plot_glass_brain(
            nib.Nifti1Image(shown, t_img.affine),
            display_mode="lyrz",
            colorbar=True,
            plot_abs=False,
            threshold=threshold * 0.999,
            vmax=vmax,
            symmetric_cbar=True,
            cmap="cold_hot",
            figure=fig,
            axes=fig.add_subplot(grid[pc, 0]),
            title=f"{label}: t, {int((shown != 0).sum())} voxels significant",
        )
        words = {}
        for column, (sign, color, side) in enumerate(
            ((1, POSITIVE_COLOR, "positive"), (-1, NEGATIVE_COLOR, "negative")), start=1
        ):
            words[side] = top_classes(components[pc], class_names, sign, top)
            ax = fig.add_subplot(grid[pc, column])
            ax.imshow(word_cloud(words[side], color, seed), interpolation="bilinear")
            ax.set_axis_off()
            ax.set_title(f"PC {pc + 1} {side} loadings", fontsize=9, color=color)
        # as [word, loading] pairs, largest first (JSON objects would be key-sorted)
        plotted[f"PC{pc + 1}"] = {
            side: [[w, v] for w, v in ws.items()] for side, ws in words.items()
        }
    fig.suptitle(title, y=1.0)
    save_figure(fig, path, {**dict(provenance), "plotted": plotted})
