"""Frame behavior classifier: fine-tune a ViT on labeled frames, label every frame of a video.

Training (:func:`train_frame_classifier`) reads a labeled-frames folder (one
subfolder per class, :func:`load_frames_folder`), fine-tunes a transformers
``AutoModelForImageClassification`` (a hub id or a local ``save_pretrained``
directory; the classification head is replaced when its size differs) with a
class-weighted cross-entropy, and evaluates held-out frames (per-class
precision / recall / F1, macro F1, confusion matrix) that are held out in
time (:func:`held_out_split`): whole videos when the frames come from 2+
videos, contiguous time blocks with a guard when they come from one (the file
names ``{video}_f{frame}`` say where each frame comes from), frames drawn at
random per class only when the names carry no time (logged and recorded).
Frames are preprocessed by the model's own image processor. The
fine-tuned model, its processor and ``training.json`` (provenance and metrics)
are written into one folder atomically, with ``metrics.tsv`` and
``confusion.tsv`` beside them.

Prediction (:func:`predict_video`) streams the video (decode in a background
thread, resize by swscale while decoding, the processor's crop and
normalization, see :mod:`neurovid.features.runtime`) and gives per-frame class
probabilities. :func:`smooth_labels` removes bouts shorter than a minimum
duration and :func:`time_per_behavior` sums the time per label;
:func:`write_frame_predictions` writes ``results/behavior/{video}.frames.csv``
and its JSON sidecar.

Same code on CPU (fp32, deterministic) and CUDA (bf16 autocast, pinned
transfers).
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from neurovid import models
from neurovid.errors import InputError
from neurovid.features import runtime as rt
from neurovid.io import (
    PathLike,
    atomic_dir,
    atomic_path,
    provenance,
    sidecar_path,
    to_json,
    write_json,
)

FIELD = "behavior.classifier"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
TRAINING_JSON = "training.json"
PROB_PREFIX = "p_"


def classifier_versions() -> tuple[str, ...]:
    """Packages whose versions go into the classifier's provenance."""
    return ("torch", "transformers", "scikit-learn", "pillow", "av", "pandas")


# --------------------------------------------------------------------- frames folder


def load_frames_folder(root: PathLike) -> tuple[list[Path], np.ndarray, list[str]]:
    """The labeled frames under ``root``: ``(paths, labels, classes)``.

    ``root`` holds one subfolder per class (its name is the class) with the
    frames as image files (``IMAGE_SUFFIXES``); hidden files are ignored.
    ``classes`` are the subfolder names, sorted; ``labels`` int64 [N] index
    into ``classes``; ``paths`` are sorted within each class.

    Raises :class:`InputError` for a missing root, fewer than two classes, an
    empty class folder, a class with a single frame (it cannot be split into
    training and held-out frames) or a file that is not a known image format.
    """
    root = Path(root)
    fix_layout = "put the frames of each class in its own subfolder, e.g. frames/rearing/*.png, frames/grooming/*.png, frames/other/*.png."
    if not root.is_dir():
        raise InputError(root, "the labeled-frames folder does not exist.", fix_layout)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise InputError(
            root,
            f"a classifier needs at least 2 classes (subfolders), found {len(class_dirs)}"
            f"{': ' + class_dirs[0].name if class_dirs else ''}.",
            fix_layout,
        )
    paths: list[Path] = []
    labels: list[int] = []
    for index, class_dir in enumerate(class_dirs):
        files = sorted(p for p in class_dir.iterdir() if p.is_file() and not p.name.startswith("."))
        unknown = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        if unknown:
            raise InputError(
                unknown[0],
                f"{unknown[0].suffix or 'a file without an extension'!r} is not a known image format"
                f" ({len(unknown)} such file(s) in class {class_dir.name!r}).",
                f"store frames as {', '.join(IMAGE_SUFFIXES)} or move other files out of the class folders.",
            )
        if not files:
            raise InputError(
                class_dir,
                f"class {class_dir.name!r} has no frames (the folder is empty).",
                "add labeled frames for this class or remove its folder.",
            )
        if len(files) < 2:
            raise InputError(
                class_dir,
                f"class {class_dir.name!r} has a single frame; it cannot be split into training and held-out frames.",
                "label at least 2 frames per class (more than 20 for a useful held-out score).",
            )
        paths.extend(files)
        labels.extend([index] * len(files))
    return paths, np.asarray(labels, dtype=np.int64), [p.name for p in class_dirs]


def _open_rgb(path: Path) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise InputError(
            path,
            f"the image cannot be read ({type(err).__name__}: {err}).",
            "re-export the frame as PNG or JPEG, or remove it.",
        ) from err


def _pixel_batches(
    paths: Sequence[Path], processor: Any, batch_size: int, order: np.ndarray
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """``(indices [b], pixel_values [b, 3, h, w])`` for the frames ``order``, via the processor."""
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        images = [_open_rgb(paths[i]) for i in indices]
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        yield indices, pixels.float().contiguous()


# -------------------------------------------------------------------------- training


@dataclass
class TrainReport:
    """Outcome of :func:`train_frame_classifier` (also written to ``training.json``)."""

    out_dir: Path
    classes: list[str]
    counts: dict[str, int]
    train_counts: dict[str, int]
    held_out_counts: dict[str, int]
    class_weights: dict[str, float]
    epoch_losses: list[float]
    per_class: pd.DataFrame  # class, precision, recall, f1, support (held-out)
    macro_f1: float
    accuracy: float
    confusion: np.ndarray  # [K, K]: rows true class, columns predicted class
    provenance: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)  # HeldOutSplit.to_dict()

    def confusion_table(self) -> pd.DataFrame:
        """The confusion matrix with class names: column ``true``, one column per predicted class."""
        table = pd.DataFrame(self.confusion, columns=list(self.classes))
        table.insert(0, "true", list(self.classes))
        return table

    def metrics_table(self) -> pd.DataFrame:
        """Per-class precision / recall / F1 / support, a ``macro`` row and the ``split`` used.

        The macro row averages the classes with held-out frames (a class
        absent from the held-out frames has no score); ``split`` is the same
        on every row (:meth:`HeldOutSplit.describe`).
        """
        scored = self.per_class[self.per_class["support"] > 0]
        macro = {
            "class": "macro",
            "precision": float(scored["precision"].mean()),
            "recall": float(scored["recall"].mean()),
            "f1": self.macro_f1,
            "support": int(self.per_class["support"].sum()),
        }
        table = pd.concat([self.per_class, pd.DataFrame([macro])], ignore_index=True)
        return table.assign(split=self.split.get("description", ""))

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "counts": self.counts,
            "train_counts": self.train_counts,
            "held_out_counts": self.held_out_counts,
            "class_weights": self.class_weights,
            "epoch_losses": self.epoch_losses,
            "per_class": self.per_class.to_dict(orient="records"),
            "macro_f1": self.macro_f1,
            "accuracy": self.accuracy,
            "confusion": self.confusion.tolist(),
            "confusion_axes": "rows: true class, columns: predicted class (order of classes)",
            "split": self.split,
            "provenance": self.provenance,
        }


def _class_weights(
    spec: str | Mapping[str, float] | None, train_labels: np.ndarray, classes: Sequence[str]
) -> np.ndarray:
    """Per-class loss weights: ``balanced`` (n / (K * n_k) on the training frames), ``none``, or a mapping."""
    n_classes = len(classes)
    if spec is None or spec == "none":
        return np.ones(n_classes)
    if spec == "balanced":
        from sklearn.utils.class_weight import compute_class_weight

        return compute_class_weight("balanced", classes=np.arange(n_classes), y=train_labels)
    if isinstance(spec, Mapping):
        missing = [c for c in classes if c not in spec]
        extra = [c for c in spec if c not in classes]
        if missing or extra or any(float(v) <= 0 for v in spec.values()):
            raise InputError(
                None,
                f"class_weights {dict(spec)} do not match the classes {list(classes)} "
                f"(missing {missing}, unknown {extra}) or are not all positive.",
                "give a positive weight for every class, or use `balanced` / `none`.",
                field=f"{FIELD}.class_weights",
            )
        return np.asarray([float(spec[c]) for c in classes])
    raise InputError(
        None,
        f"class_weights {spec!r} is not valid.",
        "use `balanced`, `none`, or a mapping class -> weight.",
        field=f"{FIELD}.class_weights",
    )


def stratified_split(
    labels: np.ndarray, held_out: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``(train, held-out)`` indices: per class ``round(held_out * n_k)`` frames held out.

    Every class keeps at least one frame on each side (classes have >= 2
    frames), so every class has a held-out score; which frames are held out
    is drawn with ``seed``. The frames are drawn at random, so neighbours in
    a video fall on both sides: use it only for frames without time
    information (:func:`held_out_split`).
    """
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for k in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == k))
        n_test = min(max(math.floor(held_out * len(members) + 0.5), 1), len(members) - 1)
        test.append(members[:n_test])
    test_idx = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(len(labels)), test_idx), test_idx


# ------------------------------------------------------------------ held out in time

SPLIT_METHODS = ("auto", "videos", "blocks", "stratified")
SPLIT_DEFAULTS: dict[str, Any] = {"method": "auto", "blocks": 8, "guard_frames": 15}
FRAME_NAME = re.compile(r"^(?P<video>.+)_f(?P<frame>\d+)$")
FRAME_NAME_FORM = (
    "{video}_f{frame}.png (e.g. v0_f000123.png, as the labeled_frames rule names them)"
)


@dataclass(frozen=True)
class FrameTimes:
    """Where each labeled frame comes from: ``videos`` str [N] and ``frames`` int64 [N] (0-based)."""

    videos: np.ndarray
    frames: np.ndarray


def frame_times(paths: Sequence[Path]) -> FrameTimes | None:
    """Video and frame index of each labeled frame, from file names ``{video}_f{frame}.<ext>``.

    None when no name has that form (a plain folder of frames: no time
    information). Raises :class:`InputError` when only some names have it,
    since the others' neighbours in time could not be kept apart.
    """
    matches = [FRAME_NAME.match(p.stem) for p in paths]
    named = [m for m in matches if m is not None]
    if not named:
        return None
    if len(named) < len(paths):
        first = next(p for p, m in zip(paths, matches, strict=True) if m is None)
        raise InputError(
            first,
            f"the name does not say which video and frame it comes from, but {len(named)} of the "
            f"{len(paths)} labeled frames' names do, so held-out frames cannot be kept apart in time.",
            f"name every frame {FRAME_NAME_FORM} or none of them, or set split.method: stratified.",
            field=f"{FIELD}.split.method",
        )
    return FrameTimes(
        videos=np.asarray([m["video"] for m in named], dtype=str),
        frames=np.asarray([int(m["frame"]) for m in named], dtype=np.int64),
    )


@dataclass(frozen=True)
class HeldOutSplit:
    """Training and held-out frames, and how they were chosen (:func:`held_out_split`).

    ``method``: ``videos`` (whole videos held out), ``blocks`` (contiguous
    time blocks held out, training frames within ``guard_frames`` of a
    held-out frame of the same video dropped) or ``stratified`` (frames drawn
    at random, no time information). ``held_out_units``: the held-out videos
    or blocks (video and frame range); ``guarded``: frames in neither set.
    """

    train: np.ndarray
    test: np.ndarray
    method: str
    reason: str
    n_units: int = 0
    held_out_units: list[dict[str, Any]] = field(default_factory=list)
    guard_frames: int = 0
    guarded: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def describe(self) -> str:
        """One line for the log and ``metrics.tsv``: the method and what was held out."""
        if self.method == "stratified":
            return f"stratified: frames drawn at random per class ({self.reason})"
        if self.method == "videos":
            names = ", ".join(u["video"] for u in self.held_out_units)
            return f"videos: {len(self.held_out_units)} of {self.n_units} videos held out ({names})"
        spans = ", ".join(_span(u) for u in self.held_out_units)
        return (
            f"blocks: {len(self.held_out_units)} of {self.n_units} contiguous time blocks held out"
            f" ({spans}); guard {self.guard_frames} frames, {len(self.guarded)} frames dropped"
        )

    def to_dict(self) -> dict[str, Any]:
        n = len(self.train) + len(self.test) + len(self.guarded)
        return {
            "method": self.method,
            "reason": self.reason,
            "description": self.describe(),
            "n_units": self.n_units,
            "held_out_units": self.held_out_units,
            "guard_frames": self.guard_frames,
            "n_guarded": len(self.guarded),
            "held_out_share": len(self.test) / n,
        }


def _span(unit: Mapping[str, Any]) -> str:
    first, last = unit["first"], unit["last"]
    if first["video"] == last["video"]:
        return f"{first['video']} frames {first['frame']}-{last['frame']}"
    return f"{first['video']} frame {first['frame']} - {last['video']} frame {last['frame']}"


def split_options(split: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``behavior.classifier.split`` settings over :data:`SPLIT_DEFAULTS`."""
    unknown = sorted(set(split or {}) - set(SPLIT_DEFAULTS))
    if unknown:
        raise InputError(
            None,
            f"unknown split setting(s) {unknown}.",
            f"use only {list(SPLIT_DEFAULTS)}.",
            field=f"{FIELD}.split",
        )
    return {**SPLIT_DEFAULTS, **dict(split or {})}


def _split_method(method: str, times: FrameTimes | None) -> tuple[str, str]:
    """``(method, reason)``: ``auto`` resolved from the frames' time information."""
    if method not in SPLIT_METHODS:
        raise InputError(
            None,
            f"split.method {method!r} is not one of {list(SPLIT_METHODS)}.",
            "use auto (by video with 2+ videos, else by time blocks), videos, blocks or stratified.",
            field=f"{FIELD}.split.method",
        )
    n_videos = 0 if times is None else len(np.unique(times.videos))
    if method in ("videos", "blocks") and times is None:
        raise InputError(
            None,
            f"split.method {method!r} needs each frame's video and frame index, "
            "but the frame names carry none.",
            f"name the frames {FRAME_NAME_FORM}, or use split.method: stratified.",
            field=f"{FIELD}.split.method",
        )
    if method == "videos" and n_videos < 2:
        raise InputError(
            None,
            "split.method 'videos' needs labeled frames from at least 2 videos, found 1.",
            "label frames of another video, or use split.method: blocks (or auto).",
            field=f"{FIELD}.split.method",
        )
    if method != "auto":
        return method, f"split.method: {method}"
    if times is None:
        return "stratified", (
            f"the frame names carry no video and frame index ({FRAME_NAME_FORM}), "
            "so held-out frames may be near-identical neighbours of training frames "
            "and the held-out F1 is optimistic"
        )
    if n_videos >= 2:
        return "videos", f"frames from {n_videos} videos: whole videos held out"
    return "blocks", "frames from one video: contiguous time blocks held out"


def time_blocks(times: FrameTimes, n_blocks: int) -> np.ndarray:
    """Block of each frame (int64 [N]): ``n_blocks`` runs of consecutive frames in time.

    Frames are ordered by video, then frame index, and cut into ``n_blocks``
    runs of (nearly) equal counts, so each block is one stretch of time.
    """
    order = np.lexsort((times.frames, times.videos))
    block = np.empty(len(order), dtype=np.int64)
    for b, members in enumerate(np.array_split(order, n_blocks)):
        block[members] = b
    return block


def guard_mask(times: FrameTimes, test: np.ndarray, guard_frames: int) -> np.ndarray:
    """bool [N]: frames within ``guard_frames`` frames of a held-out frame of the same video."""
    near = np.zeros(len(times.frames), dtype=bool)
    for video in np.unique(times.videos[test]):
        held = np.sort(times.frames[test][times.videos[test] == video])
        members = np.flatnonzero(times.videos == video)
        frames = times.frames[members]
        after = np.searchsorted(held, frames).clip(max=len(held) - 1)
        before = (after - 1).clip(min=0)
        distance = np.minimum(np.abs(frames - held[after]), np.abs(frames - held[before]))
        near[members] = distance <= guard_frames
    near[test] = False
    return near


def _group_folds(
    labels: np.ndarray, groups: np.ndarray, held_out: float, seed: int
) -> list[np.ndarray]:
    """Held-out candidates: the folds of scikit-learn's ``StratifiedGroupKFold``, in seeded order.

    ``round(1 / held_out)`` folds (at least 2, at most the number of groups),
    each a set of whole groups with class proportions as even as the groups allow.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    n_groups = len(np.unique(groups))
    n_splits = min(max(round(1 / held_out), 2), n_groups, int(np.bincount(labels).max()))
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    # A class with fewer frames than folds makes scikit-learn warn; coverage is checked after.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tests = [test for _, test in folds.split(labels, labels, groups)]
    order = np.random.default_rng(seed).permutation(len(tests))
    return [np.sort(tests[i]) for i in order]


def _missing(labels: np.ndarray, idx: np.ndarray, n_classes: int) -> int:
    return int((np.bincount(labels[idx], minlength=n_classes) == 0).sum())


def _choose_fold(
    labels: np.ndarray, times: FrameTimes, folds: Sequence[np.ndarray], guard: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(train, held-out)``: the first fold leaving every class on both sides, else the best.

    Training frames are the others, less those within ``guard`` frames of a
    held-out one (None: no guard). "Best" misses the fewest classes from
    training, then from the held-out frames.
    """
    n_classes = int(labels.max()) + 1
    best: tuple[tuple[int, int], np.ndarray, np.ndarray] | None = None
    for test in folds:
        train = np.setdiff1d(np.arange(len(labels)), test)
        if guard is not None:
            train = train[~guard_mask(times, test, guard)[train]]
        score = (_missing(labels, train, n_classes), _missing(labels, test, n_classes))
        if best is None or score < best[0]:
            best = (score, train, test)
        if score == (0, 0):
            break
    assert best is not None, "no folds"
    return best[1], best[2]


def held_out_split(
    labels: np.ndarray,
    times: FrameTimes | None,
    *,
    held_out: float,
    seed: int,
    method: str = SPLIT_DEFAULTS["method"],
    blocks: int = SPLIT_DEFAULTS["blocks"],
    guard_frames: int = SPLIT_DEFAULTS["guard_frames"],
) -> HeldOutSplit:
    """Training and held-out frames, held out in time where the frames say when they were filmed.

    - ``videos`` (``auto`` with frames from 2+ videos): whole videos are held out.
    - ``blocks`` (``auto`` with one video): the frames are cut into ``blocks``
      contiguous time blocks (:func:`time_blocks`) and whole blocks are held
      out; training frames within ``guard_frames`` of a held-out frame of the
      same video are dropped (:func:`guard_mask`), so no training frame is a
      near-identical neighbour of a held-out one.
    - ``stratified`` (``auto`` without time information): :func:`stratified_split`.

    Videos and blocks are grouped into ``round(1 / held_out)`` folds balanced
    by class (``StratifiedGroupKFold``); the held-out fold is the first, in
    seeded order, that leaves every class on both sides after the guard
    (else the one missing the fewest classes, from training first).
    """
    resolved, reason = _split_method(method, times)
    if resolved == "stratified" or times is None:
        train, test = stratified_split(labels, held_out, seed)
        return HeldOutSplit(train=train, test=test, method="stratified", reason=reason)
    if resolved == "blocks" and int(blocks) < 2:
        raise InputError(
            None,
            f"split.blocks={blocks} must be >= 2.",
            "use e.g. 8.",
            field=f"{FIELD}.split.blocks",
        )
    if int(guard_frames) < 0:
        raise InputError(
            None,
            f"split.guard_frames={guard_frames} must be >= 0.",
            "use at least the number of frames over which neighbouring frames look alike.",
            field=f"{FIELD}.split.guard_frames",
        )
    if resolved == "videos":
        groups = np.unique(times.videos, return_inverse=True)[1]
    else:
        groups = time_blocks(times, min(int(blocks), len(labels)))
    guard = int(guard_frames) if resolved == "blocks" else None
    train, test = _choose_fold(labels, times, _group_folds(labels, groups, held_out, seed), guard)
    guarded = np.setdiff1d(np.arange(len(labels)), np.concatenate([train, test]))
    return HeldOutSplit(
        train=train,
        test=test,
        method=resolved,
        reason=reason,
        n_units=int(groups.max()) + 1,
        held_out_units=_held_out_units(resolved, times, groups, test),
        guard_frames=guard or 0,
        guarded=guarded,
    )


def _held_out_units(
    method: str, times: FrameTimes, groups: np.ndarray, test: np.ndarray
) -> list[dict[str, Any]]:
    """The held-out videos (name, frames) or blocks (index, first and last frame, frames)."""
    units: list[dict[str, Any]] = []
    for g in np.unique(groups[test]):
        members = np.flatnonzero(groups == g)
        if method == "videos":
            units.append({"video": str(times.videos[members[0]]), "n_frames": len(members)})
            continue
        order = members[np.lexsort((times.frames[members], times.videos[members]))]
        first, last = order[0], order[-1]
        units.append(
            {
                "block": int(g),
                "first": {"video": str(times.videos[first]), "frame": int(times.frames[first])},
                "last": {"video": str(times.videos[last]), "frame": int(times.frames[last])},
                "n_frames": len(members),
            }
        )
    return units


def load_classifier(
    model: str, classes: Sequence[str] | None = None, field: str = f"{FIELD}.model"
) -> tuple[torch.nn.Module, Any]:
    """``(model, image processor)`` from a hub id or a local directory, fp32.

    With ``classes``, the classification head is sized for them (``id2label``
    and ``label2id`` set ``num_labels``; passing ``num_labels`` too makes
    transformers warn); a head of another size (e.g. ImageNet's 1000 classes)
    is replaced by a freshly initialised one (``ignore_mismatched_sizes``), a
    head of the same size is kept and fine-tuned.
    """
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    processor = models.from_pretrained(AutoImageProcessor.from_pretrained, model, field)
    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if classes is not None:
        kwargs.update(
            id2label=dict(enumerate(classes)),
            label2id={name: i for i, name in enumerate(classes)},
            ignore_mismatched_sizes=True,
        )
    network = models.from_pretrained(
        AutoModelForImageClassification.from_pretrained, model, field, **kwargs
    )
    return network, processor


def _split_frames(
    frames_root: PathLike,
    paths: Sequence[Path],
    labels: np.ndarray,
    classes: Sequence[str],
    emit: rt.Emit,
    held_out: float,
    seed: int,
    options: Mapping[str, Any],
) -> HeldOutSplit:
    """:func:`held_out_split` of a labeled-frames folder, checked and logged.

    Raises :class:`InputError` when a class has no training frame left (all
    its frames are held out or guarded); a class without held-out frames is
    logged (it gets no score).
    """
    method = options["method"]
    times = frame_times(paths) if method != "stratified" else None
    chosen = held_out_split(labels, times, held_out=held_out, seed=seed, **options)
    emit(f"held-out split: {chosen.describe()}")
    if chosen.method == "stratified" and method == "auto":
        emit(f"no time information: {chosen.reason}")
    n_train = np.bincount(labels[chosen.train], minlength=len(classes))
    n_test = np.bincount(labels[chosen.test], minlength=len(classes))
    if (n_train == 0).any():
        name = classes[int(np.flatnonzero(n_train == 0)[0])]
        raise InputError(
            frames_root,
            f"class {name!r} has no training frames left: all its frames fall in the held-out "
            f"{chosen.method} or within the guard ({chosen.describe()}).",
            "label more bouts of it, spread over the video(s), use more split.blocks, "
            "a smaller split.guard_frames, or more videos.",
            field=f"{FIELD}.split",
        )
    for k in np.flatnonzero(n_test == 0):
        emit(
            f"class {classes[k]!r} has no held-out frames in this split: it gets no held-out score"
        )
    return chosen


def train_frame_classifier(
    frames_root: PathLike,
    model: str,
    out_dir: PathLike,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    held_out: float = 0.2,
    seed: int = 0,
    split: Mapping[str, Any] | None = None,
    device: str = "auto",
    class_weights: str | Mapping[str, float] | None = "balanced",
    weight_decay: float = 0.01,
    threads: int = 1,
    log: logging.Logger | rt.Emit | None = None,
) -> TrainReport:
    """Fine-tune ``model`` on the labeled frames under ``frames_root``; write it to ``out_dir``.

    - Split: :func:`held_out_split` (``split``: ``method``, ``blocks``,
      ``guard_frames``, defaults :data:`SPLIT_DEFAULTS`) keeps about a ``held_out`` share of the frames for evaluation only:
      whole videos when the frames come from 2+ videos, contiguous time blocks
      with a guard when they come from one (file names ``{video}_f{frame}``,
      :func:`frame_times`), frames drawn at random per class when the names
      carry no time (logged, and said in the outputs). The model of the last
      epoch is kept (the held-out frames never choose anything).
    - Loss: cross-entropy weighted by ``class_weights`` (``balanced`` gives
      each class the same total weight on the training frames).
    - Optimiser: AdamW(``lr``, ``weight_decay``), ``epochs`` passes in seeded
      shuffled batches of ``batch_size``.
    - Output (written atomically as one folder): the fine-tuned model and its
      image processor (``save_pretrained``, ``id2label`` = the classes),
      ``training.json`` (provenance: base model, classes, counts, parameters,
      versions; the metrics; ``split``: :meth:`HeldOutSplit.to_dict`),
      ``metrics.tsv`` (per-class precision, recall, F1, support, a ``macro``
      row over the classes with held-out frames, and a ``split`` column that
      says how the frames were held out) and ``confusion.tsv``.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    emit = rt.emitter(log)
    if not 0.0 < float(held_out) < 1.0:
        raise InputError(
            None,
            f"held_out={held_out} must be a share between 0 and 1 (exclusive).",
            "use e.g. 0.2 to keep a fifth of each class for evaluation.",
            field=f"{FIELD}.held_out",
        )
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if int(value) < 1:
            raise InputError(
                None,
                f"{name}={value} must be >= 1.",
                "set a positive integer.",
                field=f"{FIELD}.{name}",
            )
    if not float(lr) > 0:
        raise InputError(None, f"lr={lr} must be > 0.", "use e.g. 5e-5.", field=f"{FIELD}.lr")

    paths, labels, classes = load_frames_folder(frames_root)
    n_classes = len(classes)
    indices = np.arange(len(paths))
    options = split_options(split)
    chosen = _split_frames(frames_root, paths, labels, classes, emit, held_out, seed, options)
    train_idx, test_idx = chosen.train, chosen.test
    weights = _class_weights(class_weights, labels[train_idx], classes)

    runtime = models.select_runtime(device, threads)
    torch.manual_seed(seed)  # the new head's initialisation
    network, processor = load_classifier(model, classes)
    network.to(runtime.device)
    loss_fn = torch.nn.CrossEntropyLoss(
        weight=torch.as_tensor(weights, dtype=torch.float32, device=runtime.device)
    )
    optimizer = torch.optim.AdamW(network.parameters(), lr=float(lr), weight_decay=weight_decay)
    # fp16 (GPUs without bf16) needs loss scaling; bf16 and fp32 do not.
    scaler = torch.amp.GradScaler(
        runtime.device.type, enabled=runtime.autocast_dtype == torch.float16
    )
    labels_t = torch.as_tensor(labels)

    def count(idx: np.ndarray) -> dict[str, int]:
        return {c: int((labels[idx] == k).sum()) for k, c in enumerate(classes)}

    emit(
        f"{frames_root}: {len(paths)} frames {count(indices)}, training on {len(train_idx)}, "
        f"held out {len(test_idx)}; {model} on {runtime.device} ({runtime.dtype_name}); "
        f"class weights {dict(zip(classes, np.round(weights, 4).tolist(), strict=True))}"
    )

    rng = np.random.default_rng(seed)
    epoch_losses: list[float] = []
    progress = rt.Progress(emit, f"training {model}")
    for epoch in range(int(epochs)):
        network.train()
        order = rng.permutation(train_idx)
        total, seen = 0.0, 0
        for batch_idx, pixels in rt.prefetch(
            _pixel_batches(paths, processor, int(batch_size), order)
        ):
            target = labels_t[batch_idx].to(runtime.device)
            with runtime.autocast():
                logits = network(pixel_values=runtime.to_device(pixels)).logits
            loss = loss_fn(logits.float(), target)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            total += float(loss.detach()) * len(batch_idx)
            seen += len(batch_idx)
            progress.update(epoch * len(train_idx) + seen)
        epoch_losses.append(total / seen)
        emit(f"epoch {epoch + 1}/{epochs}: weighted cross-entropy {epoch_losses[-1]:.4f}")
    progress.finish()

    network.eval()
    predicted = np.empty(len(test_idx), dtype=np.int64)
    with torch.inference_mode():
        done = 0
        for _, pixels in _pixel_batches(paths, processor, int(batch_size), test_idx):
            with runtime.autocast():
                logits = network(pixel_values=runtime.to_device(pixels)).logits
            predicted[done : done + len(pixels)] = logits.float().argmax(dim=1).cpu().numpy()
            done += len(pixels)
    truth = labels[test_idx]
    ks = np.arange(n_classes)
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=ks, zero_division=0
    )
    per_class = pd.DataFrame(
        {
            "class": classes,
            "precision": precision.astype(float),
            "recall": recall.astype(float),
            "f1": f1.astype(float),
            "support": support.astype(int),
        }
    )
    record = provenance(
        "behavior_classifier_train",
        {
            "base_model": model,
            "base_revision": models.weights_revision(model, network)
            if models.is_local(model)
            else None,
            "epochs": int(epochs),
            "lr": float(lr),
            "batch_size": int(batch_size),
            "held_out": float(held_out),
            "split": options,
            "seed": int(seed),
            "class_weights": dict(class_weights)
            if isinstance(class_weights, Mapping)
            else class_weights,
            "weight_decay": float(weight_decay),
            "device": runtime.device.type,
            "dtype": runtime.dtype_name,
            "model_class": type(network).__name__,
            "frames_root": str(frames_root),
        },
        packages=classifier_versions(),
    )
    report = TrainReport(
        out_dir=Path(out_dir),
        classes=list(classes),
        counts=count(indices),
        train_counts=count(train_idx),
        held_out_counts=count(test_idx),
        class_weights={c: float(w) for c, w in zip(classes, weights, strict=True)},
        epoch_losses=[float(x) for x in epoch_losses],
        per_class=per_class,
        macro_f1=float(f1[support > 0].mean()),
        accuracy=float(accuracy_score(truth, predicted)),
        confusion=confusion_matrix(truth, predicted, labels=ks),
        provenance=record,
        split=chosen.to_dict(),
    )
    with atomic_dir(out_dir) as tmp:
        network.to("cpu").save_pretrained(tmp)
        processor.save_pretrained(tmp)
        (tmp / TRAINING_JSON).write_text(to_json(report.to_dict()) + "\n")
        report.metrics_table().to_csv(
            tmp / "metrics.tsv", sep="\t", index=False, float_format="%.6g"
        )
        report.confusion_table().to_csv(tmp / "confusion.tsv", sep="\t", index=False)
    emit(
        f"held-out macro F1 {report.macro_f1:.3f}, accuracy {report.accuracy:.3f}; "
        f"F1 per class {dict(zip(classes, np.round(f1, 3).tolist(), strict=True))}; wrote {out_dir}"
    )
    return report


# ------------------------------------------------------------------------ prediction


def model_classes(network: Any) -> list[str]:
    """Class names of a classifier, in the order of its logits (``config.id2label``)."""
    id2label = network.config.id2label
    return [str(id2label[i]) for i in range(int(network.config.num_labels))]


def predict_video(
    model_dir: PathLike,
    video: PathLike,
    *,
    batch_size: int | str = 32,
    device: str = "auto",
    threads: int = 1,
    log: logging.Logger | rt.Emit | None = None,
) -> pd.DataFrame:
    """Class probabilities of every frame of ``video`` from a fine-tuned classifier.

    Columns: ``frame`` (0-based index), ``time`` (s, frame centre), one
    ``p_<class>`` per class (softmax, in the order of ``id2label``) and
    ``label`` (the most probable class). Decoding is streamed and batched, so
    memory does not depend on the video's length.
    """
    emit = rt.emitter(log)
    runtime = models.select_runtime(device, threads)
    network, processor = load_classifier(str(model_dir), field=f"{FIELD}.model_dir")
    network.eval().to(runtime.device)
    classes = model_classes(network)
    prep = rt.Preprocess.from_processor(processor)
    (_, _), (_, _, ch, cw) = prep.plan(*rt.video_size(video))

    @torch.inference_mode()
    def probabilities(pixels: torch.Tensor) -> torch.Tensor:
        with runtime.autocast():
            logits = network(pixel_values=pixels).logits
        return torch.softmax(logits.float(), dim=1)

    batch = models.auto_batch_size(
        lambda n: probabilities(torch.zeros(n, 3, ch, cw, device=runtime.device)),
        runtime,
        batch_size,
    )
    emit(
        f"{video}: {model_dir} on {runtime.device} ({runtime.dtype_name}), classes {classes}, batch {batch}"
    )
    progress = rt.Progress(emit, str(video))
    times_parts: list[np.ndarray] = []
    prob_parts: list[np.ndarray] = []
    done = 0
    for times, pixels in rt.prefetch(rt.batched(rt.frame_chunks(video, prep, chunk=batch), batch)):
        prob_parts.append(probabilities(runtime.to_device(pixels)).cpu().numpy())
        times_parts.append(times)
        done += len(times)
        progress.update(done)
    progress.finish()
    if not done:
        raise InputError(video, "the video has no frames.", "give a video with at least one frame.")
    probs = np.concatenate(prob_parts).astype(np.float64)
    table = pd.DataFrame({"frame": np.arange(done), "time": np.concatenate(times_parts)})
    for k, name in enumerate(classes):
        table[f"{PROB_PREFIX}{name}"] = probs[:, k]
    table["label"] = np.asarray(classes, dtype=object)[probs.argmax(axis=1)]
    return table


# ------------------------------------------------------------------- bouts and times


def _runs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index and length of each run of equal consecutive labels."""
    if len(labels) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [len(labels)]]))
    return starts, lengths


def _check_fps(fps: float) -> None:
    if not fps > 0:
        raise InputError(
            None, f"fps={fps} must be > 0.", "check the video's frame rate.", field="fps"
        )


def min_bout_frames(fps: float, min_bout_s: float) -> int:
    """Frames of the shortest kept bout: ``round(min_bout_s * fps)`` (at least 1)."""
    _check_fps(fps)
    if min_bout_s < 0:
        raise InputError(
            None, f"min_bout_s={min_bout_s} must be >= 0.", field=f"{FIELD}.min_bout_s"
        )
    return max(int(round(min_bout_s * fps)), 1)


def smooth_labels(labels: Sequence[Any] | np.ndarray, fps: float, min_bout_s: float) -> np.ndarray:
    """Labels with every bout shorter than ``min_bout_s`` given to the surrounding behavior.

    A bout is a run of equal consecutive labels. Short bouts are removed
    shortest first (ties: the earlier one): a bout between two bouts of the
    same label takes that label (the three merge); between two different
    labels it joins the longer neighbour (ties: the preceding one); at either
    end of the video it joins its only neighbour. Merged bouts are re-checked,
    so the result has no bout shorter than the minimum unless the whole video
    is one bout. ``round(min_bout_s * fps)`` frames is the minimum; 0 keeps
    the labels as they are.
    """
    values = np.asarray(labels)
    shortest = min_bout_frames(fps, min_bout_s)
    starts, lengths = _runs(values)
    n_runs = len(starts)
    if n_runs <= 1 or shortest <= 1:
        return values.copy()
    run_label = [values[s] for s in starts]
    length = lengths.astype(np.int64).tolist()
    prev = list(range(-1, n_runs - 1))
    nxt = list(range(1, n_runs + 1))
    nxt[-1] = -1
    alive = [True] * n_runs
    heap = [(length[i], int(starts[i]), i) for i in range(n_runs) if length[i] < shortest]
    heapq.heapify(heap)
    first_start = [int(s) for s in starts]

    def unlink(i: int) -> None:
        alive[i] = False
        if prev[i] >= 0:
            nxt[prev[i]] = nxt[i]
        if nxt[i] >= 0:
            prev[nxt[i]] = prev[i]

    def absorb(keep: int, gone: int) -> None:
        """Bout ``gone`` (adjacent to ``keep``) becomes part of ``keep``."""
        length[keep] += length[gone]
        first_start[keep] = min(first_start[keep], first_start[gone])
        unlink(gone)

    while heap:
        size, _, i = heapq.heappop(heap)
        if not alive[i] or size != length[i] or length[i] >= shortest:
            continue  # stale entry
        left, right = prev[i], nxt[i]
        if left < 0 and right < 0:
            break  # the whole video is one bout
        if left >= 0 and right >= 0 and run_label[left] == run_label[right]:
            absorb(left, i)
            absorb(left, right)
            target = left
        elif right < 0 or (left >= 0 and length[left] >= length[right]):
            absorb(left, i)
            target = left
        else:
            absorb(right, i)
            target = right
        if length[target] < shortest:
            heapq.heappush(heap, (length[target], first_start[target], target))

    out = values.copy()
    for i in range(n_runs):
        if alive[i]:
            out[first_start[i] : first_start[i] + length[i]] = run_label[i]
    return out


def time_per_behavior(
    labels: Sequence[Any] | np.ndarray, fps: float, classes: Sequence[str] | None = None
) -> dict[str, float]:
    """Seconds spent per behavior (frames with that label / ``fps``).

    With ``classes`` every class is a key (0.0 when absent) in that order;
    otherwise the labels that occur, sorted.
    """
    _check_fps(fps)
    names, counts = np.unique(np.asarray(labels, dtype=str), return_counts=True)
    frames = dict(zip(names.tolist(), counts.tolist(), strict=True))
    keys = list(classes) if classes is not None else sorted(frames)
    return {key: frames.get(key, 0) / float(fps) for key in keys}


def bout_counts(labels: Sequence[Any] | np.ndarray, classes: Sequence[str]) -> dict[str, int]:
    """Number of bouts (runs of consecutive frames) of each class."""
    values = np.asarray(labels, dtype=str)
    starts, _ = _runs(values)
    run_labels = values[starts].tolist()
    return {c: run_labels.count(c) for c in classes}


# --------------------------------------------------------------------------- output


def frame_table_classes(table: pd.DataFrame) -> list[str]:
    """Class names of a per-frame table, from its ``p_<class>`` columns."""
    return [c[len(PROB_PREFIX) :] for c in table.columns if c.startswith(PROB_PREFIX)]


def write_frame_predictions(
    path: PathLike,
    table: pd.DataFrame,
    *,
    fps: float,
    min_bout_s: float = 0.0,
    record: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the per-frame table as CSV and its JSON sidecar (both atomically); return the sidecar.

    The CSV gets a ``label_smoothed`` column (:func:`smooth_labels` with
    ``min_bout_s``) after ``label``. The sidecar (:func:`neurovid.io.sidecar_path`) holds
    the classes, ``fps``, frame count, duration, ``min_bout_s``, seconds and
    bouts per behavior (smoothed, and raw) and ``provenance`` (``record``).
    """
    classes = frame_table_classes(table)
    missing = [c for c in ("frame", "time", "label") if c not in table.columns]
    if missing or not classes:
        raise ValueError(f"{path}: per-frame table lacks columns {missing or ['p_<class>']}")
    out = table.copy()
    out["label_smoothed"] = smooth_labels(out["label"].to_numpy(dtype=object), fps, min_bout_s)
    summary = {
        "classes": classes,
        "fps": float(fps),
        "n_frames": len(out),
        "duration_s": len(out) / float(fps),
        "min_bout_s": float(min_bout_s),
        "time_per_behavior_s": time_per_behavior(out["label_smoothed"], fps, classes),
        "bouts_per_behavior": bout_counts(out["label_smoothed"], classes),
        "time_per_behavior_raw_s": time_per_behavior(out["label"], fps, classes),
        "bouts_per_behavior_raw": bout_counts(out["label"], classes),
        "columns": list(out.columns),
        "provenance": dict(record or {}),
    }
    with atomic_path(path) as tmp:
        # Fixed decimals, not significant digits: times of long videos keep their ms.
        out.to_csv(tmp, index=False, float_format="%.6f")
    write_json(sidecar_path(path), summary)
    return summary


def read_frame_predictions(path: PathLike) -> pd.DataFrame:
    """A ``{video}.frames.csv`` table, checked for its columns."""
    table = pd.read_csv(path)
    missing = [c for c in ("frame", "time", "label") if c not in table.columns]
    if missing or not frame_table_classes(table):
        raise InputError(
            path,
            f"not a per-frame behavior table (missing {missing or ['p_<class>']}).",
            "give a file written by the behavior classifier (results/behavior/{video}.frames.csv).",
        )
    return table


def predict_and_write(
    model_dir: PathLike,
    video: PathLike,
    out_csv: PathLike,
    *,
    min_bout_s: float = 0.0,
    batch_size: int | str = 32,
    device: str = "auto",
    threads: int = 1,
    log: logging.Logger | rt.Emit | None = None,
) -> dict[str, Any]:
    """:func:`predict_video` then :func:`write_frame_predictions`, with provenance; returns the sidecar."""
    from neurovid.video import video_fps

    emit = rt.emitter(log)
    fps = video_fps(video)
    table = predict_video(
        model_dir, video, batch_size=batch_size, device=device, threads=threads, log=log
    )
    training = Path(model_dir) / TRAINING_JSON
    record = provenance(
        "behavior_classifier_predict",
        {
            "model_dir": str(model_dir),
            "model_revision": models.weights_revision(str(model_dir), None),
            "min_bout_s": float(min_bout_s),
            "batch_size": batch_size,
            "device": device,
            "base_model": json.loads(training.read_text())["provenance"]["params"]["base_model"]
            if training.is_file()
            else None,
        },
        {"video": video},
        classifier_versions(),
    )
    summary = write_frame_predictions(out_csv, table, fps=fps, min_bout_s=min_bout_s, record=record)
    emit(
        f"wrote {out_csv}: {summary['n_frames']} frames, seconds per behavior {summary['time_per_behavior_s']}"
    )
    return summary
