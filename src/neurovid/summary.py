"""The results summary a scientist reads first: what each model found, in numbers.

:func:`summarize` reads the workflow's results (paths in, tables out) and
:func:`front_page` turns them into the report's front page (reStructuredText,
included by ``report/workflow.rst``). Tables:

``encoding`` (one row per model and subject; ``summary.tsv``)
    ``n_targets`` (targets with a held-out r), ``mean_r`` (mean held-out r over
    them), ``top_decile_r`` (mean of the highest tenth of those r, at least one
    target: :func:`top_decile_mean`), with repeated stimuli ``ceiling_fraction``
    (:func:`ceiling_fraction`: held-out R² on the repeats as a share of the
    explainable variance, pooled over targets with ev > 0; for a model with a body
    space, the R² of its fit without it, scores.h5 attr ``ceiling_fit``) and
    ``mean_ev``; for an
    fMRI subject of a model with group statistics, ``n_significant`` (its voxels in
    the group's FDR mask) and ``mean_r_significant``; for a partitioned model, each
    part's mean over targets (``unique_<space>``, ``shared``) and, for fMRI, over
    the group-significant voxels (``unique_<space>_significant``, ...).
``group`` (one row per model with group statistics)
    the group test's numbers from ``results/stats/{model}/summary.json``
    (subjects, tested voxels = the FDR family, significant voxels, alpha,
    smallest significant t, largest t).
``peaks`` (the group map's peak regions)
    the highest clusters of the significant t map (``t`` inside ``fdr_mask``),
    from :func:`nilearn.reporting.get_clusters_table`: world coordinates of each
    cluster's peak in mm (MNI when the data are in an MNI space, as fMRIPrep's
    ``MNI152NLin2009cAsym`` is), its t, its size in mm³ and the group mean r at
    the peak. Coordinates, not region names: nilearn 0.14.1 bundles no
    anatomical atlas (Harvard-Oxford, AAL, ... are downloads; the workflow makes
    none at run time).
``behavior`` (when the behavior stage ran)
    stage ``frames`` (the localizer's per-frame labels: F1 per label and the
    ``macro`` F1), stage ``segments`` (segment precision / recall / F1 at the
    IoU threshold per label and pooled as ``all``), both from
    ``results/behavior/evaluation.tsv`` (the ``all`` video, which pools the held-out
    videos, else the one video); stage ``classifier`` (the frame classifier's
    held-out precision / recall / F1 per class and ``macro``, from its
    ``metrics.tsv``).

Nothing here is fitted: every number is read from held-out scores the earlier
stages computed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neurovid import io
from neurovid.errors import InputError

#: Share of the best targets ``top_decile_r`` averages.
TOP_SHARE = 0.1
#: Cluster peaks listed per model.
N_PEAKS = 5
#: Stats files of a model (results/stats/{model}/) the summary reads.
STATS_FILES = ("summary", "t", "fdr_mask", "mean_r")
#: Smallest cluster of significant voxels reported as a peak region (voxels).
MIN_CLUSTER_VOXELS = 5
#: Snakemake (9.15) report: the JavaScript call its own rst links use to open a result.
REPORT_LINK = "javascript:app.showResultInfo('{path}')"
#: Atlas note shown with the peaks.
PEAKS_NOTE = (
    "Peaks are the cluster peaks of the significant group t map (nilearn "
    "get_clusters_table), in mm of the data's space (MNI for fMRIPrep's MNI152 outputs). "
    "Coordinates, not region names: nilearn 0.14.1 ships no anatomical atlas offline "
    "(Harvard-Oxford, AAL need a download)."
)


@dataclass
class Summary:
    """The summary's tables (see the module docstring)."""

    encoding: pd.DataFrame
    group: pd.DataFrame
    peaks: pd.DataFrame
    behavior: pd.DataFrame

    def to_dict(self) -> dict[str, Any]:
        """Every table as a list of records (NaN as None), for the JSON sidecar."""
        return {
            name: _records(getattr(self, name))
            for name in ("encoding", "group", "peaks", "behavior")
        }


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in table.to_dict(orient="records"):
        out.append(
            {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        )
    return out


# ------------------------------------------------------------------------ numbers


def top_decile_mean(r: np.ndarray, share: float = TOP_SHARE) -> float:
    """Mean of the ``ceil(share * n)`` highest of the ``n`` finite values of ``r`` (NaN if none)."""
    r = np.asarray(r, dtype=np.float64)
    finite = np.sort(r[np.isfinite(r)])[::-1]
    if finite.size == 0:
        return float("nan")
    return float(finite[: max(1, math.ceil(share * finite.size))].mean())


def ceiling_fraction(r2_repeats: np.ndarray, ev: np.ndarray) -> float:
    """Held-out R² on the repeated stimuli as a share of the explainable variance,
    pooled: sum(r2_repeats) / sum(ev) over targets with ev > 0 and a finite R²
    (NaN when none). Pooled rather than a mean of per-target ratios, which a
    target with ev near 0 would dominate."""
    r2_repeats = np.asarray(r2_repeats, dtype=np.float64)
    ev = np.asarray(ev, dtype=np.float64)
    use = np.isfinite(r2_repeats) & np.isfinite(ev) & (ev > 0)
    if not use.any():
        return float("nan")
    return float(r2_repeats[use].sum() / ev[use].sum())


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


# ------------------------------------------------------------------------ encoding


def _load_volume(path: io.PathLike) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        return np.asarray(img.get_fdata(dtype=np.float64)), np.asarray(img.affine)
    except Exception as err:  # nibabel raises several types for bad files
        raise InputError(
            path, f"cannot be read as a NIfTI image ({err}).", "re-run group_stats."
        ) from err


def significant_targets(
    arrays: Mapping[str, np.ndarray],
    fdr_mask: np.ndarray,
    scores_path: io.PathLike,
    mask_path: io.PathLike,
) -> np.ndarray:
    """Which targets of an fMRI scores file lie in the group's FDR mask [N] bool: a voxel
    target in it, or a parcel target (``parcels``/``target_labels``) with a voxel in it
    (the group test paints one result over the whole parcel, :mod:`neurovid.stats`)."""
    if "parcels" in arrays and "target_labels" in arrays and "voxel_ijk" not in arrays:
        parcels = np.asarray(arrays["parcels"])
        if parcels.shape != tuple(fdr_mask.shape):
            raise InputError(
                mask_path,
                f"grid {fdr_mask.shape} differs from {scores_path}'s parcels {parcels.shape}.",
                "re-run group_stats after encode, so both are on the subjects' common grid.",
                field="shape",
            )
        hit = np.unique(parcels[(fdr_mask > 0) & (parcels != 0)])
        return np.isin(np.asarray(arrays["target_labels"]), hit)
    if "voxel_ijk" not in arrays or "mask" not in arrays:
        raise InputError(
            scores_path,
            "has no voxel_ijk/mask: group-significant voxels need an fMRI scores file.",
            "only fMRI subjects of a model enter its group statistics; re-run encode.",
            field="voxel_ijk",
        )
    if tuple(arrays["mask"].shape) != tuple(fdr_mask.shape):
        raise InputError(
            mask_path,
            f"grid {fdr_mask.shape} differs from {scores_path}'s mask {arrays['mask'].shape}.",
            "re-run group_stats after encode, so both are on the subjects' common grid.",
            field="shape",
        )
    ijk = np.asarray(arrays["voxel_ijk"], dtype=np.int64)
    return fdr_mask[ijk[:, 0], ijk[:, 1], ijk[:, 2]] > 0


def encoding_row(
    scores_h5: io.PathLike,
    model: str,
    subject: str,
    fdr_mask: np.ndarray | None = None,
    fdr_mask_path: io.PathLike | None = None,
) -> dict[str, Any]:
    """One ``encoding`` row: a subject's held-out scores (``scores.h5``) in numbers.

    With ``fdr_mask`` (the model's group FDR mask volume), an fMRI subject also gets
    its significant voxels' count, mean r and mean unique/shared variance.
    """
    arrays, attrs = io.read_h5(scores_h5)
    if "r" not in arrays:
        raise InputError(
            scores_h5, "dataset `r` is missing; not a scores file.", "re-run encode.", field="r"
        )
    r = np.asarray(arrays["r"], dtype=np.float64)
    row: dict[str, Any] = {
        "model": model,
        "subject": subject,
        "modality": attrs.get("modality", ""),
        "estimator": attrs.get("estimator", ""),
        "n_targets": int(np.isfinite(r).sum()),
        "mean_r": _nanmean(r),
        "top_decile_r": top_decile_mean(r),
        "ceiling_fraction": float("nan"),
        "mean_ev": float("nan"),
    }
    if "ev" in arrays:
        row["mean_ev"] = _nanmean(arrays["ev"])
    if "ev" in arrays and "r2_repeats" in arrays:
        row["ceiling_fraction"] = ceiling_fraction(arrays["r2_repeats"], arrays["ev"])
    parts = [f"unique_{s}" for s in attrs.get("partition_spaces") or []]
    parts += ["shared"] if parts else []
    significant = None
    if fdr_mask is not None and "voxel_ijk" in arrays:
        significant = significant_targets(arrays, fdr_mask, scores_h5, fdr_mask_path or "fdr_mask")
        row["n_significant"] = int(significant.sum())
        row["mean_r_significant"] = _nanmean(r[significant])
    for part in parts:
        row[part] = _nanmean(arrays[part])
        if significant is not None:
            row[f"{part}_significant"] = _nanmean(np.asarray(arrays[part])[significant])
    return row


# ------------------------------------------------------------------------ group maps


def cluster_peaks(
    t_path: io.PathLike,
    fdr_mask_path: io.PathLike,
    mean_r_path: io.PathLike | None = None,
    n_peaks: int = N_PEAKS,
) -> pd.DataFrame:
    """The ``n_peaks`` clusters of the significant t map with the highest peak t.

    Columns ``rank``, ``x``, ``y``, ``z`` (mm, the image's world space), ``peak_t``,
    ``cluster_size_mm3``, ``mean_r`` (group mean r at the peak voxel; NaN without
    ``mean_r_path``). Clusters are the connected significant voxels with t > 0, at least
    ``MIN_CLUSTER_VOXELS`` of them (:func:`nilearn.reporting.get_clusters_table`, sub-peaks
    dropped). Empty when
    nothing is significant.
    """
    import nibabel as nib
    from nilearn.reporting import get_clusters_table

    columns = ["rank", "x", "y", "z", "peak_t", "cluster_size_mm3", "mean_r"]
    t, affine = _load_volume(t_path)
    mask, _ = _load_volume(fdr_mask_path)
    if mask.shape != t.shape:
        raise InputError(
            fdr_mask_path,
            f"shape {mask.shape} differs from {t_path}'s {t.shape}.",
            "re-run group_stats.",
            field="shape",
        )
    stat = np.where((mask > 0) & np.isfinite(t) & (t > 0), t, 0.0)
    if not (stat > 0).any():
        return pd.DataFrame(columns=columns)
    threshold = float(stat[stat > 0].min()) * (1 - 1e-6)
    # Clusters of at least MIN_CLUSTER_VOXELS: isolated voxels (the FDR's expected false
    # positives) are no region, and nilearn's sub-peak search costs ~20 ms per cluster
    # (~380 one-voxel clusters on the demo: 8 s of the summary's 11).
    table = get_clusters_table(
        nib.Nifti1Image(stat, affine),
        stat_threshold=threshold,
        cluster_threshold=MIN_CLUSTER_VOXELS,
    )
    main = table[table["Cluster ID"].astype(str).str.fullmatch(r"\d+")]
    main = main.sort_values("Peak Stat", ascending=False).head(n_peaks)
    mean_r = _load_volume(mean_r_path)[0] if mean_r_path is not None else None
    rows = []
    inverse = np.linalg.inv(affine)
    for rank, (_, peak) in enumerate(main.iterrows(), start=1):
        xyz = np.array([peak["X"], peak["Y"], peak["Z"]], dtype=np.float64)
        value = float("nan")
        if mean_r is not None:
            i, j, k = np.rint(inverse @ np.append(xyz, 1.0))[:3].astype(int)
            value = float(mean_r[i, j, k])
        rows.append(
            {
                "rank": rank,
                "x": float(xyz[0]),
                "y": float(xyz[1]),
                "z": float(xyz[2]),
                "peak_t": float(peak["Peak Stat"]),
                "cluster_size_mm3": float(peak["Cluster Size (mm3)"]),
                "mean_r": value,
            }
        )
    return pd.DataFrame(rows, columns=columns)


def group_row(model: str, summary_json: io.PathLike) -> dict[str, Any]:
    """One ``group`` row: the group test's numbers (``results/stats/{model}/summary.json``)."""
    import json

    try:
        stats = json.loads(Path(summary_json).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(
            summary_json, f"cannot be read as JSON ({err}).", "re-run group_stats."
        ) from err
    missing = [
        k for k in ("n_subjects", "n_voxels", "n_significant", "fdr_alpha") if k not in stats
    ]
    if missing:
        raise InputError(
            summary_json,
            f"lacks {', '.join(missing)}; not a group_stats summary.",
            "re-run group_stats.",
            field=missing[0],
        )
    none = float("nan")
    return {
        "model": model,
        "n_subjects": int(stats["n_subjects"]),
        "n_voxels_tested": int(stats["n_voxels"]),
        "n_significant": int(stats["n_significant"]),
        "fdr_alpha": float(stats["fdr_alpha"]),
        "alternative": stats.get("alternative", ""),
        "t_threshold": none if stats.get("t_threshold") is None else float(stats["t_threshold"]),
        "max_t": none if stats.get("max_t") is None else float(stats["max_t"]),
    }


# ------------------------------------------------------------------------ behavior

BEHAVIOR_COLUMNS = ["stage", "label", "f1", "precision", "recall", "n"]
EVALUATION_COLUMNS = ("video", "label", "precision", "recall", "f1", "frame_f1", "n_true")


def behavior_table(
    evaluation_tsv: io.PathLike | None = None, classifier_metrics_tsv: io.PathLike | None = None
) -> pd.DataFrame:
    """The ``behavior`` table (see the module docstring); empty when neither file is given.

    ``n`` is the label's true segments (segments), frames (frames: the truth's frames
    of the label) or held-out frames (classifier: support).
    """
    rows: list[dict[str, Any]] = []
    nan = float("nan")
    if evaluation_tsv is not None:
        table = _read_tsv(evaluation_tsv, EVALUATION_COLUMNS)
        pooled = table[table["video"].astype(str) == "all"]
        if pooled.empty:
            videos = table["video"].astype(str).unique()
            if len(videos) != 1:
                raise InputError(
                    evaluation_tsv,
                    f"has {len(videos)} videos but no pooled `all` rows.",
                    "re-run behavior_evaluation.",
                    field="video",
                )
            pooled = table
        iou = pooled["iou_threshold"].iloc[0] if "iou_threshold" in pooled else nan
        for _, row in pooled.iterrows():
            label = str(row["label"])
            frames = row.get("frames_true", nan)
            rows.append(
                {
                    "stage": "frames",
                    "label": "macro" if label == "all" else label,
                    "f1": float(row["frame_f1"]),
                    "precision": nan,
                    "recall": nan,
                    "n": nan if label == "all" else float(frames),
                }
            )
        for _, row in pooled.iterrows():
            if pd.isna(row["precision"]) and pd.isna(row["recall"]) and int(row["n_true"]) == 0:
                continue  # the background label: not a segment label
            rows.append(
                {
                    "stage": f"segments (IoU >= {iou:g})",
                    "label": str(row["label"]),
                    "f1": float(row["f1"]),
                    "precision": float(row["precision"]),
                    "recall": float(row["recall"]),
                    "n": float(row["n_true"]),
                }
            )
    if classifier_metrics_tsv is not None:
        metrics = _read_tsv(
            classifier_metrics_tsv, ("class", "precision", "recall", "f1", "support")
        )
        for _, row in metrics.iterrows():
            rows.append(
                {
                    "stage": "classifier",
                    "label": str(row["class"]),
                    "f1": float(row["f1"]),
                    "precision": float(row["precision"]),
                    "recall": float(row["recall"]),
                    "n": float(row["support"]),
                }
            )
    return pd.DataFrame(rows, columns=BEHAVIOR_COLUMNS)


def _read_tsv(path: io.PathLike, columns: Sequence[str]) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, sep="\t")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise InputError(
            path, f"cannot be read as a TSV table ({err}).", "re-run the step that writes it."
        ) from err
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(
            path,
            f"lacks the column(s) {', '.join(missing)}.",
            "re-run the step that writes it (behavior_evaluation / train_frame_classifier).",
            field=missing[0],
        )
    return table


# ------------------------------------------------------------------------ the summary


def summarize(
    scores: Sequence[tuple[str, str, io.PathLike]],
    stats: Mapping[str, Mapping[str, io.PathLike]] | None = None,
    *,
    evaluation: io.PathLike | None = None,
    classifier_metrics: io.PathLike | None = None,
    n_peaks: int = N_PEAKS,
) -> Summary:
    """Every table of the summary.

    Args:
        scores: ``(model, subject, scores.h5)`` of every encoding model fit.
        stats: per model with group statistics, its files by :data:`STATS_FILES`
            key (``summary`` = summary.json, ``t``, ``fdr_mask``, ``mean_r`` NIfTIs).
        evaluation: ``results/behavior/evaluation.tsv`` when the behavior stage
            scored held-out videos.
        classifier_metrics: the frame classifier's ``metrics.tsv``.
        n_peaks: cluster peaks per model.
    """
    stats = dict(stats or {})
    for model, files in stats.items():
        missing = [k for k in STATS_FILES if k not in files]
        if missing:
            raise ValueError(f"stats of model {model} lack {missing}")
    masks = {model: _load_volume(files["fdr_mask"])[0] for model, files in stats.items()}
    encoding = pd.DataFrame(
        [
            encoding_row(
                path,
                model,
                subject,
                masks.get(model),
                stats[model]["fdr_mask"] if model in stats else None,
            )
            for model, subject, path in scores
        ]
    )
    group = pd.DataFrame(
        [group_row(model, files["summary"]) for model, files in stats.items()],
        columns=[
            "model",
            "n_subjects",
            "n_voxels_tested",
            "n_significant",
            "fdr_alpha",
            "alternative",
            "t_threshold",
            "max_t",
        ],
    )
    peak_tables = [
        cluster_peaks(files["t"], files["fdr_mask"], files["mean_r"], n_peaks).assign(model=model)
        for model, files in stats.items()
    ]
    peaks = (
        pd.concat(peak_tables, ignore_index=True)
        if peak_tables
        else pd.DataFrame(
            columns=["rank", "x", "y", "z", "peak_t", "cluster_size_mm3", "mean_r", "model"]
        )
    )
    peaks = peaks[["model", *[c for c in peaks.columns if c != "model"]]]
    return Summary(
        encoding=encoding,
        group=group,
        peaks=peaks,
        behavior=behavior_table(evaluation, classifier_metrics),
    )


# ------------------------------------------------------------------------ the front page


def report_link(path: str, text: str | None = None) -> str:
    """An RST link that opens a result of the Snakemake report (its own links' call)."""
    return f"`{text or Path(path).name} <{REPORT_LINK.format(path=path)}>`__"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{float(value):.{digits}f}"


def _count(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return str(int(value))


def _list_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return [*lines, ""]


def model_figures(figures: Sequence[str], model: str, subject: str | None = None) -> list[str]:
    """The report figures of a model (``results/figures/{model}/...``) or of one of its
    subjects (``.../{subject}.png`` below it), in the given order."""
    prefix = f"results/figures/{model}/"
    own = [f for f in figures if f.startswith(prefix)]
    if subject is None:
        return [f for f in own if "/" not in f[len(prefix) :]]
    return [f for f in own if "/" in f[len(prefix) :] and Path(f).stem == subject]


def _links(paths: Sequence[str], model: str | None = None) -> str:
    prefix = f"results/figures/{model}/" if model else "results/figures/"
    return (
        ", ".join(report_link(p, p[len(prefix) :] if p.startswith(prefix) else None) for p in paths)
        or "–"
    )


def front_page(
    summary: Summary, figures: Sequence[str] = (), title: str = "Results summary"
) -> str:
    """The report's front page (reStructuredText): per model the held-out scores of each
    subject, the group map's significant voxels and peaks, the variance partition, then
    behavior; every line links the report figures it summarizes (``figures``: the
    registered figure paths, results/figures/...)."""
    lines = [title, "=" * len(title), ""]
    lines += [
        "Held-out scores only (leave-one-run-out; repeats held out together). "
        "*top 10 % r*: mean r of the best tenth of targets; *ceiling*: held-out R² on "
        "repeated stimuli / explainable variance, pooled over targets (a model with a body "
        "space: its fit without it, the ceiling being locked to the stimulus); *sig.*: voxels in "
        "the group FDR mask. Table: ``results/summary/summary.tsv`` (all numbers: "
        "``summary.json``).",
        "",
    ]
    comparison = [f for f in figures if f == "results/figures/model_comparison.png"]
    if comparison:
        lines += [f"All models: {_links(comparison)}.", ""]
    enc, group, peaks = summary.encoding, summary.group, summary.peaks
    for model in dict.fromkeys(enc["model"]) if len(enc) else []:
        rows = enc[enc["model"] == model]
        heading = f"Model {model}"
        lines += [heading, "-" * len(heading), ""]
        parts = [
            c
            for c in rows.columns
            if (c.startswith("unique_") or c == "shared")
            and not c.endswith("_significant")
            and rows[c].notna().any()
        ]
        has_ceiling = rows["ceiling_fraction"].notna().any()
        has_sig = "n_significant" in rows and rows["n_significant"].notna().any()
        header = ["subject", "modality", "targets", "mean r", "top 10 % r"]
        header += ["ceiling"] if has_ceiling else []
        header += ["sig. voxels", "mean r (sig.)"] if has_sig else []
        header += [p.replace("unique_", "unique ") for p in parts]
        if has_sig:
            header += [f"{p.replace('unique_', 'unique ')} (sig.)" for p in parts]
        header += ["figures"]
        table = []
        for _, row in rows.iterrows():
            cells = [
                str(row["subject"]),
                str(row["modality"]),
                _count(row["n_targets"]),
                _fmt(row["mean_r"]),
                _fmt(row["top_decile_r"]),
            ]
            cells += [_fmt(row["ceiling_fraction"])] if has_ceiling else []
            if has_sig:
                cells += [_count(row.get("n_significant")), _fmt(row.get("mean_r_significant"))]
            cells += [_fmt(row[p], 4) for p in parts]
            if has_sig:
                cells += [_fmt(row.get(f"{p}_significant"), 4) for p in parts]
            cells += [_links(model_figures(figures, model, str(row["subject"])), model)]
            table.append(cells)
        lines += _list_table(header, table)
        g = group[group["model"] == model]
        if len(g):
            g = g.iloc[0]
            lines += [
                f"Group map ({g['n_subjects']} subjects, one-sample t-test of Fisher-z r, "
                f"Benjamini-Hochberg FDR q < {g['fdr_alpha']:g}): **{g['n_significant']}** of "
                f"{g['n_voxels_tested']} tested voxels significant"
                + (
                    f" (t >= {g['t_threshold']:.2f}, max t {g['max_t']:.2f})."
                    if g["n_significant"]
                    else "."
                ),
                "",
            ]
            p = peaks[peaks["model"] == model]
            if len(p):
                lines += _list_table(
                    ["peak", "x, y, z (mm)", "t", "cluster (mm³)", "group mean r"],
                    [
                        [
                            str(int(q["rank"])),
                            f"{q['x']:.0f}, {q['y']:.0f}, {q['z']:.0f}",
                            f"{q['peak_t']:.2f}",
                            _count(q["cluster_size_mm3"]),
                            _fmt(q["mean_r"]),
                        ]
                        for _, q in p.iterrows()
                    ],
                )
                lines += [PEAKS_NOTE, ""]
        own = model_figures(figures, model)
        if own:
            lines += [f"Figures: {_links(own, model)}.", ""]
    if len(summary.behavior):
        lines += ["Behavior", "-" * len("Behavior"), ""]
        lines += [
            "Held-out videos (localizer: frames and segments) and held-out frames "
            "(frame classifier); ``n``: true segments, true frames or held-out frames.",
            "",
        ]
        lines += _list_table(
            ["stage", "label", "F1", "precision", "recall", "n"],
            [
                [
                    str(b["stage"]),
                    str(b["label"]),
                    _fmt(b["f1"]),
                    _fmt(b["precision"]),
                    _fmt(b["recall"]),
                    _count(b["n"]),
                ]
                for _, b in summary.behavior.iterrows()
            ],
        )
        behavior_figures = [f for f in figures if f.startswith("results/figures/behavior/")]
        if behavior_figures:
            lines += [f"Figures: {_links(behavior_figures, 'behavior')}.", ""]
    return "\n".join(lines) + "\n"


def write_summary(
    summary: Summary,
    paths: Mapping[str, io.PathLike],
    provenance: Mapping[str, Any],
    figures: Sequence[str] = (),
) -> None:
    """Write ``paths['table']`` (the encoding table, TSV) with its JSON sidecar (every
    table, the peaks note, provenance) and ``paths['front']`` (the front page, RST),
    each atomically."""
    io.write_table(
        paths["table"],
        summary.encoding,
        provenance=provenance,
        **summary.to_dict(),
        peaks_note=PEAKS_NOTE,
        top_share=TOP_SHARE,
    )
    text = front_page(summary, figures)
    with io.atomic_path(paths["front"]) as tmp:
        tmp.write_text(text)


__all__ = [
    "Summary",
    "behavior_table",
    "ceiling_fraction",
    "cluster_peaks",
    "encoding_row",
    "front_page",
    "group_row",
    "report_link",
    "significant_targets",
    "summarize",
    "top_decile_mean",
    "write_summary",
]
