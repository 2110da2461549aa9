"""CalMS21 / MABe 2021 (task 1) JSON: two-mouse pose plus per-frame behavior annotations.

The file (``calms21_task1_train.json``, ``..._test.json``) is a JSON object of
groups (``annotator-id_0``) of sequences (``task1/train/mouse001_task1_annotator1``)::

    {"annotator-id_0": {
        "task1/train/mouse001_task1_annotator1": {
            "keypoints":   [frames][2 mice][2 (x, y)][7 body parts]   (pixels)
            "scores":      [frames][2 mice][7 body parts]             (optional)
            "annotations": [frames] ints                              (optional)
            "metadata":    {"vocab": {"attack": 0, "investigation": 1, "mount": 2, "other": 3}}
        }, ...}}

The vocabulary (behavior name -> int) is the sequence's ``metadata.vocab``, else
the group's or the file's top-level ``vocabulary`` / ``vocab`` entry. Mouse 0 is
the resident, mouse 1 the intruder; the body parts are, in order, nose, left
ear, right ear, neck, left hip, right hip, tail base; CalMS21 is filmed at 30 Hz.

:func:`load_sequence` gives a sequence as a movement poses dataset (individuals
``resident``, ``intruder``; as :func:`neurovid.behavior.pose_io.load_pose_dataset`
returns every other format) plus its per-frame labels; :func:`annotations_table`
turns the labels into neurovid's annotations (``start_frame,stop_frame,label``,
0-based, stop exclusive, one row per bout of a label other than ``other``).

In the workflow, a sequence is a row of videos.tsv with ``pose`` = the JSON,
``pose_source`` = ``calms21`` (or left empty: ``.json`` is detected), ``sequence``
= the sequence id (optional when the file holds one sequence) and, for its
annotations, ``annotations`` = the same JSON (rule ``calms21_annotations``
writes the CSV). The row's ``path`` is the sequence's video, which stage 2 and
the frame classifier need; a sequence without its video runs stage 1 and its
evaluation through the library (:func:`neurovid.behavior.pipeline.train_actions`
without a stage-2 path, :func:`~neurovid.behavior.pipeline.localize` without a
video, :func:`~neurovid.behavior.pipeline.evaluate_videos` with ``actions_only``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from neurovid.errors import InputError
from neurovid.io import PathLike, write_table

BODYPARTS = ("nose", "left_ear", "right_ear", "neck", "left_hip", "right_hip", "tail_base")
ANIMALS = ("resident", "intruder")
FPS = 30.0
BACKGROUND = "other"
VOCABULARY_KEYS = ("vocabulary", "vocab")
FIELD_SEQUENCE = "sequence"
FIX_FORMAT = (
    "give a CalMS21 task-1 JSON: {group: {sequence_id: {keypoints: [frames][2][2][7], "
    "annotations: [frames], metadata: {vocab: {name: int}}}}}."
)


@dataclass(frozen=True)
class Calms21Sequence:
    """One CalMS21 sequence: pose (movement dataset), per-frame labels (None when
    unannotated) and the vocabulary (name -> int)."""

    sequence_id: str
    group: str
    pose: xr.Dataset
    labels: np.ndarray | None
    vocabulary: dict[str, int]


def read_file(path: PathLike) -> dict[str, Any]:
    """The JSON object, checked to hold groups of sequences (InputError naming the file)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "the CalMS21 file does not exist.", "check the path in the sheet.")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(path, f"is not valid JSON ({err}).", FIX_FORMAT, field="pose") from err
    if not isinstance(data, dict) or not _sequences(data):
        raise InputError(path, "holds no sequence with keypoints.", FIX_FORMAT, field="pose")
    return data


def _sequences(data: Mapping[str, Any]) -> dict[str, tuple[str, Mapping[str, Any]]]:
    """{sequence_id: (group, sequence)} of every group (top-level vocabulary entries skipped)."""
    found: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for group, members in data.items():
        if group in VOCABULARY_KEYS or not isinstance(members, Mapping):
            continue
        for sequence_id, sequence in members.items():
            if isinstance(sequence, Mapping) and "keypoints" in sequence:
                found[f"{group}/{sequence_id}"] = (group, sequence)
    return found


def sequence_ids(path: PathLike) -> list[str]:
    """The file's sequence ids (without the group), in file order."""
    return [key.split("/", 1)[1] for key in _sequences(read_file(path))]


def _pick(path: Path, data: Mapping[str, Any], sequence: str | None) -> tuple[str, str, Any]:
    found = _sequences(data)
    if sequence is None or str(sequence).strip() == "":
        if len(found) == 1:
            key = next(iter(found))
            return found[key][0], key.split("/", 1)[1], found[key][1]
        names = [k.split("/", 1)[1] for k in found]
        raise InputError(
            path,
            f"the file holds {len(found)} sequences ({', '.join(names[:3])}, ...).",
            "name one in the videos sheet's `sequence` column.",
            field=FIELD_SEQUENCE,
        )
    sequence = str(sequence).strip()
    if sequence in found:  # group/sequence_id
        group, seq = found[sequence]
        return group, sequence.split("/", 1)[1], seq
    matches = [k for k in found if k.split("/", 1)[1] == sequence]
    if not matches:  # the id's last part, e.g. mouse001_task1_annotator1
        matches = [k for k in found if k.rsplit("/", 1)[1] == sequence]
    if len(matches) == 1:
        group, seq = found[matches[0]]
        return group, matches[0].split("/", 1)[1], seq
    names = [k.split("/", 1)[1] for k in found]
    raise InputError(
        path,
        f"sequence {sequence!r} is {'in several groups' if matches else 'not in the file'} "
        f"(it has {', '.join(names[:5])}{', ...' if len(names) > 5 else ''}).",
        "give one of the file's sequence ids in the `sequence` column (its last part is "
        "enough when unique; group/sequence_id when the id is in several groups).",
        field=FIELD_SEQUENCE,
    )


def _vocabulary(path: Path, data: Mapping[str, Any], group: str, seq: Mapping[str, Any]):
    candidates = [(seq.get("metadata") or {}).get(k) for k in ("vocab", *VOCABULARY_KEYS)]
    candidates += [data.get(group, {}).get(k) for k in VOCABULARY_KEYS]
    candidates += [data.get(k) for k in VOCABULARY_KEYS]
    vocab = next((v for v in candidates if isinstance(v, Mapping) and v), None)
    if vocab is None:
        return None
    try:
        mapping = {str(name): int(code) for name, code in vocab.items()}
    except (TypeError, ValueError) as err:
        raise InputError(
            path, f"the vocabulary {dict(vocab)} does not map names to ints.", FIX_FORMAT,
            field="vocabulary",
        ) from err  # fmt: skip
    if len(set(mapping.values())) != len(mapping):
        raise InputError(
            path, f"the vocabulary {mapping} gives two behaviors the same int.", field="vocabulary"
        )
    return mapping


def load_sequence(path: PathLike, sequence: str | None = None, fps: float = FPS) -> Calms21Sequence:
    """One sequence as a movement dataset (individuals resident, intruder) plus its labels."""
    from movement.io import load_poses

    path = Path(path)
    data = read_file(path)
    group, sequence_id, seq = _pick(path, data, sequence)
    where = f"sequence {sequence_id}"
    try:
        keypoints = np.asarray(seq["keypoints"], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(path, f"{where}: keypoints are not numbers ({err}).", FIX_FORMAT,
                         field="keypoints") from err  # fmt: skip
    n_parts = len(BODYPARTS)
    if keypoints.ndim != 4 or keypoints.shape[2] != 2 or keypoints.shape[3] != n_parts:
        raise InputError(
            path,
            f"{where}: keypoints have shape {keypoints.shape}, not [frames, mice, 2, {n_parts}].",
            FIX_FORMAT,
            field="keypoints",
        )
    n_frames, n_animals = keypoints.shape[:2]
    if "scores" in seq and seq["scores"] is not None:
        scores = np.asarray(seq["scores"], dtype=np.float64)
        if scores.shape != (n_frames, n_animals, n_parts):
            raise InputError(
                path,
                f"{where}: scores have shape {scores.shape}, not {(n_frames, n_animals, n_parts)}.",
                FIX_FORMAT,
                field="scores",
            )
    else:
        scores = np.full((n_frames, n_animals, n_parts), np.nan)
    animals = list(ANIMALS) if n_animals == 2 else [f"mouse{i}" for i in range(n_animals)]
    pose = load_poses.from_numpy(
        position_array=keypoints.transpose(0, 2, 3, 1),  # (time, space, keypoints, individuals)
        confidence_array=scores.transpose(0, 2, 1),
        individual_names=animals,
        keypoint_names=list(BODYPARTS),
        fps=fps,
        source_software="CalMS21",
    )
    pose.attrs["source_file"] = path.as_posix()
    pose.attrs["sequence"] = sequence_id
    vocabulary = _vocabulary(path, data, group, seq) or {}
    labels = None
    if seq.get("annotations") is not None:
        codes = np.asarray(seq["annotations"])
        if codes.shape != (n_frames,):
            raise InputError(
                path,
                f"{where}: {codes.size} annotations for {n_frames} frames.",
                "give one annotation per frame.",
                field="annotations",
            )
        if not vocabulary:
            raise InputError(
                path,
                f"{where}: the annotations are ints but the file has no vocabulary.",
                "add metadata.vocab ({name: int}) to the sequence or a top-level vocabulary.",
                field="vocabulary",
            )
        names = {code: name for name, code in vocabulary.items()}
        unknown = sorted({int(c) for c in np.unique(codes)} - set(names))
        if unknown:
            raise InputError(
                path,
                f"{where}: annotation codes {unknown} are not in the vocabulary {vocabulary}.",
                "add them to the vocabulary or correct the annotations.",
                field="annotations",
            )
        labels = np.array([names[int(c)] for c in codes], dtype=object).astype(str)
    return Calms21Sequence(sequence_id, group, pose, labels, vocabulary)


def annotations_table(labels: np.ndarray, background: str = BACKGROUND) -> pd.DataFrame:
    """Per-frame labels -> bouts ``start_frame, stop_frame, label`` (stop exclusive), background left out."""
    labels = np.asarray(labels, dtype=str)
    if not len(labels):
        return pd.DataFrame({"start_frame": [], "stop_frame": [], "label": []})
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts = np.r_[0, change]
    stops = np.r_[change, len(labels)]
    keep = labels[starts] != background
    return pd.DataFrame(
        {
            "start_frame": starts[keep].astype(np.int64),
            "stop_frame": stops[keep].astype(np.int64),
            "label": labels[starts][keep],
        }
    )


def write_annotations(
    path: PathLike,
    calms21_json: PathLike,
    sequence: str | None = None,
    *,
    background: str = BACKGROUND,
    provenance: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """A sequence's annotations as neurovid's CSV (atomically, JSON sidecar with the vocabulary)."""
    seq = load_sequence(calms21_json, sequence)
    if seq.labels is None:
        raise InputError(
            calms21_json,
            f"sequence {seq.sequence_id} has no annotations.",
            "leave the videos sheet's annotations column empty for unannotated sequences.",
            field="annotations",
        )
    if background not in seq.vocabulary:
        raise InputError(
            calms21_json,
            f"the vocabulary {seq.vocabulary} has no background behavior {background!r}.",
            f"add {background!r} (frames with no behavior of interest) to the vocabulary.",
            field="vocabulary",
        )
    table = annotations_table(seq.labels, background)
    write_table(
        path,
        table,
        sep=",",
        provenance=dict(provenance or {}),
        sequence=seq.sequence_id,
        vocabulary=seq.vocabulary,
        n_frames=len(seq.labels),
    )
    return table
