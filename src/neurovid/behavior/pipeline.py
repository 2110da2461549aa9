"""The behavior stage's rule bodies: pose files -> actions, labeled frames, evaluation.

Each function is what one rule runs, built from the stage's libraries
(:mod:`.kinematics`, :mod:`.classifier`, :mod:`.actions`, :mod:`.evaluation`),
so that a script only reads ``snakemake`` and calls one of them.
Frames are 0-based indices of the original video (the one DeepLabCut tracked);
segments are ``[start_frame, stop_frame)``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neurovid.behavior import actions, evaluation
from neurovid.errors import InputError
from neurovid.io import PathLike, atomic_dir, provenance, write_json
from neurovid.video import fps_override_value

log = logging.getLogger(__name__)
#: The label of stage-1 segments (action vs no-action) when stage 2 does not run.
ACTION = "action"


@dataclass(frozen=True)
class VideoTiming:
    fps: float
    n_frames: int


def video_timing(probe_json: PathLike | VideoTiming, fps_override: Any = None) -> VideoTiming:
    """Frame rate (the sheet's ``fps`` override, else the container's) and frame count from probe.json.

    A :class:`VideoTiming` passes through: a pose sequence without a video (CalMS21)
    gives its frame rate and count itself.
    """
    if isinstance(probe_json, VideoTiming):
        return probe_json
    probe = json.loads(Path(probe_json).read_text())["video"]
    fps = fps_override_value(fps_override) or probe["fps"]
    if not fps:
        raise InputError(
            probe_json,
            "the video has no frame rate.",
            "give it in the `fps` column of the videos sheet.",
            field="fps",
        )
    return VideoTiming(float(fps), int(probe["frames"]))


def read_pose_array(
    path: PathLike,
    fps: float,
    *,
    likelihood_cutoff: float = 0.6,
    expected_bodyparts: Sequence[str] | None = None,
    pose_source: str | None = None,
    sequence: str | None = None,
) -> tuple[np.ndarray, list[str], list[str]]:
    """Pose output as ``[T, K, 2]`` (one animal) or ``[T, I, K, 2]`` pixels, NaN where dropped.

    Any format of :mod:`neurovid.behavior.pose_io` (``pose_source``: the sheet's,
    None = detect; ``sequence``: a CalMS21 sequence). Points under
    ``likelihood_cutoff`` become NaN (the action features interpolate them).
    Returns the array, the body parts and the individuals.
    """
    from neurovid.behavior.kinematics import load_pose
    from neurovid.behavior.pose_io import confident_positions

    # load_pose checks the file and its body parts (InputError naming them).
    ds = load_pose(
        path,
        fps,
        expected_bodyparts=expected_bodyparts,
        source=pose_source,
        sequence=sequence,
        all_individuals=True,
    )
    position = confident_positions(ds.position, ds.confidence, likelihood_cutoff)
    position = position.transpose("time", "individuals", "keypoints", "space")
    pose = np.asarray(position.values, dtype=np.float64)
    bodyparts = [str(k) for k in ds.keypoints.values]
    individuals = [str(i) for i in ds.individuals.values]
    return (pose[:, 0] if len(individuals) == 1 else pose), bodyparts, individuals


def _check_frames(pose: np.ndarray, timing: VideoTiming, pose_path: PathLike) -> None:
    if abs(len(pose) - timing.n_frames) > 1:
        raise InputError(
            pose_path,
            f"the pose file has {len(pose)} frames but the video has {timing.n_frames}.",
            "track the same video (the pose of this video_id's file, or its CalMS21 sequence).",
            field="pose",
        )


def _pad(pose: np.ndarray, n_frames: int) -> np.ndarray:
    """Pose rows = video frames (a tracker may drop or add one final frame)."""
    if len(pose) >= n_frames:
        return pose[:n_frames]
    tail = np.full((n_frames - len(pose), *pose.shape[1:]), np.nan)
    return np.concatenate([pose, tail])


@dataclass(frozen=True)
class AnnotatedVideo:
    """One annotated behavior video: the video, its pose file, annotations and probe.

    ``video`` may be None for a pose sequence without its video (stage 1 only), and
    ``probe`` a :class:`VideoTiming`; ``pose_source`` and ``sequence`` are the sheet's
    columns (:mod:`neurovid.behavior.pose_io`).
    """

    video_id: str
    video: str | None
    pose: str
    annotations: str
    probe: str | VideoTiming
    fps_override: Any = None
    pose_source: str | None = None
    sequence: str | None = None


def _features(
    pose_path: PathLike,
    timing: VideoTiming,
    settings: Mapping[str, Any],
    pose_source: str | None = None,
    sequence: str | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    pose, bodyparts, individuals = read_pose_array(
        pose_path,
        timing.fps,
        likelihood_cutoff=settings.get("likelihood_cutoff", 0.6),
        pose_source=pose_source,
        sequence=sequence,
    )
    _check_frames(pose, timing, pose_path)
    pose = _pad(pose, timing.n_frames)
    animals = individuals if pose.ndim == 4 else None
    table = actions.pose_features(
        pose, bodyparts, timing.fps, animals=animals, context_s=settings.get("context_s", 0.5)
    )
    return table, bodyparts


def embedder_from(settings: Mapping[str, Any], threads: int) -> actions.SegmentEmbedder:
    """The stage-2 embedder of the ``behavior.actions.embedder`` config section."""
    return actions.SegmentEmbedder(
        model=str(settings["model"]),
        layers=tuple(settings.get("layers", (-1,))),
        clip_frames=int(settings.get("clip_frames", 8)),
        height=int(settings.get("height", 224)),
        width=int(settings.get("width", 224)),
        batch_size=int(settings.get("batch_size", 1)),
        device=str(settings.get("device", "auto")),
        threads=threads,
    )


def require_video(video: PathLike | None, video_id: str, pose: PathLike | None = None) -> None:
    """Stage 2 embeds each segment's clip: stop with an InputError when there is no video."""
    if video is None or str(video).strip() == "":
        raise InputError(
            pose,
            f"{video_id}: stage 2 of the action localization (segment labels from the clip) "
            "needs the video, and this pose sequence has none.",
            "give the sequence's video in the videos sheet's path column, or run stage 1 only "
            "(train_actions without a stage-2 model, localize without a video: segments "
            "labelled 'action', scored with evaluate_videos(actions_only=True)).",
            field="path",
        )


def train_actions(
    videos: Sequence[AnnotatedVideo],
    settings: Mapping[str, Any],
    stage1_path: PathLike,
    stage2_path: PathLike | None,
    *,
    threads: int = 1,
) -> dict[str, Any]:
    """Fit stage 1 (per-frame action classifier) and stage 2 (segment labeler) on annotated videos.

    Stage 1 learns action vs ``other`` from every frame's pose features; stage 2
    learns each annotated bout's label from its clip's Qwen2-VL embedding.
    Both are pickled (joblib); returns a summary for the provenance sidecar.
    ``stage2_path=None`` fits stage 1 only (pose sequences without video, e.g.
    CalMS21); with a stage-2 path, a video without its file stops with an InputError.
    """
    if stage2_path is not None:
        for item in videos:
            require_video(item.video, item.video_id, item.pose)
    if not videos:
        raise InputError(
            None,
            "no annotated behavior video is listed for training.",
            "list video_ids with an `annotations` file in behavior.actions.train_videos.",
            field="behavior.actions.train_videos",
        )
    features, targets, bouts_by_video = [], [], []
    for item in videos:
        timing = video_timing(item.probe, item.fps_override)
        table, _ = _features(item.pose, timing, settings, item.pose_source, item.sequence)
        bouts = evaluation.read_annotations(item.annotations, timing.n_frames, timing.fps)
        labels = evaluation.frames_from_segments(bouts, timing.n_frames)
        features.append(table)
        targets.append(actions.action_targets(labels))
        bouts_by_video.append((item.video, bouts))
        log.info("%s: %d frames, %d annotated bouts", item.video_id, timing.n_frames, len(bouts))
    classifier = actions.ActionClassifier(
        method=settings.get("classifier", "gradient_boosting"),
        seed=int(settings.get("seed", 0)),
        threads=threads,
    ).fit(pd.concat(features, ignore_index=True), np.concatenate(targets))
    summary = {
        "train_videos": [v.video_id for v in videos],
        "frames": int(sum(len(f) for f in features)),
        "action_frames": int(sum(t.sum() for t in targets)),
        "bouts": int(sum(len(b) for _, b in bouts_by_video)),
    }
    if stage2_path is None:
        actions.save_model(stage1_path, classifier)
        return {**summary, "stages": 1}
    embedder = embedder_from(settings["embedder"], threads)
    labeler = actions.train_labeler(
        bouts_by_video,
        embedder,
        actions.SegmentLabeler(
            method=settings.get("labeler", "auto"), seed=int(settings.get("seed", 0))
        ),
    )
    actions.save_model(stage1_path, classifier)
    actions.save_model(stage2_path, labeler)
    return {**summary, "labeler": labeler.chosen, "embedder": embedder.describe()}


def localize(
    video: PathLike | None,
    pose_path: PathLike,
    probe: PathLike | VideoTiming,
    stage1_path: PathLike,
    stage2_path: PathLike | None,
    settings: Mapping[str, Any],
    *,
    fps_override: Any = None,
    threads: int = 1,
    pose_source: str | None = None,
    sequence: str | None = None,
) -> pd.DataFrame:
    """Both stages on one video -> the segments table (start/stop frames and seconds, label, score).

    ``stage2_path=None`` runs stage 1 only: the candidate segments, labelled
    :data:`ACTION` with their stage-1 score (no video needed). With a stage-2
    model, a missing video stops with an InputError.
    """
    timing = video_timing(probe, fps_override)
    if stage2_path is not None:
        require_video(video, Path(str(pose_path)).name, pose_path)
    table, _ = _features(pose_path, timing, settings, pose_source, sequence)
    thresholds = actions.Thresholds(**settings.get("thresholds", {}))
    if stage2_path is None:
        classifier = actions.load_model(stage1_path)
        candidates = actions.candidate_segments(
            classifier.predict_proba(table), **thresholds.frames(timing.fps)
        )
        n = len(candidates)
        return actions.segment_table(candidates, timing.fps, [ACTION] * n, np.ones(n))
    return actions.localize_actions(
        video,
        table,
        timing.fps,
        actions.load_model(stage1_path),
        embedder_from(settings["embedder"], threads),
        actions.load_model(stage2_path),
        thresholds,
    )


def evaluate_videos(
    items: Sequence[tuple[str, PathLike, PathLike, PathLike | VideoTiming, Any]],
    iou: float = 0.5,
    *,
    actions_only: bool = False,
) -> pd.DataFrame:
    """Segments vs ground truth per video and pooled (``video == "all"``).

    ``items``: ``(video_id, segments_csv, annotations_csv, probe_json, fps_override)``.
    The pooled rows put the videos end to end, so a segment never matches one of
    another video. ``actions_only`` scores stage 1 alone: every bout of the truth and
    of the segments counts as :data:`ACTION` (touching bouts merged), so the table
    says how well the action / no-action segments find the annotated bouts.
    """
    tables, preds, truths, offset = [], [], [], 0
    for video_id, segments_csv, annotations_csv, probe, fps_override in items:
        timing = video_timing(probe, fps_override)
        truth = evaluation.read_annotations(annotations_csv, timing.n_frames)
        pred = pd.read_csv(segments_csv)
        if actions_only:
            truth = evaluation.merge_as(truth, ACTION)
            pred = evaluation.merge_as(pred, ACTION)
        table = evaluation.evaluate(pred, truth, timing.n_frames, iou=iou)
        tables.append(table.assign(video=video_id))
        shift = ["start_frame", "stop_frame"]
        preds.append(pred.assign(**{c: pred[c] + offset for c in shift}))
        truths.append(truth.assign(**{c: truth[c] + offset for c in shift}))
        offset += timing.n_frames
    if len(items) > 1:
        pooled = evaluation.evaluate(
            pd.concat(preds, ignore_index=True),
            pd.concat(truths, ignore_index=True),
            offset,
            iou=iou,
        )
        tables.append(pooled.assign(video="all"))
    table = pd.concat(tables, ignore_index=True)
    return table[["video", *[c for c in table.columns if c != "video"]]]


def write_labeled_frames(
    videos: Sequence[tuple[PathLike, PathLike, PathLike, Any]],
    out_dir: PathLike,
    *,
    per_class: int = 60,
    background: str = "other",
    seed: int = 0,
) -> dict[str, int]:
    """A classifier training folder (one subfolder of PNGs per label) from annotated videos.

    ``videos``: ``(video, annotations_csv, probe_json, fps_override)``. Up to
    ``per_class`` frames per label are drawn at random (seeded) across the
    videos, un-annotated frames counting as ``background``. Returns the counts.
    """
    from PIL import Image

    from neurovid.video import iter_frames

    rng = np.random.default_rng(seed)
    picks: dict[tuple[int, int], str] = {}
    by_label: dict[str, list[tuple[int, int]]] = {}
    for v, (_, annotation_csv, probe, fps_override) in enumerate(videos):
        timing = video_timing(probe, fps_override)
        bouts = evaluation.read_annotations(annotation_csv, timing.n_frames)
        labels = evaluation.frames_from_segments(bouts, timing.n_frames, background)
        for frame, label in enumerate(labels):
            by_label.setdefault(str(label), []).append((v, frame))
    for label, frames in sorted(by_label.items()):
        chosen = rng.choice(len(frames), size=min(per_class, len(frames)), replace=False)
        picks.update({frames[i]: label for i in sorted(chosen)})
    counts = {label: 0 for label in sorted(by_label)}
    with atomic_dir(out_dir) as tmp:
        for label in counts:
            (tmp / label).mkdir()
        for v, (video, *_rest) in enumerate(videos):
            frame = 0
            for _, chunk in iter_frames(video, gray=False):
                for image in chunk:
                    label = picks.get((v, frame))
                    if label is not None:
                        pixels = np.round(image * 255).astype(np.uint8)
                        Image.fromarray(pixels).save(tmp / label / f"v{v}_f{frame:06d}.png")
                        counts[label] += 1
                    frame += 1
        # Beside the class folders (the classifier reads subfolders only).
        write_json(
            tmp / "labeled_frames.json",
            {
                "counts": counts,
                "provenance": provenance(
                    "labeled_frames",
                    {"per_class": per_class, "background": background, "seed": seed},
                    {
                        f"{kind}_{v}": item[i]
                        for v, item in enumerate(videos)
                        for i, kind in ((0, "video"), (1, "annotations"))
                    },
                ),
            },
        )
    return counts


def behavior_figures(
    video_id: str,
    probe: PathLike,
    kinematics_csv: PathLike,
    kinematics_json: PathLike,
    frames_csv: PathLike,
    segments_csv: PathLike,
    annotations_csv: PathLike | None,
    out: Mapping[str, PathLike],
    *,
    fps_override: Any = None,
    record: Mapping[str, Any] | None = None,
) -> None:
    """A video's ethogram, occupancy heat map, speed trace and segment timeline (``out`` keys).

    The ethogram stacks the frame classifier's smoothed labels, the localized
    action segments and, when the video is annotated, the ground truth.
    """
    from neurovid.behavior import plots

    timing = video_timing(probe, fps_override)
    kin = pd.read_csv(kinematics_csv)
    summary = json.loads(Path(kinematics_json).read_text())
    frames = pd.read_csv(frames_csv)
    segments = pd.read_csv(segments_csv)
    n = timing.n_frames
    rows = {
        "frame classifier": frames["label_smoothed"].astype(str).to_numpy()[:n],
        "action segments": evaluation.frames_from_segments(segments, n),
    }
    truth = None
    if annotations_csv:
        truth = evaluation.read_annotations(annotations_csv, n)
        rows["ground truth"] = evaluation.frames_from_segments(truth, n)
    record = dict(record or {})
    plots.ethogram(
        rows, timing.fps, out["ethogram"], title=f"{video_id}: ethogram", provenance=record
    )
    box = summary.get("arena_box_px")
    scale = summary["px_per_cm"]
    arena_cm = [v / scale for v in box] if box else None
    plots.trajectory_heatmap(
        kin[["x_cm", "y_cm"]].to_numpy(),
        arena_cm,
        out["trajectory"],
        fps=timing.fps,
        title=f"{video_id}: occupancy",
        provenance=record,
    )
    plots.speed_trace(
        kin["time_s"].to_numpy(),
        kin["speed_cm_per_s"].to_numpy(),
        out["speed"],
        threshold=summary.get("moving_threshold_cm_per_s"),
        labels=rows["action segments"][: len(kin)],
        title=f"{video_id}: speed",
        provenance=record,
    )
    empty = pd.DataFrame({"start_frame": [], "stop_frame": [], "label": []})
    plots.segment_timeline(
        segments,
        truth if truth is not None else empty,
        n,
        timing.fps,
        out["segments"],
        title=f"{video_id}: segments vs ground truth"
        if truth is not None
        else f"{video_id}: segments (no annotations)",
        provenance=record,
    )


def confusion_figure(model_dir: PathLike, png: PathLike, record: Mapping[str, Any]) -> None:
    """The frame classifier's held-out confusion matrix (``confusion.tsv`` of its model folder)."""
    from neurovid.behavior import plots

    table = pd.read_csv(Path(model_dir) / "confusion.tsv", sep="\t")
    classes = table["true"].astype(str).tolist()
    matrix = table[classes].to_numpy()
    plots.confusion_matrix_figure(
        matrix, classes, png, title="Frame classifier, held-out frames", provenance=record
    )
