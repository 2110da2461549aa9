"""Motion-energy features (pymoten), streamed over a video in chunks.

Convention (Nishimoto et al. 2011; gallantlab/voxelwise_tutorials "extract
motion energy", which uses pymoten):

1. Frames are decoded with PyAV, resized to ``height x width`` and converted to
   CIE L* luminance (0-100) with pymoten's own ``moten.colorspace.rgb2lab`` (as
   ``moten.io.video2luminance`` does).
2. Gaussian noise of s.d. ``noise`` (0.1 L* units, the tutorial's value) is added
   and the result clipped to 0-100, "to deal with constant black areas" (e.g.
   letterbox padding, where the energy would otherwise be exactly 0 and its log
   undefined). The noise is drawn per frame from ``seed`` and the frame index,
   so it does not depend on how the video is chunked.
3. The frames are projected on pymoten's ``MotionEnergyPyramid`` (spatio-temporal
   Gabor quadrature pairs); each channel is ``log(sqrt(sin^2 + cos^2) + 1e-5)``,
   pymoten's defaults (``utils.sqrt_sum_squares`` then ``utils.log_compress``).

Direction labels: pymoten's ``direction`` parameter is documented as the
direction of motion (0 = right, 90 = up), but ``project_stimulus`` convolves the
frames with the temporal Gabor (time-reversed), so a channel labelled ``d``
responds most to motion toward ``d + 180`` degrees (a rightward grating drives
the 180 channels; ``tests/test_motion_energy.py`` checks this). Features keep
pymoten's order and labels (compatible with published pymoten features);
:func:`channel_table` adds the ``motion_direction`` each channel prefers.

Streaming: a filter spans ``filter_temporal_width`` (T) frames, so the output at
frame ``t`` depends on frames ``t - (T - ceil(T/2)) .. t + ceil(T/2) - 1``. Each
chunk is projected together with that much context on both sides, so chunked
output equals the whole-video output (``pyramid.project_stimulus``); the filter
banks are built once (``moten.core.mk_3d_gabor_batched``) and reused for every
chunk, following ``moten.core.project_stimulus_batched``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import moten
import numpy as np
import pandas as pd
from moten import core, utils
from moten.colorspace import rgb2lab
from moten.pyramids import MotionEnergyPyramid

from neurovid.errors import InputError
from neurovid.io import PathLike
from neurovid.video import iter_frames, require_frames, video_fps

#: s.d. of the noise added to L* frames (gallantlab voxelwise tutorial).
NOISE_SD = 0.1
#: offset of pymoten's log compression, log(energy + offset).
LOG_OFFSET = 1e-5


def build_pyramid(
    *,
    height: int,
    width: int,
    fps: int,
    temporal_frequencies: Sequence[float],
    spatial_frequencies: Sequence[float],
    spatial_directions: Sequence[float],
) -> MotionEnergyPyramid:
    """pymoten's pyramid for ``height x width`` frames at ``fps`` (an integer, as pymoten requires)."""
    return MotionEnergyPyramid(
        stimulus_vhsize=(int(height), int(width)),
        stimulus_fps=int(fps),
        temporal_frequencies=list(temporal_frequencies),
        spatial_frequencies=list(spatial_frequencies),
        spatial_directions=list(spatial_directions),
    )


def channel_table(pyramid: MotionEnergyPyramid) -> pd.DataFrame:
    """One row per feature column: pymoten's filter parameters plus ``motion_direction``.

    ``motion_direction`` (degrees, 0 = rightward, 90 = upward on screen) is the
    motion that drives the channel most: pymoten's ``direction`` + 180 (see the
    module docstring). It is NaN for static (0 Hz) and DC (0 cycles/image) channels.
    """
    table = pd.DataFrame(pyramid.parameters_matrix, columns=list(pyramid.parameters_names))
    moving = (table["temporal_freq"] > 0) & (table["spatial_freq"] > 0)
    table["motion_direction"] = ((table["direction"] + 180.0) % 360.0).where(moving)
    return table


def to_luminance(
    frames: np.ndarray, *, first_index: int = 0, noise: float = NOISE_SD, seed: int = 0
) -> np.ndarray:
    """RGB frames [n, h, w, 3] in 0..1 -> CIE L* [n, h, w] float64 (0-100), plus seeded noise.

    The noise of frame ``first_index + i`` is drawn from ``default_rng([seed, index])``,
    so it is the same whichever chunk the frame arrives in.
    """
    n, h, w, _ = frames.shape
    lab = rgb2lab(frames.reshape(n * h, w, 3).astype(np.float64))
    lum = lab[..., 0].reshape(n, h, w)
    if noise:
        for i in range(n):
            rng = np.random.default_rng([seed, first_index + i])
            lum[i] += rng.standard_normal((h, w)) * noise
        np.clip(lum, 0.0, 100.0, out=lum)
    return lum


class StreamingProjector:
    """Projects consecutive chunks of frames on a pyramid with filter banks built once.

    Same arithmetic as ``moten.core.project_stimulus_batched`` (masked spatial
    Gabors, temporal quadrature, delay sum, quadrature combination, log
    compression); ``lookback`` / ``lookahead`` are the frames of temporal
    context each output frame needs.
    """

    def __init__(self, pyramid: MotionEnergyPyramid, batch_size: int = 256) -> None:
        vdim, hdim = pyramid.definition.stimulus_vhsize
        self.nfilters = pyramid.nfilters
        self.banks = []
        for start in range(0, pyramid.nfilters, batch_size):
            batch = pyramid.filters[start : start + batch_size]
            sg_sin, sg_cos, tg_sin, tg_cos = core.mk_3d_gabor_batched((vdim, hdim), batch)
            mask = (np.abs(sg_sin) + np.abs(sg_cos)) > pyramid.mask_threshold
            self.banks.append((start, sg_sin * mask, sg_cos * mask, tg_sin, tg_cos))
        self.T = int(self.banks[0][3].shape[1])
        self.tdxc = int(math.ceil(self.T / 2.0))
        self.lookback = self.T - self.tdxc
        self.lookahead = self.tdxc - 1

    def project(self, stimulus: np.ndarray) -> np.ndarray:
        """Motion energy of every frame of ``stimulus`` [n, h, w] (zeros outside it)."""
        n = stimulus.shape[0]
        flat = stimulus.reshape(n, -1).astype(np.float64, copy=False)
        out = np.zeros((n, self.nfilters), dtype=np.float32)
        for start, sg_sin, sg_cos, tg_sin, tg_cos in self.banks:
            spatial_sin = flat @ sg_sin.T  # (n, B)
            spatial_cos = flat @ sg_cos.T
            channel_sin = np.zeros_like(spatial_sin)
            channel_cos = np.zeros_like(spatial_cos)
            for ddx in range(self.T):
                num = ddx - self.tdxc + 1
                outs = spatial_sin * tg_cos[:, ddx] + spatial_cos * tg_sin[:, ddx]
                outc = -spatial_sin * tg_sin[:, ddx] + spatial_cos * tg_cos[:, ddx]
                if num == 0:
                    channel_sin += outs
                    channel_cos += outc
                elif num > 0:
                    channel_sin[num:] += outs[:-num]
                    channel_cos[num:] += outc[:-num]
                else:
                    channel_sin[:num] += outs[-num:]
                    channel_cos[:num] += outc[-num:]
            energy = utils.sqrt_sum_squares(channel_sin, channel_cos)
            out[:, start : start + len(tg_sin)] = utils.log_compress(energy, LOG_OFFSET)
        return out


def min_frames(pyramid: MotionEnergyPyramid) -> int:
    """Fewest frames a video needs for motion energy: the temporal filters' width (>= 2).

    Each output frame integrates ``filter_temporal_width`` frames (pymoten:
    ``int(fps * 2/3)``, 10 at 15 fps); in a shorter video every output frame has
    part of its filter on the zero padding beyond the ends, so no channel measures
    motion inside the video. Motion also needs at least two frames.
    """
    return max(int(pyramid.definition["filter_temporal_width"]), 2)


def check_long_enough(path: PathLike, pyramid: MotionEnergyPyramid) -> None:
    """InputError naming ``path`` when it has fewer frames than :func:`min_frames`."""
    needed = min_frames(pyramid)
    width = pyramid.definition["filter_temporal_width"]
    fps = pyramid.definition["stimulus_fps"]
    require_frames(
        path,
        needed,
        what=f"frames motion energy needs at {fps} fps: pymoten's temporal filters span "
        f"{width} frames (about 2/3 s), and in a shorter video no output frame has the "
        "filters' full support",
        fix=f"use a stimulus video of at least {needed / fps:.2f} s, or take motion_energy "
        "out of `features.extractors` and of the encoding models' `features`.",
        field="features.motion_energy",
    )


def motion_energy(
    video_path: PathLike,
    *,
    height: int,
    width: int,
    temporal_frequencies: Sequence[float],
    spatial_frequencies: Sequence[float],
    spatial_directions: Sequence[float],
    chunk_frames: int = 256,
    noise: float = NOISE_SD,
    seed: int = 0,
    log: logging.Logger | Callable[[str], Any] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Motion-energy features of a (standardized) video, streamed in chunks.

    Returns ``features`` float32 [T, D] (D = pyramid size), ``times`` [T] (frame
    centres, s) and ``attrs`` for the features contract (extractor, model_id,
    revision, layer, dtype, fps, duration, pyramid parameters, conventions).
    Memory is bounded by ``chunk_frames`` plus the filter banks. Progress (frames
    done, frames/s) goes to ``log``. A video shorter than :func:`min_frames` raises
    :class:`InputError` before anything is computed.
    """
    path = Path(video_path)
    if chunk_frames < 1:
        raise InputError(
            None,
            f"chunk_frames={chunk_frames} must be >= 1.",
            "set a positive value.",
            field="features.motion_energy.chunk_frames",
        )
    emit = (log.info if isinstance(log, logging.Logger) else log) or (lambda _msg: None)

    fps = video_fps(path)
    if abs(fps - round(fps)) > 1e-6:
        raise InputError(
            path,
            f"the video runs at {fps:g} fps; pymoten's pyramid needs an integer frame rate.",
            "set `video.fps` in config.yaml to an integer (e.g. 15).",
            field="video.fps",
        )
    fps_int = int(round(fps))
    params = {
        "height": int(height),
        "width": int(width),
        "temporal_frequencies": [float(x) for x in temporal_frequencies],
        "spatial_frequencies": [float(x) for x in spatial_frequencies],
        "spatial_directions": [float(x) for x in spatial_directions],
    }
    pyramid = build_pyramid(fps=fps_int, **params)
    check_long_enough(path, pyramid)
    projector = StreamingProjector(pyramid)
    emit(f"{path}: {pyramid!r}, {fps_int} fps, chunks of {chunk_frames} frames")

    outputs: list[np.ndarray] = []
    all_times: list[np.ndarray] = []
    buffer = np.zeros((0, height, width))
    buf_start = 0  # global index of buffer[0]
    next_out = 0  # first frame whose features are not computed yet
    n_seen = 0
    t0 = time.perf_counter()

    def flush(end: int, final: bool) -> None:
        nonlocal buffer, buf_start, next_out
        seg_start = max(next_out - projector.lookback, 0)
        seg_end = n_seen if final else min(end + projector.lookahead, n_seen)
        segment = buffer[seg_start - buf_start : seg_end - buf_start]
        energy = projector.project(segment)
        outputs.append(energy[next_out - seg_start : end - seg_start])
        next_out = end
        keep_from = max(next_out - projector.lookback, 0)
        buffer = buffer[keep_from - buf_start :]
        buf_start = keep_from
        rate = next_out / max(time.perf_counter() - t0, 1e-9)
        emit(f"{path}: {next_out} frames done ({rate:.0f} frames/s)")

    for times, frames in iter_frames(
        path, height=height, width=width, gray=False, chunk=chunk_frames
    ):
        lum = to_luminance(frames, first_index=n_seen, noise=noise, seed=seed)
        buffer = np.concatenate([buffer, lum])
        all_times.append(times)
        n_seen += len(frames)
        while n_seen - next_out >= chunk_frames + projector.lookahead:
            flush(next_out + chunk_frames, final=False)
    if n_seen == 0:
        raise InputError(
            path, "the video has no frames.", "re-run the standardize step on a valid video."
        )
    if next_out < n_seen:
        flush(n_seen, final=True)

    features = np.concatenate(outputs).astype(np.float32)
    times = np.concatenate(all_times)
    attrs = {
        "extractor": "motion_energy",
        "model_id": "pymoten",
        "revision": moten.__version__,
        "layer": "",
        "dtype": "float32",
        "fps": float(fps_int),
        "duration": n_seen / fps_int,
        "n_frames": n_seen,
        "n_filters": int(pyramid.nfilters),
        "filter_temporal_width": projector.T,
        **params,
        "luminance": "CIE L* 0-100 (moten.colorspace.rgb2lab)",
        "noise_sd": float(noise),
        "noise_seed": int(seed),
        "direction_convention": "pymoten labels; a channel labelled d prefers motion toward d + 180 deg (see channel_table)",
        "nonlinearity": f"log(sqrt(sin^2 + cos^2) + {LOG_OFFSET:g}) (pymoten defaults)",
    }
    elapsed = time.perf_counter() - t0
    emit(
        f"{path}: {n_seen} frames x {pyramid.nfilters} filters in {elapsed:.1f} s ({n_seen / max(elapsed, 1e-9):.0f} frames/s)"
    )
    return features, times, attrs
