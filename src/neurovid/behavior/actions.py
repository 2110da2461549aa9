"""Two-stage action localization (the CalMS21-style seed): pose -> candidates -> Qwen2-VL labels.

Stage 1 finds *when* something happens, from pose alone:
:func:`pose_features` (per-frame speeds, inter-keypoint distances and angles,
between-animal distances and facing angles for two or more animals, plus their
rolling mean / std over a short context window) -> :class:`ActionClassifier`
(per-frame action vs no-action, class-balanced, seeded) -> :func:`candidate_segments`
(hysteresis thresholds, gap merging, minimum duration).

Stage 2 says *what* it is, from the pixels: each segment's clip (``clip_frames``
frames spread evenly over the segment) -> Qwen2-VL video embedding, reusing
:func:`neurovid.features.qwen2vl.load_qwen2vl` / :func:`~neurovid.features.qwen2vl.embed_clips`
(mean of the chosen hidden layers over the video tokens; :class:`SegmentEmbedder`)
-> :class:`SegmentLabeler` (an MLP with many labels and enough examples, else
nearest centroid) -> ``results/behavior/{video}.segments.csv``.

Frames are 0-based indices of the video; a segment is ``[start_frame, stop_frame)``
(stop exclusive), and in seconds ``[start_frame / fps, stop_frame / fps)``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from neurovid.errors import InputError
from neurovid.io import PathLike, atomic_path, write_table

log = logging.getLogger(__name__)

FIELD = "behavior.actions"
SEGMENT_COLUMNS = ("start_frame", "stop_frame", "start_s", "stop_s", "label", "score")

# ---------------------------------------------------------------- stage 1: features


def _fill_gaps(xy: np.ndarray) -> np.ndarray:
    """Linear interpolation over NaN frames of [T, ...] coordinates, edges held constant.

    Dropped (low-likelihood) points would otherwise turn every speed and distance
    touching them into NaN; a keypoint missing in every frame stays NaN.
    """
    flat = pd.DataFrame(xy.reshape(len(xy), -1))
    filled = flat.interpolate(method="linear", limit_direction="both", axis=0)
    return filled.to_numpy(dtype=np.float64).reshape(xy.shape)


def _speed(xy: np.ndarray, fps: float) -> np.ndarray:
    """[T, 2] positions in px -> [T] speed in px/s (central differences)."""
    if len(xy) < 2:
        return np.zeros(len(xy))
    return np.linalg.norm(np.gradient(xy, axis=0), axis=-1) * fps


def _angle(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Angle a-b-c at ``b`` in radians (0..pi), per frame."""
    u, v = a - b, c - b
    cross = u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]
    return np.arctan2(np.abs(cross), (u * v).sum(-1))


def _heading(front: np.ndarray, back: np.ndarray) -> np.ndarray:
    """Direction of the body axis back -> front, unwrapped (radians)."""
    d = front - back
    return np.unwrap(np.arctan2(d[:, 1], d[:, 0]))


def _animal_features(
    xy: np.ndarray, bodyparts: Sequence[str], fps: float, angles: Sequence[tuple[str, str, str]]
) -> dict[str, np.ndarray]:
    index = {name: k for k, name in enumerate(bodyparts)}
    cols: dict[str, np.ndarray] = {}
    for k, name in enumerate(bodyparts):
        cols[f"speed_{name}"] = _speed(xy[:, k], fps)
    cols["speed_centroid"] = _speed(xy.mean(axis=1), fps)
    for (i, a), (j, b) in itertools.combinations(enumerate(bodyparts), 2):
        cols[f"dist_{a}_{b}"] = np.linalg.norm(xy[:, i] - xy[:, j], axis=-1)
    for a, b, c in angles:
        cols[f"angle_{a}_{b}_{c}"] = _angle(xy[:, index[a]], xy[:, index[b]], xy[:, index[c]])
    if len(bodyparts) > 1:  # body axis: last body part (e.g. tail base) -> first (e.g. snout)
        heading = _heading(xy[:, 0], xy[:, -1])
        cols["turn_rate"] = np.abs(np.gradient(heading)) * fps if len(xy) > 1 else np.zeros(len(xy))
    return cols


def _check_pose(pose: np.ndarray, bodyparts: Sequence[str], fps: float) -> np.ndarray:
    pose = np.asarray(pose, dtype=np.float64)
    given = pose.shape
    if pose.ndim == 3:
        pose = pose[:, None]
    if pose.ndim != 4 or pose.shape[-1] != 2 or pose.shape[2] != len(bodyparts):
        raise InputError(
            None,
            f"pose has shape {given} for {len(bodyparts)} body parts {list(bodyparts)}.",
            "give [frames, body parts, 2] or [frames, animals, body parts, 2] (x, y in pixels) with one body part name per keypoint.",
            field=FIELD,
        )
    if len(set(bodyparts)) != len(bodyparts):
        raise InputError(None, f"body part names repeat: {list(bodyparts)}.", field=FIELD)
    if not fps > 0:
        raise InputError(None, f"fps must be positive, got {fps}.", field=FIELD)
    return pose


def pose_features(
    pose: np.ndarray,
    bodyparts: Sequence[str],
    fps: float,
    *,
    animals: Sequence[str] | None = None,
    angles: Sequence[tuple[str, str, str]] | None = None,
    context_s: float = 0.5,
) -> pd.DataFrame:
    """Per-frame pose features for the action classifier (pixels, seconds, radians).

    ``pose`` is [T, K, 2] (one animal) or [T, I, K, 2] (I animals, e.g. CalMS21's
    resident and intruder), x/y in pixels, NaN where a keypoint was dropped
    (gaps are interpolated linearly first). Per animal:

    - ``speed_{part}``, ``speed_centroid``: px/s;
    - ``dist_{a}_{b}``: every pair of body parts, px;
    - ``angle_{a}_{b}_{c}``: angle at ``b`` (0..pi); ``angles`` defaults to the
      consecutive triples of ``bodyparts``;
    - ``turn_rate``: |angular velocity| of the body axis (last -> first body part), rad/s.

    With several animals these are prefixed ``{animal}_`` (``animals`` defaults to
    ``animal0``, ``animal1``, ...), and each pair adds ``{a}_{part}__{b}_{part}``
    (every between-animal keypoint distance), ``{a}__{b}_centroid_dist`` and
    ``{a}_facing_{b}`` (angle between a's body axis and the direction to b's
    centroid: 0 = facing it). ``context_s > 0`` adds, for every column, the
    centred rolling ``_mean`` and ``_std`` over that many seconds, since one
    frame alone cannot tell grooming's wobble from standing still.
    """
    pose = _check_pose(pose, bodyparts, fps)
    n_frames, n_animals = pose.shape[:2]
    names = list(animals) if animals is not None else [f"animal{i}" for i in range(n_animals)]
    if len(names) != n_animals or len(set(names)) != n_animals:
        raise InputError(
            None,
            f"{n_animals} animals in the pose but animal names {names}.",
            "give one distinct name per animal.",
            field=FIELD,
        )
    if angles is None:
        angles = [tuple(bodyparts[k : k + 3]) for k in range(len(bodyparts) - 2)]
    unknown = sorted({p for triple in angles for p in triple} - set(bodyparts))
    if unknown or any(len(t) != 3 for t in angles):
        raise InputError(
            None,
            f"angles {list(angles)} name body parts {unknown} that the pose does not have, or are not triples.",
            f"use triples of {list(bodyparts)}.",
            field=FIELD,
        )
    pose = _fill_gaps(pose)
    columns: dict[str, np.ndarray] = {}
    for i, animal in enumerate(names):
        prefix = f"{animal}_" if n_animals > 1 else ""
        for key, value in _animal_features(pose[:, i], bodyparts, fps, angles).items():
            columns[prefix + key] = value
    for i, j in itertools.combinations(range(n_animals), 2):
        a, b = names[i], names[j]
        for (k, p), (m, q) in itertools.product(enumerate(bodyparts), repeat=2):
            columns[f"{a}_{p}__{b}_{q}"] = np.linalg.norm(pose[:, i, k] - pose[:, j, m], axis=-1)
        ca, cb = pose[:, i].mean(axis=1), pose[:, j].mean(axis=1)
        columns[f"{a}__{b}_centroid_dist"] = np.linalg.norm(ca - cb, axis=-1)
        if len(bodyparts) > 1:  # angle at the tail base between the snout and the other animal
            columns[f"{a}_facing_{b}"] = _angle(pose[:, i, 0], pose[:, i, -1], cb)
            columns[f"{b}_facing_{a}"] = _angle(pose[:, j, 0], pose[:, j, -1], ca)
    table = pd.DataFrame(columns)
    window = int(round(context_s * fps))
    if window > 1:
        rolling = table.rolling(window, center=True, min_periods=1)
        table = pd.concat(
            [table, rolling.mean().add_suffix("_mean"), rolling.std(ddof=0).add_suffix("_std")],
            axis=1,
        )
    return table.astype(np.float32)


def action_targets(labels: Sequence[str] | np.ndarray, background: str = "other") -> np.ndarray:
    """Per-frame labels -> bool [T]: True where the label is an action (not ``background``)."""
    return np.asarray(labels).astype(str) != background


# ---------------------------------------------------------------- stage 1: classifier

CLASSIFIERS = ("gradient_boosting", "logistic")


@dataclass
class ActionClassifier:
    """Per-frame action / no-action classifier on :func:`pose_features` columns.

    ``gradient_boosting`` (default): scikit-learn's HistGradientBoostingClassifier,
    insensitive to feature scales and fine with NaN. ``logistic``: standardized
    logistic regression (NaN imputed by the training median). Both weight the
    classes inversely to their frequency (``class_weight="balanced"``), because
    action frames are usually a small minority; ``seed`` makes fits repeatable.
    ``threads`` caps the OpenMP / BLAS threads of fit and predict (the rule's
    threads): unbounded OpenMP on a busy node is ~15x slower than one thread.
    """

    method: str = "gradient_boosting"
    seed: int = 0
    max_iter: int = 200
    threads: int = 1
    columns: list[str] = field(default_factory=list)
    model: Any = None

    def __post_init__(self) -> None:
        if self.method not in CLASSIFIERS:
            raise InputError(
                None,
                f"action classifier {self.method!r} is unknown.",
                f"use one of {CLASSIFIERS}.",
                field=f"{FIELD}.classifier",
            )

    def _estimator(self) -> Any:
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        if self.method == "gradient_boosting":
            return HistGradientBoostingClassifier(
                max_iter=self.max_iter,
                class_weight="balanced",
                early_stopping=False,
                random_state=self.seed,
            )
        return make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(class_weight="balanced", max_iter=self.max_iter * 5),
        )

    def fit(self, features: pd.DataFrame, is_action: np.ndarray) -> ActionClassifier:
        """Fit on per-frame features [T, F] and targets [T] (bool), e.g. several videos concatenated."""
        target = np.asarray(is_action, dtype=bool)
        if len(target) != len(features):
            raise ValueError(f"{len(features)} feature rows but {len(target)} targets")
        if target.all() or not target.any():
            raise InputError(
                None,
                f"the training frames are all {'action' if target.any() else 'no-action'} ({len(target)} frames): the classifier needs both.",
                "annotate at least one action bout and leave frames without action, or add training videos.",
                field=f"{FIELD}.training",
            )
        self.columns = list(features.columns)
        with threadpool_limits(max(int(self.threads), 1)):
            self.model = self._estimator().fit(features.to_numpy(np.float32), target)
        return self

    def predict_proba(self, features: pd.DataFrame) -> np.ndarray:
        """P(action) per frame, float64 [T]."""
        if self.model is None:
            raise RuntimeError("ActionClassifier.predict_proba before fit")
        missing = [c for c in self.columns if c not in features.columns]
        if missing:
            raise InputError(
                None,
                f"the pose features lack {len(missing)} columns the classifier was trained on (e.g. {missing[:3]}).",
                "use the same body parts, animals and feature settings as for training, or retrain.",
                field=FIELD,
            )
        x = features[self.columns].to_numpy(np.float32)
        with threadpool_limits(max(int(self.threads), 1)):
            return self.model.predict_proba(x)[:, 1].astype(np.float64)


# ---------------------------------------------------------------- stage 1: segments


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of True as (start, stop) with stop exclusive."""
    padded = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def candidate_segments(
    prob: np.ndarray,
    high: float = 0.6,
    low: float = 0.4,
    min_frames: int = 1,
    merge_gap: int = 0,
) -> pd.DataFrame:
    """Candidate action segments from per-frame P(action), in three steps.

    1. Hysteresis: a segment is a maximal run of frames with ``prob >= low``
       that contains at least one frame with ``prob >= high`` (a confident
       onset, extended while the probability stays above ``low``).
    2. Gap merging: neighbours separated by at most ``merge_gap`` frames
       (``next.start - prev.stop <= merge_gap``) become one segment.
    3. Minimum duration: segments shorter than ``min_frames`` are dropped
       (after merging, so fragments of one bout count together).

    Returns ``start_frame`` (inclusive), ``stop_frame`` (exclusive) and
    ``score``, the mean probability over the segment's frames (gap frames included).
    """
    prob = np.asarray(prob, dtype=np.float64)
    if not 0 <= low <= high <= 1:
        raise InputError(
            None,
            f"thresholds low={low}, high={high}: need 0 <= low <= high <= 1.",
            "e.g. high: 0.6, low: 0.4.",
            field=f"{FIELD}.thresholds",
        )
    if min_frames < 1 or merge_gap < 0:
        raise InputError(
            None,
            f"min_frames={min_frames}, merge_gap={merge_gap}: need min_frames >= 1, merge_gap >= 0.",
            field=FIELD,
        )
    above = np.nan_to_num(prob, nan=0.0)
    segments = [(s, e) for s, e in _runs(above >= low) if (above[s:e] >= high).any()]
    merged: list[list[int]] = []
    for start, stop in segments:
        if merged and start - merged[-1][1] <= merge_gap:
            merged[-1][1] = stop
        else:
            merged.append([start, stop])
    kept = [(s, e) for s, e in merged if e - s >= min_frames]
    return pd.DataFrame(
        {
            "start_frame": np.array([s for s, _ in kept], dtype=np.int64),
            "stop_frame": np.array([e for _, e in kept], dtype=np.int64),
            "score": np.array([above[s:e].mean() for s, e in kept], dtype=np.float64),
        }
    )


# ---------------------------------------------------------------- stage 2: embeddings


def clip_indices(start: int, stop: int, clip_frames: int) -> np.ndarray:
    """``clip_frames`` frame indices spread evenly over ``[start, stop)`` (repeats if shorter)."""
    return np.rint(np.linspace(start, stop - 1, clip_frames)).astype(np.int64)


def iter_segment_clips(
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    segments: pd.DataFrame,
    clip_frames: int,
) -> Iterator[tuple[int, np.ndarray]]:
    """``(segment row, clip [clip_frames, h, w, 3])`` as soon as the stream reaches each clip's last frame.

    ``chunks`` are ``(times, frames)`` in video order (:func:`neurovid.features.runtime.frame_chunks`);
    only the frames some clip samples are kept, so memory does not grow with the video.
    """
    wanted: dict[int, list[tuple[int, int]]] = {}
    for row, (start, stop) in enumerate(
        zip(segments["start_frame"], segments["stop_frame"], strict=True)
    ):
        for slot, frame in enumerate(clip_indices(int(start), int(stop), clip_frames)):
            wanted.setdefault(int(frame), []).append((row, slot))
    pending: dict[int, list[np.ndarray | None]] = {}
    offset = 0
    for _, frames in chunks:
        for local in range(len(frames)):
            for row, slot in wanted.pop(offset + local, ()):
                clip = pending.setdefault(row, [None] * clip_frames)
                clip[slot] = frames[local]
                if all(f is not None for f in clip):
                    yield row, np.stack(pending.pop(row))
        offset += len(frames)
        if not wanted:
            break


@dataclass
class SegmentEmbedder:
    """Qwen2-VL embedding of each segment's clip (stage 2 input).

    A clip is ``clip_frames`` frames (even: Qwen2-VL patches 2 frames at a time)
    spread evenly over the segment, each whole frame resized to ``height x width``
    (multiples of 28; no crop, since the animal can be anywhere in the arena:
    keep the video's aspect ratio, e.g. 224 x 308 for 3:4), through the same
    :func:`~neurovid.features.qwen2vl.embed_clips` as the ``qwen2vl`` extractor:
    the mean over the video tokens of the hidden states ``layers`` (0 = the
    vision embeddings entering the language model, -1 = last layer), concatenated.
    The model (hub id or ``save_pretrained`` folder) is loaded once, on first use.
    """

    model: str
    layers: Sequence[int] = (-1,)
    clip_frames: int = 8
    height: int = 224
    width: int = 224
    batch_size: int = 1
    device: str = "auto"
    threads: int = 1
    _loaded: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        from neurovid.features.qwen2vl import check_clip_shape

        check_clip_shape(self.clip_frames, self.height, self.width, f"{FIELD}.embedder")
        if self.batch_size < 1:
            raise InputError(
                None, f"batch_size={self.batch_size} must be >= 1.", field=f"{FIELD}.embedder"
            )

    def load(self) -> tuple[Any, Any, Any, list[int]]:
        """(network, processor, runtime, checked layers), loaded once."""
        if self._loaded is None:
            from neurovid import models
            from neurovid.features import runtime as rt
            from neurovid.features.qwen2vl import check_clip_shape, load_qwen2vl, side_unit

            runtime = models.select_runtime(self.device, self.threads)
            network, processor = load_qwen2vl(self.model, runtime, f"{FIELD}.embedder.model")
            # The loaded model's own patch x merge (28 for Qwen2-VL / Qwen2.5-VL, 32 for Qwen3-VL).
            check_clip_shape(
                self.clip_frames,
                self.height,
                self.width,
                f"{FIELD}.embedder",
                units=(side_unit(processor),),
            )
            network.to(runtime.device)
            text = getattr(network.config, "text_config", network.config)
            layers = rt.check_layers(
                self.layers, text.num_hidden_layers + 1, f"{FIELD}.embedder.layers"
            )
            self._loaded = (network, processor, runtime, layers)
        return self._loaded

    @property
    def dim(self) -> int:
        network, _, _, layers = self.load()
        text = getattr(network.config, "text_config", network.config)
        return int(text.hidden_size) * len(layers)

    def describe(self) -> dict[str, Any]:
        """Settings and weights revision, for provenance."""
        from neurovid import models

        network, _, runtime, layers = self.load()
        return {
            "model_id": self.model,
            "revision": models.weights_revision(self.model, network),
            "layers": layers,
            "pooling": "mean over video tokens",
            "clip_frames": self.clip_frames,
            "height": self.height,
            "width": self.width,
            "dtype": runtime.dtype_name,
        }

    def embed(self, video: PathLike, segments: pd.DataFrame) -> np.ndarray:
        """Segments (``start_frame``, ``stop_frame``) of ``video`` -> float32 [S, dim] embeddings."""
        from neurovid.features import runtime as rt
        from neurovid.features.qwen2vl import embed_clips

        network, processor, runtime, layers = self.load()
        out = np.zeros((len(segments), self.dim), dtype=np.float32)
        if not len(segments):
            return out
        # The whole field of view, resized to height x width (no centre crop: the
        # animal may be anywhere in the arena).
        prep = rt.Preprocess(size=(self.height, self.width))
        chunks = rt.frame_chunks(video, prep, chunk=64, normalize=False)
        rows: list[int] = []
        clips: list[np.ndarray] = []

        def flush() -> None:
            vectors = embed_clips(network, processor, np.stack(clips), layers, runtime)
            out[rows] = vectors.cpu().numpy()
            rows.clear()
            clips.clear()

        done = 0
        with contextlib.closing(rt.prefetch(chunks)) as stream:  # stops the decode thread early
            for row, clip in iter_segment_clips(stream, segments, self.clip_frames):
                rows.append(row)
                clips.append(clip)
                done += 1
                if len(clips) == self.batch_size:
                    flush()
        if clips:
            flush()
        if done != len(segments):
            last = int(segments["stop_frame"].max())
            raise InputError(
                video,
                f"segments reach frame {last} but the video ended before ({done} of {len(segments)} segment clips complete).",
                "use segments and annotations of this video (0-based frames, stop exclusive).",
                field=FIELD,
            )
        return out


# ---------------------------------------------------------------- stage 2: labels

LABELERS = ("auto", "mlp", "centroid")


@dataclass
class SegmentLabeler:
    """Segment embeddings -> behavior label and a confidence score.

    Choice (``method="auto"``): an MLP (scikit-learn MLPClassifier, one hidden
    layer of ``hidden`` units, seeded) when there are at least
    ``mlp_min_labels`` labels *and* every label has at least
    ``mlp_min_examples`` training segments; otherwise nearest centroid
    (scikit-learn NearestCentroid). With few labels or few examples per label
    the MLP's ``dim x hidden`` weights would fit noise, while a centroid per
    label has nothing to overfit (the few-shot "prototype" classifier). Both
    work on standardized embeddings. Scores: the MLP's class probability; for
    nearest centroid, a softmax over ``-d^2 / tau`` (``d`` the distance to each
    centroid, ``tau`` the mean squared distance of the training segments to
    their own centroid), so a segment as close to its centroid as a typical
    training example scores high and one between centroids near ``1 / n_labels``.
    A single training label is allowed: every segment gets it, with score 1.
    """

    method: str = "auto"
    mlp_min_labels: int = 3
    mlp_min_examples: int = 10
    hidden: int = 64
    seed: int = 0
    chosen: str = ""
    classes: list[str] = field(default_factory=list)
    model: Any = None
    tau: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in LABELERS:
            raise InputError(
                None,
                f"segment labeler {self.method!r} is unknown.",
                f"use one of {LABELERS}.",
                field=f"{FIELD}.labeler",
            )

    def choose(self, labels: Sequence[str]) -> str:
        """The method the documented rule picks for these training labels."""
        if self.method != "auto":
            return self.method
        counts = pd.Series(np.asarray(labels, dtype=str)).value_counts()
        many = len(counts) >= self.mlp_min_labels and counts.min() >= self.mlp_min_examples
        return "mlp" if many else "centroid"

    def fit(self, embeddings: np.ndarray, labels: Sequence[str]) -> SegmentLabeler:
        from sklearn.neighbors import NearestCentroid
        from sklearn.neural_network import MLPClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        x = np.asarray(embeddings, dtype=np.float64)
        y = np.asarray(labels, dtype=str)
        if len(x) != len(y) or not len(y):
            raise InputError(
                None,
                f"{len(x)} segment embeddings for {len(y)} labels: stage 2 needs labelled training segments.",
                "annotate bouts (start_frame, stop_frame, label) in the training videos.",
                field=f"{FIELD}.training",
            )
        self.classes = sorted(set(y.tolist()))
        self.chosen = self.choose(y) if len(self.classes) > 1 else "single"
        if self.chosen == "single":
            self.model = None
        elif self.chosen == "mlp":
            mlp = MLPClassifier(
                hidden_layer_sizes=(self.hidden,), max_iter=1000, random_state=self.seed
            )
            self.model = make_pipeline(StandardScaler(), mlp).fit(x, y)
        else:
            self.model = make_pipeline(StandardScaler(), NearestCentroid()).fit(x, y)
            z = self.model[0].transform(x)
            centroids = self.model[-1].centroids_
            own = centroids[np.searchsorted(self.model[-1].classes_, y)]
            spread = float(((z - own) ** 2).sum(axis=1).mean())
            between = float(((centroids[:, None] - centroids[None]) ** 2).sum(-1).max())
            self.tau = spread if spread > 0 else max(between, 1.0)
        return self

    def predict(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels [S] (str) and scores [S] (0..1) of segment embeddings [S, D]."""
        x = np.asarray(embeddings, dtype=np.float64)
        if not self.chosen:
            raise RuntimeError("SegmentLabeler.predict before fit")
        if self.chosen == "single" or not len(x):
            return np.full(len(x), self.classes[0] if self.classes else "", dtype=object), np.ones(
                len(x)
            )
        if self.chosen == "mlp":
            proba = self.model.predict_proba(x)
            classes = self.model[-1].classes_
        else:
            z = self.model[0].transform(x)
            centroids = self.model[-1].centroids_
            d2 = ((z[:, None] - centroids[None]) ** 2).sum(-1)
            logits = -d2 / self.tau
            logits -= logits.max(axis=1, keepdims=True)
            proba = np.exp(logits)
            proba /= proba.sum(axis=1, keepdims=True)
            classes = self.model[-1].classes_
        best = proba.argmax(axis=1)
        return np.asarray(classes)[best].astype(object), proba[np.arange(len(x)), best]


# ---------------------------------------------------------------- the two stages


def save_model(path: PathLike, model: ActionClassifier | SegmentLabeler) -> None:
    """Pickle a fitted classifier / labeler with joblib, atomically."""
    import joblib

    with atomic_path(path) as tmp:
        joblib.dump(model, tmp)


def load_model(path: PathLike) -> Any:
    """A model written by :func:`save_model` (a pickle: load only files you produced)."""
    import joblib

    if not Path(path).is_file():
        raise InputError(path, "the model file does not exist.", "run the training step first.")
    return joblib.load(path)


def segment_table(
    segments: pd.DataFrame, fps: float, labels: Sequence[str], scores: Sequence[float]
) -> pd.DataFrame:
    """The ``segments.csv`` table: start/stop frames and seconds, label, score, plus the stage scores.

    ``score`` = stage-1 ``action_score`` (mean P(action) over the segment) x
    stage-2 ``label_score`` (confidence in the label): P(action and this label).
    """
    start = segments["start_frame"].to_numpy(np.int64)
    stop = segments["stop_frame"].to_numpy(np.int64)
    action = segments["score"].to_numpy(np.float64)
    label_score = np.asarray(scores, dtype=np.float64)
    return pd.DataFrame(
        {
            "start_frame": start,
            "stop_frame": stop,
            "start_s": start / fps,
            "stop_s": stop / fps,
            "label": pd.Series(np.asarray(labels, dtype=object), dtype=object),
            "score": action * label_score,
            "action_score": action,
            "label_score": label_score,
        }
    )


def train_labeler(
    videos: Iterable[tuple[PathLike, pd.DataFrame]],
    embedder: SegmentEmbedder,
    labeler: SegmentLabeler,
) -> SegmentLabeler:
    """Fit stage 2 on annotated bouts: ``(video, annotations)`` with start_frame, stop_frame, label."""
    vectors, labels = [], []
    for video, bouts in videos:
        vectors.append(embedder.embed(video, bouts))
        labels.extend(bouts["label"].astype(str).tolist())
    return labeler.fit(np.concatenate(vectors) if vectors else np.zeros((0, 0)), labels)


@dataclass
class Thresholds:
    """Stage-1 segment settings (see :func:`candidate_segments`); durations in seconds."""

    high: float = 0.6
    low: float = 0.4
    min_s: float = 0.3
    merge_gap_s: float = 0.2

    def frames(self, fps: float) -> dict[str, Any]:
        return {
            "high": self.high,
            "low": self.low,
            "min_frames": max(int(round(self.min_s * fps)), 1),
            "merge_gap": max(int(round(self.merge_gap_s * fps)), 0),
        }


def localize_actions(
    video: PathLike,
    features: pd.DataFrame,
    fps: float,
    classifier: ActionClassifier,
    embedder: SegmentEmbedder,
    labeler: SegmentLabeler,
    thresholds: Thresholds | None = None,
) -> pd.DataFrame:
    """Both stages on one video: pose features [T, F] -> segments table (:func:`segment_table`)."""
    prob = classifier.predict_proba(features)
    candidates = candidate_segments(prob, **(thresholds or Thresholds()).frames(fps))
    labels, scores = labeler.predict(embedder.embed(video, candidates))
    log.info("%s: %d candidate segments", video, len(candidates))
    return segment_table(candidates, fps, labels, scores)


def write_segments(
    path: PathLike, table: pd.DataFrame, provenance: Mapping[str, Any] | None = None
) -> None:
    """Write ``segments.csv`` atomically, plus ``<name>.json`` beside it with the provenance."""
    path = Path(path)
    write_table(path, table, sep=",", provenance=provenance)
