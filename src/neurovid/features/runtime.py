"""Shared machinery of the learned (torch) feature extractors.

One code path for CPU and CUDA, chosen at run time (:func:`neurovid.models.select_runtime`,
shared with the behavior and deep models, as is model loading):

- CUDA: bf16 autocast (fp16 where bf16 is unsupported), batches copied from
  pinned host memory with ``non_blocking=True``, batch size measured from free
  GPU memory (:func:`auto_batch_size`), decoding in a background thread so it
  overlaps with compute (:func:`prefetch`).
- CPU: fp32, ``torch.set_num_threads(threads)`` from the rule; the same input
  gives the same output bytes.

Streaming: decode -> preprocess -> batch -> model -> :class:`FeatureWriter`,
which appends to resizable HDF5 datasets, so memory does not grow with the
length of the video. :class:`Progress` logs frames done and frames/s.

Preprocessing follows the model's own (transformers) image processor settings
(resize, centre crop, rescale/offset, mean/std, see :class:`Preprocess`), but
resizing is done by swscale while decoding, so frames are never held at their
decoded size.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np
import torch

from neurovid.errors import InputError
from neurovid.io import PathLike, _attr_value, atomic_path, provenance
from neurovid.logs import script_logger
from neurovid.models import (  # noqa: F401  (re-exported: the extractors use rt.<name>)
    Runtime,
    auto_batch_size,
    from_pretrained,
    is_local,
    missing_model_error,
    resolve_device,
    select_runtime,
    torch_versions,
    weights_revision,
)
from neurovid.video import iter_frames, require_frames

log = logging.getLogger(__name__)

Emit = Callable[[str], Any]


def emitter(log_to: logging.Logger | Emit | None) -> Emit:
    """A ``str -> None`` callable from a logger, a callable or None."""
    if isinstance(log_to, logging.Logger):
        return log_to.info
    return log_to or (lambda _msg: None)


# ------------------------------------------------------------------ preprocessing


def _size_field(value: Any, key: str) -> Any:
    if value is None:
        return None
    if isinstance(value, Mapping):
        return value.get(key)
    return getattr(value, key, None)


@dataclass(frozen=True)
class Preprocess:
    """Frame preprocessing of a model: resize, centre crop, rescale (+offset), normalize.

    Mirrors the transformers image processors' settings: ``size`` (exact
    ``height``/``width``, or ``shortest_edge``), ``crop`` (centre crop), pixel
    value ``v`` in 0..255 becomes ``v * rescale_factor - offset`` and then
    ``(x - mean) / std``.
    """

    size: tuple[int, int] | None = None
    shortest_edge: int | None = None
    crop: tuple[int, int] | None = None
    rescale_factor: float = 1 / 255
    offset: float = 0.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @classmethod
    def from_processor(cls, processor: Any) -> Preprocess:
        """Settings of a transformers image processor (ViT, BiT/DINOv2, ViViT)."""
        size = getattr(processor, "size", None)
        height, width = _size_field(size, "height"), _size_field(size, "width")
        shortest = _size_field(size, "shortest_edge")
        crop = None
        if getattr(processor, "do_center_crop", False):
            crop_size = getattr(processor, "crop_size", None)
            crop = (int(_size_field(crop_size, "height")), int(_size_field(crop_size, "width")))
        do_rescale = getattr(processor, "do_rescale", True)
        do_normalize = getattr(processor, "do_normalize", True)
        return cls(
            size=(int(height), int(width)) if height and width else None,
            shortest_edge=int(shortest) if shortest and not (height and width) else None,
            crop=crop,
            rescale_factor=float(processor.rescale_factor) if do_rescale else 1.0,
            offset=1.0 if getattr(processor, "offset", False) else 0.0,
            mean=tuple(float(x) for x in processor.image_mean) if do_normalize else (0.0,) * 3,
            std=tuple(float(x) for x in processor.image_std) if do_normalize else (1.0,) * 3,
        )

    def plan(self, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
        """For ``height x width`` frames: the resize (h, w) and the crop box (top, left, h, w)."""
        if self.size is not None:
            rh, rw = self.size
        elif self.shortest_edge is not None:
            scale = self.shortest_edge / min(height, width)
            rh, rw = max(round(height * scale), 1), max(round(width * scale), 1)
        else:
            rh, rw = height, width
        ch, cw = self.crop or (rh, rw)
        if ch > rh or cw > rw:  # the processors pad; resizing up to the crop is equivalent here
            rh, rw = max(rh, ch), max(rw, cw)
        return (rh, rw), ((rh - ch) // 2, (rw - cw) // 2, ch, cw)

    def normalize(self, frames: np.ndarray) -> np.ndarray:
        """[n, h, w, 3] float32 in 0..1 -> [n, 3, h, w] float32, normalized."""
        scale = np.float32(255.0 * self.rescale_factor)
        mean = np.asarray(self.mean, np.float32)[:, None, None]
        std = np.asarray(self.std, np.float32)[:, None, None]
        chw = np.ascontiguousarray(frames.transpose(0, 3, 1, 2))
        return (chw * scale - np.float32(self.offset) - mean) / std

    def describe(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "shortest_edge": self.shortest_edge,
            "crop": self.crop,
            "rescale_factor": self.rescale_factor,
            "offset": self.offset,
            "mean": self.mean,
            "std": self.std,
        }


def video_size(path: PathLike) -> tuple[int, int]:
    """(height, width) of the first video stream."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            return int(stream.codec_context.height), int(stream.codec_context.width)
    except (av.error.FFmpegError, FileNotFoundError, IndexError) as err:
        raise InputError(path, f"cannot open the video ({err}).", "give a readable video.") from err


def frame_chunks(
    path: PathLike, prep: Preprocess, *, chunk: int = 64, normalize: bool = True
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Decode ``path`` and yield ``(times [n], frames)`` chunks, preprocessed for the model.

    Frames are resized by swscale while decoding and centre-cropped; with
    ``normalize`` they come as [n, 3, h, w] float32 model input, else as
    [n, h, w, 3] float32 in 0..1.
    """
    (rh, rw), (top, left, ch, cw) = prep.plan(*video_size(path))
    for times, frames in iter_frames(path, height=rh, width=rw, gray=False, chunk=chunk):
        frames = frames[:, top : top + ch, left : left + cw]
        yield times, (prep.normalize(frames) if normalize else np.ascontiguousarray(frames))


def prefetch(items: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """Iterate ``items`` in a background thread through a queue of at most ``depth`` items.

    Decoding (PyAV releases the GIL) then overlaps with the model; the bounded
    queue keeps memory fixed. An exception in the producer is re-raised here.
    """
    done = object()
    channel: queue.Queue = queue.Queue(maxsize=max(depth, 1))
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        channel.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            channel.put(done)
        except BaseException as err:  # handed to the consumer
            channel.put(err)

    worker = threading.Thread(target=produce, name="neurovid-decode", daemon=True)
    worker.start()
    try:
        while True:
            item = channel.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            with contextlib.suppress(queue.Empty):
                channel.get(timeout=0.05)
        worker.join()


def batched(
    chunks: Iterable[tuple[np.ndarray, np.ndarray]], size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Re-chunk ``(times, items)`` pairs into batches of exactly ``size`` (the last may be short)."""
    times_buf: list[np.ndarray] = []
    items_buf: list[np.ndarray] = []
    held = 0
    for times, items in chunks:
        times_buf.append(times)
        items_buf.append(items)
        held += len(times)
        while held >= size:
            all_times, all_items = np.concatenate(times_buf), np.concatenate(items_buf)
            yield all_times[:size], all_items[:size]
            times_buf, items_buf = [all_times[size:]], [all_items[size:]]
            held -= size
    if held:
        yield np.concatenate(times_buf), np.concatenate(items_buf)


@dataclass
class Window:
    """A clip: frame indices, centre time (s) and the frames [k, ...] it samples."""

    indices: np.ndarray
    time: float
    frames: np.ndarray


def clip_span(clip_frames: int, sampling_rate: int = 1) -> int:
    """Frames a clip of ``clip_frames`` frames sampled every ``sampling_rate`` frames spans."""
    return (int(clip_frames) - 1) * int(sampling_rate) + 1


def require_clip(
    video_path: PathLike, clip_frames: int, sampling_rate: int, *, field: str, fix: str
) -> int:
    """The video's frame count; InputError (call it before writing anything) if one clip does not fit.

    A learned extractor's rows are clips (one frame for ViT); a video shorter than
    one clip's span would give a clip padded with repeats of its last frame,
    which no setting asked for.
    """
    span = clip_span(clip_frames, sampling_rate)
    every = f" every {sampling_rate}" if sampling_rate > 1 else ""
    what = f"frames one clip of {clip_frames}{every} spans" if span > 1 else "frame a row needs"
    return require_frames(video_path, span, what=what, fix=fix, field=field)


def iter_windows(
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    clip_frames: int,
    stride: int,
    sampling_rate: int = 1,
) -> Iterator[Window]:
    """Sliding clips over a stream of frame chunks, holding only one clip span of frames.

    A clip samples ``clip_frames`` frames every ``sampling_rate`` frames, so it
    spans ``(clip_frames - 1) * sampling_rate + 1`` frames; clips start at frames
    0, ``stride``, ``2 * stride``, ... while they fit in the video. Its time is
    the centre of the span (midway between its first and last frame centres).
    A video shorter than one span gives one clip, padded with its last frame.
    """
    if clip_frames < 1 or stride < 1 or sampling_rate < 1:
        raise InputError(
            None,
            f"clip_frames={clip_frames}, stride={stride}, sampling_rate={sampling_rate} must all be >= 1.",
            "set positive values in the extractor's config section.",
        )
    span = clip_span(clip_frames, sampling_rate)
    frames: list[np.ndarray] = []
    times: list[float] = []
    first = 0  # global index of frames[0]
    next_start = 0
    seen = 0
    for chunk_times, chunk_frames in chunks:
        frames.extend(chunk_frames)
        times.extend(chunk_times.tolist())
        seen += len(chunk_times)
        while next_start + span <= seen:
            local = np.arange(next_start, next_start + span, sampling_rate) - first
            yield Window(
                indices=local + first,
                time=0.5 * (times[local[0]] + times[local[-1]]),
                frames=np.stack([frames[i] for i in local]),
            )
            next_start += stride
            drop = min(next_start, seen) - first
            del frames[:drop], times[:drop]
            first += drop
    if seen == 0:
        return
    if next_start == 0 and seen < span:  # shorter than one clip: pad with the last frame
        local = np.minimum(np.arange(0, span, sampling_rate), len(frames) - 1)
        step = times[1] - times[0] if len(times) > 1 else 0.0
        yield Window(
            indices=local,
            time=0.5 * (times[0] + times[0] + (span - 1) * step),
            frames=np.stack([frames[i] for i in local]),
        )


def clip_batches(
    windows: Iterable[Window], size: int
) -> Iterator[tuple[np.ndarray, int, np.ndarray]]:
    """Group clips into (centre times [b], index of the last frame reached, frames [b, k, ...])."""
    times: list[float] = []
    clips: list[np.ndarray] = []
    last = 0
    for window in windows:
        times.append(window.time)
        clips.append(window.frames)
        last = int(window.indices[-1])
        if len(clips) == size:
            yield np.asarray(times), last, np.stack(clips)
            times, clips = [], []
    if clips:
        yield np.asarray(times), last, np.stack(clips)


def video_duration(path: PathLike, fps: float) -> float:
    """Seconds of video: its frame count (packets, not decoded) / ``fps``."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        count = sum(1 for packet in container.demux(stream) if packet.size)
    return count / fps


# ----------------------------------------------------------------- output / progress


class Progress:
    """Logs frames done and frames/s at most every ``every_s`` seconds (and at the end)."""

    def __init__(self, emit: Emit, label: str, every_s: float = 10.0) -> None:
        self.emit, self.label, self.every_s = emit, label, every_s
        self.start = time.perf_counter()
        self.last = self.start
        self.frames = 0

    def update(self, frames: int, items: int | None = None) -> None:
        self.frames = frames
        now = time.perf_counter()
        if now - self.last >= self.every_s:
            self.last = now
            self.emit(self._line(items))

    def rate(self) -> float:
        return self.frames / max(time.perf_counter() - self.start, 1e-9)

    def finish(self, items: int | None = None) -> None:
        self.emit(self._line(items) + f" in {time.perf_counter() - self.start:.1f} s")

    def _line(self, items: int | None) -> str:
        extra = f", {items} rows" if items is not None else ""
        return f"{self.label}: {self.frames} frames done ({self.rate():.1f} frames/s){extra}"


@dataclass
class FeatureWriter:
    """Streams rows of the features contract into an HDF5 file, written atomically.

    ``features`` float32 [T, D] and ``times`` float64 [T] (plus optional extra
    float32 datasets ``extra={name: row_shape}``) are resizable and grow as
    :meth:`append` is called; ``static`` datasets (e.g. class names) and
    ``attrs`` are written on :meth:`close`. Chunk shapes depend only on the row
    shapes, and object timestamps are off, so the same rows give the same bytes.
    Use as a context manager: on an error the temporary file is removed.
    """

    path: PathLike
    width: int
    extra: Mapping[str, Sequence[int]] = field(default_factory=dict)
    rows_per_chunk: int = 256

    def __enter__(self) -> FeatureWriter:
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._h5 = h5py.File(tmp, "w", track_order=True)
        self._datasets: dict[str, h5py.Dataset] = {}
        shapes = {"features": (int(self.width),), "times": (), **dict(self.extra)}
        for name, row in shapes.items():
            row = tuple(int(x) for x in row)
            dtype = np.float64 if name == "times" else np.float32
            self._datasets[name] = self._h5.create_dataset(
                name,
                shape=(0, *row),
                maxshape=(None, *row),
                dtype=dtype,
                chunks=(self.rows_per_chunk, *row),
                track_times=False,
            )
        self.rows = 0
        self._last_time = -math.inf
        return self

    def append(self, features: np.ndarray, times: np.ndarray, **extra: np.ndarray) -> None:
        """Add rows; ``times`` must keep increasing."""
        times = np.asarray(times, dtype=np.float64)
        n = len(times)
        if n == 0:
            return
        if times[0] <= self._last_time or (n > 1 and not np.all(np.diff(times) > 0)):
            raise ValueError(f"{self.path}: times must be strictly increasing")
        self._last_time = float(times[-1])
        for name, rows in {"features": features, "times": times, **extra}.items():
            dataset = self._datasets[name]
            dataset.resize(self.rows + n, axis=0)
            dataset[self.rows : self.rows + n] = rows
        self.rows += n

    def close(
        self, attrs: Mapping[str, Any], static: Mapping[str, np.ndarray] | None = None
    ) -> None:
        """Write ``static`` datasets and ``attrs``; the file is renamed into place on exit."""
        if self.rows == 0:
            raise ValueError(f"{self.path}: no rows were written")
        for name, array in (static or {}).items():
            array = np.asarray(array)
            if array.dtype.kind in "UO":
                array = array.astype(h5py.string_dtype())
            self._h5.create_dataset(name, data=array, track_times=False)
        for key, value in attrs.items():
            self._h5.attrs[key] = _attr_value(value)

    def __exit__(self, *exc: Any) -> bool | None:
        self._h5.close()
        return self._atomic.__exit__(*exc)


# ------------------------------------------------------------------------ weights


def run_rule(
    smk: Any,
    name: str,
    extract: Callable[..., dict[str, Any]],
    packages: Sequence[str] | None = None,
    threads: bool = True,
    **inputs_as: str,
) -> dict[str, Any]:
    """Body of a feature rule's Snakemake script: ``extract(video, output, **settings)``.

    Logs to the rule's log, records the settings, the inputs and the versions of
    ``packages`` (default: :func:`torch_versions`) as provenance, and passes the
    rule's threads (unless ``threads`` is false). ``inputs_as`` names further inputs
    passed on as keywords (``clock="clock_video"``: ``input.clock`` as ``clock_video``).
    Returns the attributes written.
    """
    log = script_logger(smk, name)
    settings = dict(smk.params.settings)
    inputs = {"video": smk.input.video, **{key: smk.input[key] for key in inputs_as}}
    record = provenance(name, settings, inputs, tuple(packages) if packages else torch_versions())
    attrs = extract(
        smk.input.video,
        smk.output[0],
        **{keyword: smk.input[key] for key, keyword in inputs_as.items()},
        **settings,
        **({"threads": smk.threads} if threads else {}),
        extra_attrs={"provenance": record},
        log=log,
    )
    log.info("wrote %s (%s, %s)", smk.output[0], attrs["model_id"], attrs["dtype"])
    return attrs


def check_layers(layers: Sequence[int], n_hidden: int, field: str) -> list[int]:
    """Validate ``hidden_states`` indices (0 = embeddings, -1 = last block) against ``n_hidden``."""
    chosen = [int(x) for x in layers]
    bad = [x for x in chosen if not -n_hidden <= x < n_hidden]
    if not chosen or bad:
        raise InputError(
            None,
            f"layers {chosen} are not valid: the model has {n_hidden} hidden states (0 = embeddings, -1 = last block).",
            f"use indices between {-n_hidden} and {n_hidden - 1}.",
            field=field,
        )
    return chosen


POOLINGS = ("cls", "mean")


def check_pooling(pooling: Sequence[str], field: str) -> list[str]:
    chosen = list(pooling)
    if not chosen or any(p not in POOLINGS for p in chosen):
        raise InputError(
            None, f"pooling {chosen} is not valid.", f"use one or more of {POOLINGS}.", field=field
        )
    return chosen


def pool_tokens(
    hidden_states: Sequence[torch.Tensor],
    layers: Sequence[int],
    pooling: Sequence[str],
    prefix_tokens: int,
) -> torch.Tensor:
    """[B, D * len(layers) * len(pooling)] float32: per layer, CLS and/or mean of the patch tokens.

    ``prefix_tokens`` is the number of non-patch tokens at the start (CLS plus
    any register tokens), excluded from the mean.
    """
    parts = []
    for layer in layers:
        tokens = hidden_states[layer].float()
        for kind in pooling:
            parts.append(tokens[:, 0] if kind == "cls" else tokens[:, prefix_tokens:].mean(dim=1))
    return torch.cat(parts, dim=1)


def layout(layers: Sequence[int], pooling: Sequence[str], width: int) -> list[dict[str, Any]]:
    """Which columns of ``features`` hold which layer / pooling."""
    out, start = [], 0
    for layer in layers:
        for kind in pooling:
            out.append(
                {"layer": int(layer), "pooling": kind, "start": start, "stop": start + width}
            )
            start += width
    return out
