"""Motion SVD of a face or body video, as Facemap computes it, streamed in two passes.

Method (Facemap, Syeda et al. 2024 / Stringer et al. 2019; ``facemap/process.py``:
``subsampled_mean``, ``compute_SVD``, ``process_ROIs``):

1. Frames are decoded as gray (luma, 0..1; Facemap works on 0..255, so its time
   courses are 255x these), cropped to ``roi`` = ``[x, y, width, height]`` (pixels of
   the decoded frame; whole frame when null) and averaged over ``bin x bin`` blocks
   (Facemap's ``spatial_bin``: a remainder narrower than ``bin`` is dropped).
2. Motion is the absolute difference of consecutive binned frames,
   ``|f[t] - f[t-1]|`` (P pixels per frame).
3. **Fit** (pass 1): the differences in :func:`fit_segments` (all of them when the
   video has at most ``max_fit_frames`` differences, else evenly spaced runs of
   ``chunk_frames`` differences, ``max_fit_frames`` in all, as Facemap samples
   evenly spaced chunks) are centred on their mean (Facemap subtracts the average
   motion ``avgmotion`` before the SVD and the projection) and decomposed exactly:
   the top ``n_components`` right singular vectors are the spatial components
   ("motion masks"). Facemap approximates this SVD by an SVD of per-chunk SVDs;
   here it is exact, through the eigendecomposition of the smaller Gram matrix
   (differences x differences, or pixels x pixels), accumulated in float64.
4. **Project** (pass 2): every centred difference is projected on the components,
   giving the motion-SVD time courses [T, K] (not divided by the singular values,
   as in Facemap). Frame 0 has no previous frame; as Facemap does, its row repeats
   frame 1's.

Signs: each component is flipped so that its largest-magnitude pixel loading is
positive (scikit-learn's ``svd_flip`` on the components), so the output does not
depend on LAPACK's arbitrary signs. The same video and settings give the same bytes.

Memory: pass 1 holds at most ``max_fit_frames x P`` float32 differences plus a
``min(max_fit_frames, P)``-square float64 Gram matrix; pass 2 holds one decoded chunk
(``chunk_frames``) and the [T, K] output (K floats per frame). Neither grows with
the video's length beyond the output itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from neurovid.errors import InputError
from neurovid.io import PathLike, _check_times, write_h5
from neurovid.video import iter_frames, require_frames, video_fps

FIELD = "features.motion_svd"
#: A component whose singular value is below this fraction of the first is noise of
#: the Gram matrix's round-off: the fit differences span fewer directions than asked.
RANK_TOLERANCE = 1e-6
#: Pixels (or differences) per block when the Gram matrix is accumulated.
GRAM_BLOCK = 4096

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 of the crop in decoded-frame pixels


@dataclass
class MotionSVD:
    """Result of :func:`motion_svd` (see the module docstring for the method)."""

    features: np.ndarray  # float32 [T, K] motion-SVD time courses
    times: np.ndarray  # float64 [T] frame centres on the video's clock (s)
    components: np.ndarray  # float32 [K, H, W] spatial components (unit norm)
    singular_values: np.ndarray  # float64 [K] of the centred fit differences
    mean_motion: np.ndarray  # float32 [H, W] mean |difference| of the fit (subtracted)
    motion: np.ndarray  # float32 [T] summed |difference| per frame (Facemap's motion)
    attrs: dict[str, Any]


def check_settings(
    *,
    n_components: int,
    bin: int,
    roi: Sequence[int] | None,
    max_fit_frames: int,
    chunk_frames: int,
) -> None:
    """InputError naming the ``features.motion_svd.<key>`` that cannot be used."""
    for key, value, least in (
        ("n_components", n_components, 1),
        ("bin", bin, 1),
        ("max_fit_frames", max_fit_frames, 2),
        ("chunk_frames", chunk_frames, 2),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise InputError(
                None, f"{key}={value!r} must be an integer >= {least}.", field=f"{FIELD}.{key}"
            )
    if max_fit_frames < n_components + 1:
        raise InputError(
            None,
            f"max_fit_frames={max_fit_frames} differences cannot give n_components={n_components} "
            "components (the centred fit differences span at most max_fit_frames - 1 directions).",
            f"set max_fit_frames to at least {n_components + 1} or lower n_components.",
            field=f"{FIELD}.max_fit_frames",
        )
    if roi is not None and (
        len(roi) != 4
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in roi)
        or min(roi[:2]) < 0
        or min(roi[2:]) < 1
    ):
        raise InputError(
            None,
            f"roi={list(roi)!r} is not [x, y, width, height] in pixels (x, y >= 0; width, height >= 1).",
            "give four integers, e.g. [20, 10, 80, 60], or null for the whole frame.",
            field=f"{FIELD}.roi",
        )


def frame_size(path: PathLike) -> tuple[int, int]:
    """(height, width) of the decoded frames of ``path``'s first video stream."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(path, "the file has no video stream.", "give a video file.")
            cc = container.streams.video[0].codec_context
            return int(cc.height), int(cc.width)
    except (av.error.FFmpegError, FileNotFoundError) as err:
        raise InputError(
            path, f"cannot open the video ({err}).", "check the standardize step's output."
        ) from err


def crop_box(path: PathLike, roi: Sequence[int] | None, height: int, width: int, bin: int) -> Box:
    """The crop (y0, y1, x0, x1) of ``roi`` = [x, y, w, h] in a ``height x width`` frame.

    InputError (naming ``path`` and ``features.motion_svd.roi`` or ``.bin``) when the
    ROI leaves the frame or is narrower than one ``bin``.
    """
    x, y, w, h = (0, 0, width, height) if roi is None else (int(v) for v in roi)
    if x + w > width or y + h > height:
        raise InputError(
            path,
            f"roi [x={x}, y={y}, width={w}, height={h}] reaches pixel ({x + w}, {y + h}), outside "
            f"the {width} x {height} frame.",
            f"draw the ROI inside the frame: x + width <= {width} and y + height <= {height} "
            "(pixels of the video the rule reads, results/video/{video}/standard.mp4).",
            field=f"{FIELD}.roi",
        )
    if w < bin or h < bin:
        raise InputError(
            path,
            f"the {w} x {h} pixel crop is smaller than one {bin} x {bin} bin.",
            "lower `bin` or enlarge `roi`.",
            field=f"{FIELD}.bin",
        )
    return y, y + h, x, x + w


def bin_frames(frames: np.ndarray, box: Box, bin: int) -> np.ndarray:
    """Crop [n, H, W] frames to ``box`` and average ``bin x bin`` blocks -> float32 [n, P]."""
    y0, y1, x0, x1 = box
    hb, wb = (y1 - y0) // bin, (x1 - x0) // bin
    crop = frames[:, y0 : y0 + hb * bin, x0 : x0 + wb * bin].astype(np.float32)
    if bin > 1:
        crop = crop.reshape(len(crop), hb, bin, wb, bin).mean(axis=(2, 4), dtype=np.float32)
    return crop.reshape(len(crop), hb * wb)


def iter_differences(
    path: PathLike, box: Box, bin: int, chunk_frames: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Stream ``(start, times, diffs)`` chunk by chunk: ``diffs[j] = |f[start+j+1] - f[start+j]|``.

    ``times`` are the centres of the chunk's decoded frames; ``diffs`` [n, P] end at
    those frames, so the first chunk has one difference fewer than frames. The last
    binned frame of each chunk is kept to difference the next chunk's first.
    """
    previous: np.ndarray | None = None
    start = 0
    for times, frames in iter_frames(path, gray=True, chunk=chunk_frames):
        binned = bin_frames(frames, box, bin)
        if previous is not None:
            binned = np.concatenate([previous, binned])
        previous = binned[-1:]
        yield start, times, np.abs(np.diff(binned, axis=0))
        start += len(binned) - 1


def fit_segments(n_diffs: int, max_fit_frames: int, segment: int) -> list[tuple[int, int]]:
    """Difference index ranges [start, stop) the components are fitted on.

    All differences when there are at most ``max_fit_frames``; else
    ``ceil(max_fit_frames / segment)`` runs of ``segment`` differences (the last
    one shorter, to the remainder) separated by equal gaps (floored), the first run
    at the first difference and the last ending at the last one, as Facemap's
    ``compute_SVD`` samples chunks at ``np.linspace`` starts.
    The runs do not overlap and hold exactly ``max_fit_frames`` differences.
    """
    if n_diffs <= max_fit_frames:
        return [(0, n_diffs)]
    segment = min(segment, max_fit_frames)
    n_runs = -(-max_fit_frames // segment)
    lengths = [segment] * (n_runs - 1) + [max_fit_frames - segment * (n_runs - 1)]
    # Evenly spaced gaps: run r starts after the previous runs plus r gaps.
    gap = (n_diffs - max_fit_frames) / max(n_runs - 1, 1)
    runs, used = [], 0
    for r, length in enumerate(lengths):
        start = used + int(np.floor(r * gap)) if n_runs > 1 else 0
        runs.append((start, start + length))
        used += length
    return runs


def _selected(start: int, n: int, runs: Sequence[tuple[int, int]]) -> np.ndarray:
    """Indices j < n with ``start + j`` inside one of ``runs``."""
    index = np.arange(start, start + n)
    keep = np.zeros(n, dtype=bool)
    for a, b in runs:
        keep |= (index >= a) & (index < b)
    return np.flatnonzero(keep)


def svd_flip_rows(components: np.ndarray) -> np.ndarray:
    """Flip each row so its largest-magnitude entry is positive (scikit-learn's svd_flip, v-based)."""
    rows = np.arange(len(components))
    signs = np.sign(components[rows, np.argmax(np.abs(components), axis=1)])
    signs[signs == 0] = 1.0
    return components * signs[:, None]


def top_components(
    diffs: np.ndarray, n_components: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact top right singular vectors of the centred ``diffs`` [N, P].

    Returns ``(components [K, P] float64, singular_values [K], mean [P])``. The Gram
    matrix of the smaller side is accumulated in float64 by blocks and
    eigendecomposed (``numpy.linalg.eigh``); signs follow :func:`svd_flip_rows`.
    Raises ValueError when fewer than K singular values are non-zero.
    """
    n, p = diffs.shape
    mean = diffs.mean(axis=0, dtype=np.float64)
    if n <= p:  # differences x differences
        gram = np.zeros((n, n))
        for j in range(0, p, GRAM_BLOCK):
            block = diffs[:, j : j + GRAM_BLOCK] - mean[j : j + GRAM_BLOCK]
            gram += block @ block.T
    else:  # pixels x pixels
        centred = diffs - mean
        gram = centred.T @ centred
    values, vectors = np.linalg.eigh(gram)
    order = np.argsort(values)[::-1][:n_components]
    singular = np.sqrt(np.clip(values[order], 0.0, None))
    if singular[0] <= 0 or singular[-1] <= RANK_TOLERANCE * singular[0]:
        rank = int(np.sum(singular > RANK_TOLERANCE * singular[0])) if singular[0] > 0 else 0
        raise ValueError(f"{rank} non-zero singular values, {n_components} asked")
    if n <= p:
        left = vectors[:, order]  # [N, K]
        components = np.zeros((n_components, p))
        for j in range(0, p, GRAM_BLOCK):
            block = diffs[:, j : j + GRAM_BLOCK] - mean[j : j + GRAM_BLOCK]
            components[:, j : j + GRAM_BLOCK] = left.T @ block
        components /= singular[:, None]
    else:
        components = vectors[:, order].T
    return svd_flip_rows(components), singular, mean


def motion_svd(
    video_path: PathLike,
    *,
    n_components: int = 50,
    bin: int = 2,
    roi: Sequence[int] | None = None,
    max_fit_frames: int = 3000,
    chunk_frames: int = 256,
    log: logging.Logger | Callable[[str], Any] | None = None,
) -> MotionSVD:
    """Motion SVD of a (standardized) face/body video, in two streamed passes.

    ``n_components`` (K) spatial components are fitted on at most
    ``max_fit_frames`` frame differences (:func:`fit_segments`) and every frame
    difference is projected on them. Settings and the video are checked before
    anything is computed: an InputError names the file, the setting
    (``features.motion_svd.<key>``) and the fix for a video with too few frames, a
    ROI outside the frame, or K above what the fit differences or pixels allow.
    Progress goes to ``log``.
    """
    path = Path(video_path)
    emit = (log.info if isinstance(log, logging.Logger) else log) or (lambda _msg: None)
    check_settings(
        n_components=n_components,
        bin=bin,
        roi=roi,
        max_fit_frames=max_fit_frames,
        chunk_frames=chunk_frames,
    )
    height, width = frame_size(path)
    box = crop_box(path, roi, height, width, bin)
    shape = ((box[1] - box[0]) // bin, (box[3] - box[2]) // bin)
    pixels = shape[0] * shape[1]
    if n_components > pixels:
        raise InputError(
            path,
            f"n_components={n_components} exceeds the {pixels} pixels ({shape[1]} x {shape[0]}) "
            f"of the binned {'ROI' if roi is not None else 'frame'}.",
            f"lower n_components to at most {pixels}, or lower `bin` / enlarge `roi`.",
            field=f"{FIELD}.n_components",
        )
    count = require_frames(
        path,
        2,
        what="frames motion needs (one frame difference)",
        fix=f"use a video of at least 2 frames, or do not request {FIELD} for this video.",
        field=FIELD,
    )
    if count < n_components + 2:
        raise InputError(
            path,
            f"the video has {count} frames ({count - 1} differences); {n_components} centred "
            f"components need at least {n_components + 1} differences ({n_components + 2} frames).",
            f"lower {FIELD}.n_components to at most {max(count - 2, 1)} or use a longer video.",
            field=f"{FIELD}.n_components",
        )
    runs = fit_segments(count - 1, max_fit_frames, chunk_frames)
    n_fit = sum(b - a for a, b in runs)
    emit(
        f"{path}: {count} frames, fitting {n_components} components on {n_fit} differences "
        f"({len(runs)} runs) of {pixels} pixels ({shape[1]} x {shape[0]}, bin {bin}, roi {roi})"
    )

    t0 = time.perf_counter()
    fit = np.empty((n_fit, pixels), dtype=np.float32)
    filled = 0
    for start, _, diffs in iter_differences(path, box, bin, chunk_frames):
        if start >= runs[-1][1]:
            break  # past the last fit run
        rows = diffs[_selected(start, len(diffs), runs)]
        rows = rows[: n_fit - filled]
        fit[filled : filled + len(rows)] = rows
        filled += len(rows)
    fit = fit[:filled]
    try:
        components, singular, mean = top_components(fit, n_components)
    except ValueError as err:
        raise InputError(
            path,
            f"the {filled} frame differences of the fit span too few directions ({err}); the video "
            "barely changes (a still image or a frozen camera?).",
            f"lower {FIELD}.n_components, or check the video and `roi`.",
            field=f"{FIELD}.n_components",
        ) from None
    del fit
    emit(f"{path}: components fitted in {time.perf_counter() - t0:.1f} s")

    projector = components.T.astype(np.float32)  # [P, K]
    mean32 = mean.astype(np.float32)
    rows_out: list[np.ndarray] = []
    motion_out: list[np.ndarray] = []
    times_out: list[np.ndarray] = []
    for start, times, diffs in iter_differences(path, box, bin, chunk_frames):
        rows_out.append((diffs - mean32) @ projector)
        motion_out.append(diffs.sum(axis=1))
        times_out.append(times)
        done = start + len(diffs) + 1
        rate = done / max(time.perf_counter() - t0, 1e-9)
        emit(f"{path}: {done} frames projected ({rate:.0f} frames/s)")
    # Frame 0 has no previous frame: its row repeats frame 1's (Facemap).
    features = np.concatenate([rows_out[0][:1], *rows_out]).astype(np.float32)
    motion = np.concatenate([motion_out[0][:1], *motion_out]).astype(np.float32)
    times = np.concatenate(times_out)
    n_frames = len(times)
    fps = video_fps(path)
    attrs = {
        "extractor": "motion_svd",
        "model_id": "facemap-motion-svd",
        "revision": "",
        "layer": "",
        "dtype": "float32",
        "fps": float(fps),
        "duration": n_frames / fps,
        "n_frames": n_frames,
        "n_components": int(n_components),
        "components_shape": [int(n_components), *shape],
        "bin": int(bin),
        "roi": None if roi is None else [int(v) for v in roi],
        "crop": {"y0": box[0], "y1": box[1], "x0": box[2], "x1": box[3]},
        "frame_size": [height, width],
        "max_fit_frames": int(max_fit_frames),
        "n_fit_differences": int(filled),
        "fit_runs": [list(r) for r in runs],
        "pixel_scale": "gray luma 0..1 (Facemap: 0..255)",
        "centred": "fit mean of |difference| subtracted (Facemap's avgmotion), dataset mean_motion",
        "sign_convention": "each component's largest-magnitude pixel loading is positive",
        "first_frame": "row 0 repeats row 1 (frame 0 has no previous frame; as Facemap)",
    }
    elapsed = time.perf_counter() - t0
    emit(f"{path}: {n_frames} frames x {n_components} components in {elapsed:.1f} s")
    return MotionSVD(
        features=features,
        times=times,
        components=components.reshape(n_components, *shape).astype(np.float32),
        singular_values=singular,
        mean_motion=mean32.reshape(shape),
        motion=motion,
        attrs=attrs,
    )


def write_motion_svd(
    path: PathLike, result: MotionSVD, attrs: dict[str, Any] | None = None
) -> None:
    """Write ``result`` on the features contract (``features``, ``times``) plus
    ``components`` [K, H, W], ``singular_values`` [K], ``mean_motion`` [H, W] and
    ``motion`` [T], atomically; ``attrs`` (e.g. provenance) extend the result's."""
    features = np.asarray(result.features, dtype=np.float32)
    times = np.asarray(result.times, dtype=np.float64)
    _check_times(path, times, features.shape[0], "features")
    datasets = {
        "features": features,
        "times": times,
        "components": result.components,
        "singular_values": result.singular_values,
        "mean_motion": result.mean_motion,
        "motion": result.motion,
    }
    write_h5(path, datasets, {**result.attrs, **(attrs or {})})
