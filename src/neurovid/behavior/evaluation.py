"""Evaluation of behavior labels and action segments against ground-truth annotations.

Annotations are a CSV with exactly the columns ``start_frame,stop_frame,label``:
0-based frame indices of the video, start inclusive, stop exclusive, one row
per bout of a non-background behavior (frames in no bout are ``background``,
"other" by default). Two measures:

- frame level: macro F1 over the labels (:func:`frame_macro_f1`), from the
  per-frame labels that segments imply (:func:`frames_from_segments`);
- segment level: precision and recall at IoU >= 0.5 (:func:`segment_precision_recall`):
  predicted and true segments are matched one-to-one, greedily by IoU, and a
  match needs the same label.

:func:`evaluate` puts both in one table (one row per label plus ``all``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neurovid.errors import InputError
from neurovid.io import PathLike, write_table

ANNOTATION_COLUMNS = ("start_frame", "stop_frame", "label")
FIX_FRAMES = "annotations use 0-based frame indices of this video with stop exclusive (stop_frame <= {n} for {n} frames{at}); fix or drop the row, or check that the file belongs to this video."


def read_annotations(path: PathLike, n_frames: int, fps: float | None = None) -> pd.DataFrame:
    """Read and check an annotation CSV against a video of ``n_frames`` frames.

    Returns ``start_frame``, ``stop_frame`` (int64), ``label`` (str), sorted by
    start, plus ``start_s``/``stop_s`` when ``fps`` is given. Raises
    :class:`InputError` naming the file, the row (data rows from 1; the line
    in the file is one more, for the header) and the fix for: a missing file, missing or
    unknown columns, non-integer or negative frames, ``stop_frame <= start_frame``,
    frames beyond the video's length, empty labels and overlapping bouts.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            path, "the annotation file does not exist.", "check the path in the sheet."
        )
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(
            path,
            f"cannot be read as CSV ({err}).",
            "write a comma-separated file with the header start_frame,stop_frame,label.",
        ) from err
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in ANNOTATION_COLUMNS if c not in table.columns]
    unknown = [c for c in table.columns if c not in ANNOTATION_COLUMNS]
    if missing or unknown:
        problem = []
        if missing:
            problem.append(f"lacks the columns {missing}")
        if unknown:
            problem.append(f"has unknown columns {unknown}")
        raise InputError(
            path,
            f"the annotation table {' and '.join(problem)}.",
            "use exactly the header start_frame,stop_frame,label (comma-separated, frames 0-based, stop exclusive).",
            field=", ".join(missing + unknown),
        )
    at = f" at {fps:g} fps" if fps else ""
    fix = FIX_FRAMES.format(n=n_frames, at=at)
    frames = {}
    for column in ("start_frame", "stop_frame"):
        values = pd.to_numeric(table[column].str.strip(), errors="coerce")
        bad = values.isna() | (values != values.round()) | (values < 0)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise InputError(
                path,
                f"row {row + 1} (line {row + 2}): {column} = {table[column].iloc[row]!r} is not a non-negative integer frame index.",
                fix,
                field=column,
            )
        frames[column] = values.to_numpy(np.int64)
    start, stop = frames["start_frame"], frames["stop_frame"]
    label = table["label"].str.strip().to_numpy(dtype=object)
    checks = (
        (stop <= start, "stop_frame", lambda r: f"stop_frame {stop[r]} is not after start_frame {start[r]}"),
        (stop > n_frames, "stop_frame", lambda r: f"stop_frame {stop[r]} exceeds the video's length of {n_frames} frames"),
        (start >= n_frames, "start_frame", lambda r: f"start_frame {start[r]} is beyond the video's last frame {n_frames - 1}"),
        (label == "", "label", lambda r: "the label is empty"),
    )  # fmt: skip
    for bad, column, say in checks:
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(
                path,
                f"row {row + 1} (line {row + 2}: {start[row]},{stop[row]},{label[row]}): {say(row)}.",
                fix if column != "label" else "give every bout a label.",
                field=column,
            )
    out = pd.DataFrame({"start_frame": start, "stop_frame": stop, "label": label.astype(str)})
    out["row"] = np.arange(len(out)) + 1
    out = out.sort_values(["start_frame", "stop_frame"], kind="stable").reset_index(drop=True)
    overlap = out["start_frame"].to_numpy()[1:] < out["stop_frame"].to_numpy()[:-1]
    if overlap.any():
        k = int(np.flatnonzero(overlap)[0])
        a, b = out.iloc[k], out.iloc[k + 1]
        raise InputError(
            path,
            f"rows {a['row']} and {b['row']} overlap ([{a['start_frame']}, {a['stop_frame']}) {a['label']} and [{b['start_frame']}, {b['stop_frame']}) {b['label']}): a frame has one label.",
            "split or trim the bouts so that they do not overlap (stop_frame is exclusive).",
            field="start_frame",
        )
    out = out.drop(columns="row")
    if fps:
        out["start_s"] = out["start_frame"] / fps
        out["stop_s"] = out["stop_frame"] / fps
    return out


def merge_as(segments: pd.DataFrame, label: str) -> pd.DataFrame:
    """Every bout relabelled ``label``; bouts that touch or overlap become one.

    For scoring action / no-action segments (stage 1) against multi-label
    annotations: an ``investigation`` bout followed at once by ``attack`` is one action.
    """
    table = segments[["start_frame", "stop_frame"]].sort_values("start_frame", kind="stable")
    merged: list[list[int]] = []
    for start, stop in table.itertuples(index=False):
        if merged and int(start) <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], int(stop))
        else:
            merged.append([int(start), int(stop)])
    return pd.DataFrame(
        {
            "start_frame": np.array([a for a, _ in merged], dtype=np.int64),
            "stop_frame": np.array([b for _, b in merged], dtype=np.int64),
            "label": pd.Series([label] * len(merged), dtype=object),
        }
    )


def frames_from_segments(
    segments: pd.DataFrame, n_frames: int, background: str = "other"
) -> np.ndarray:
    """Per-frame labels [n_frames] (str) from segments; frames outside every segment get ``background``.

    Where segments overlap, the later row wins.
    """
    labels = np.full(n_frames, background, dtype=object)
    for start, stop, label in segments[list(ANNOTATION_COLUMNS)].itertuples(index=False):
        labels[max(int(start), 0) : min(int(stop), n_frames)] = str(label)
    return labels.astype(str)


def frame_f1(
    true: Sequence[str] | np.ndarray, pred: Sequence[str] | np.ndarray, labels: Sequence[str]
) -> np.ndarray:
    """Per-label frame F1 [len(labels)] (0 where a label is neither true nor predicted anywhere)."""
    from sklearn.metrics import f1_score

    true, pred = np.asarray(true, dtype=str), np.asarray(pred, dtype=str)
    if true.shape != pred.shape:
        raise ValueError(f"{true.shape[0]} true but {pred.shape[0]} predicted frame labels")
    return f1_score(true, pred, labels=list(labels), average=None, zero_division=0.0)


def frame_macro_f1(
    true: Sequence[str] | np.ndarray,
    pred: Sequence[str] | np.ndarray,
    labels: Sequence[str] | None = None,
) -> float:
    """Unweighted mean over ``labels`` of the per-label frame F1 (default: every label seen)."""
    if labels is None:
        labels = sorted(set(np.asarray(true, str).tolist()) | set(np.asarray(pred, str).tolist()))
    return float(np.mean(frame_f1(true, pred, labels)))


def segment_iou(
    a_start: np.ndarray | int,
    a_stop: np.ndarray | int,
    b_start: np.ndarray | int,
    b_stop: np.ndarray | int,
) -> np.ndarray | float:
    """Temporal IoU of half-open frame intervals ``[start, stop)``; broadcasts (e.g. [P, 1] x [1, G])."""
    a_start, a_stop = np.asarray(a_start, float), np.asarray(a_stop, float)
    b_start, b_stop = np.asarray(b_start, float), np.asarray(b_stop, float)
    inter = np.clip(np.minimum(a_stop, b_stop) - np.maximum(a_start, b_start), 0, None)
    union = (a_stop - a_start) + (b_stop - b_start) - inter
    iou = np.divide(inter, union, out=np.zeros(np.broadcast(inter, union).shape), where=union > 0)
    return float(iou) if iou.ndim == 0 else iou


def match_segments(
    pred: pd.DataFrame, truth: pd.DataFrame, iou: float = 0.5
) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matches ``(pred row, truth row, IoU)``.

    Candidate pairs have the same label and IoU >= ``iou``; the highest IoU is
    taken first (ties: earlier prediction, then earlier truth), and each
    segment is used at most once.
    """
    if not len(pred) or not len(truth):
        return []
    overlap = segment_iou(
        pred["start_frame"].to_numpy()[:, None],
        pred["stop_frame"].to_numpy()[:, None],
        truth["start_frame"].to_numpy()[None, :],
        truth["stop_frame"].to_numpy()[None, :],
    )
    same = pred["label"].astype(str).to_numpy()[:, None] == truth["label"].astype(str).to_numpy()
    p_idx, t_idx = np.nonzero(same & (overlap >= iou) & (overlap > 0))
    order = sorted(zip(p_idx, t_idx, strict=True), key=lambda pt: (-overlap[pt], pt[0], pt[1]))
    used_p: set[int] = set()
    used_t: set[int] = set()
    matches = []
    for p, t in order:
        if p not in used_p and t not in used_t:
            used_p.add(int(p))
            used_t.add(int(t))
            matches.append((int(p), int(t), float(overlap[p, t])))
    return matches


def _ratio(num: int, den: int) -> float:
    return num / den if den else float("nan")


def segment_precision_recall(
    pred: pd.DataFrame, truth: pd.DataFrame, iou: float = 0.5, labels: Sequence[str] | None = None
) -> pd.DataFrame:
    """Segment precision / recall / F1 at IoU >= ``iou``, per label and over ``all``.

    Columns: ``label``, ``n_true``, ``n_pred``, ``matched``, ``precision``
    (matched / n_pred), ``recall`` (matched / n_true), ``f1``; NaN where the
    denominator is 0. The ``all`` row pools every label (micro average).
    """
    matches = match_segments(pred, truth, iou)
    matched_labels = pd.Series([str(truth["label"].iloc[t]) for _, t, _ in matches], dtype=object)
    if labels is None:
        seen = set(truth["label"].astype(str)) | set(pred["label"].astype(str))
        labels = sorted(seen)
    rows = []
    for label in [*labels, None]:
        n_true = int((truth["label"].astype(str) == label).sum()) if label else len(truth)
        n_pred = int((pred["label"].astype(str) == label).sum()) if label else len(pred)
        hits = int((matched_labels == label).sum()) if label else len(matches)
        precision, recall = _ratio(hits, n_pred), _ratio(hits, n_true)
        f1 = _ratio(2 * hits, n_pred + n_true)
        rows.append((label or "all", n_true, n_pred, hits, precision, recall, f1))
    return pd.DataFrame(
        rows, columns=["label", "n_true", "n_pred", "matched", "precision", "recall", "f1"]
    )


def evaluate(
    pred: pd.DataFrame,
    truth: pd.DataFrame,
    n_frames: int,
    *,
    labels: Sequence[str] | None = None,
    iou: float = 0.5,
    background: str = "other",
) -> pd.DataFrame:
    """One table: segment precision/recall/F1 at ``iou`` plus frame F1, per label and ``all``.

    ``frame_f1`` is the per-label frame F1 over the whole video (``background``
    included as a label of its own row), and on the ``all`` row the frame macro
    F1 over ``labels`` plus ``background``. ``labels`` defaults to the labels
    of either table.
    """
    if labels is None:
        labels = sorted(set(truth["label"].astype(str)) | set(pred["label"].astype(str)))
    labels = [label for label in labels if label != background]
    table = segment_precision_recall(pred, truth, iou, labels)
    true_frames = frames_from_segments(truth, n_frames, background)
    pred_frames = frames_from_segments(pred, n_frames, background)
    frame_labels = [background, *labels]
    per_label = frame_f1(true_frames, pred_frames, frame_labels)
    background_row = pd.DataFrame(
        [{"label": background, "n_true": 0, "n_pred": 0, "matched": 0}]
    ).astype({"n_true": int, "n_pred": int, "matched": int})
    table = pd.concat([background_row, table], ignore_index=True)
    table["frame_f1"] = [*per_label, float(np.mean(per_label))]
    for column in ("precision", "recall", "f1"):
        table.loc[0, column] = float("nan")
    table.insert(1, "iou_threshold", float(iou))
    table["frames_true"] = [int((true_frames == lab).sum()) for lab in frame_labels] + [n_frames]
    table["frames_pred"] = [int((pred_frames == lab).sum()) for lab in frame_labels] + [n_frames]
    return table


def write_evaluation(
    path: PathLike, table: pd.DataFrame, provenance: Mapping[str, Any] | None = None
) -> None:
    """Write the evaluation table as TSV, atomically, plus ``<name>.json`` with the provenance."""
    path = Path(path)
    write_table(path, table, provenance=provenance)
