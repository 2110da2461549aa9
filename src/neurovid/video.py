"""Video stage: probe, standardize, frames, decoding and encoding.

Transcoding goes through ffmpeg-python with the static ffmpeg binary shipped by
imageio-ffmpeg (there is no ffprobe beside it); probing and decoding use PyAV.

Probing demuxes every packet without decoding (cheap: no pixels are touched), so
it can tell a truncated file from a complete one:

* an MP4 with its ``moov`` index at the end (ffmpeg's default layout) loses the
  index when truncated and cannot be opened at all; :func:`probe` then walks the
  top-level MP4 boxes and reports the missing index;
* an MP4 written with ``-movflags +faststart`` keeps its index, which still
  declares the full duration and frame count; the demuxer then flags the last,
  partial packet as corrupt, and fewer packets (ending earlier) are found than
  declared.

Cameras often write variable frame rate (phones, webcams; rigs that drop frames,
which an AVI stores as empty chunks): probe records the frame intervals from the
packet timestamps, and :func:`standardize` resamples by those timestamps to a
constant rate, then checks the result's duration against the source's.

Standardized videos are written with bit-exact flags, one encoder thread and no
wall-clock metadata, so the same input gives the same bytes; their provenance
(parameters, versions, input digest) is stored as JSON in the container's
``comment`` tag (see :func:`video_provenance`).
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import ffmpeg
import imageio_ffmpeg
import numpy as np
from av.video.reformatter import VideoReformatter

from neurovid.errors import InputError
from neurovid.io import PathLike, atomic_dir, atomic_path, file_digest, to_json

log = logging.getLogger(__name__)

#: x264 runs single-threaded: its output depends on the thread count, and a fixed
#: count makes the bytes identical on every machine. Decoding and filtering still
#: use the ``threads`` given to :func:`standardize`.
ENCODER_THREADS = 1
#: Seconds a standardized video may last beyond one output frame more or less than the
#: source's timestamps say (the fps filter rounds both ends to the nearest output frame).
DURATION_TOLERANCE_S = 0.005
#: Frame intervals spreading (max - min) by more than this fraction of the median make a
#: stream variable frame rate (phones, webcams, rigs that drop frames).
VFR_SPREAD = 0.05
_FIX_REENCODE = (
    "copy the file again from the original recording, or re-export it from the "
    "acquisition/editing software, and check that the copy is complete."
)


def ffmpeg_exe() -> str:
    """Path of the static ffmpeg binary bundled with imageio-ffmpeg."""
    return imageio_ffmpeg.get_ffmpeg_exe()


# --------------------------------------------------------------------------- probe


def _seconds(value: int | None, time_base: Fraction | None) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def _stream_fps(stream: av.video.stream.VideoStream) -> Fraction | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return Fraction(rate)
    return None


def _mp4_boxes(path: Path) -> list[tuple[str, int, int]]:
    """Top-level ISO-BMFF boxes as (type, offset, size), reading box headers only."""
    boxes: list[tuple[str, int, int]] = []
    size_total = path.stat().st_size
    with open(path, "rb") as fh:
        offset = 0
        while offset + 8 <= size_total and len(boxes) < 10_000:
            fh.seek(offset)
            header = fh.read(16)
            size = int.from_bytes(header[:4], "big")
            kind = header[4:8].decode("latin-1")
            if size == 1 and len(header) >= 16:
                size = int.from_bytes(header[8:16], "big")
            elif size == 0:
                size = size_total - offset
            boxes.append((kind, offset, size))
            if size < 8:
                break
            offset += size
    return boxes


def _diagnose_unopenable(path: Path, err: Exception) -> tuple[str, str]:
    """Explain why FFmpeg cannot open ``path``: (problem, fix)."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head[4:8] == b"ftyp":
        boxes = _mp4_boxes(path)
        kinds = [kind for kind, _, _ in boxes]
        size = path.stat().st_size
        overrun = [(k, o, s) for k, o, s in boxes if o + s > size]
        if "moov" not in kinds:
            detail = (
                f" (the `{overrun[0][0]}` box declares {overrun[0][2]} bytes at offset "
                f"{overrun[0][1]} but the file ends at byte {size})"
                if overrun
                else ""
            )
            return (
                "the MP4 file is truncated: its `moov` index box is missing"
                f"{detail}. MP4 writers put the index at the end by default, so an "
                "interrupted recording, export or copy loses it and no frame can be located.",
                _FIX_REENCODE,
            )
        if overrun:
            return (
                f"the MP4 file is truncated: the `{overrun[0][0]}` box declares "
                f"{overrun[0][2]} bytes at offset {overrun[0][1]} but the file ends at byte {size}.",
                _FIX_REENCODE,
            )
    sample = head[:512]
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
        preview = text.strip().splitlines()[0][:40] if text.strip() else ""
        return (
            f"this is a text file, not a video container (it starts with {preview!r}).",
            "point the `path` column of the videos sheet at the video file itself.",
        )
    return (
        f"FFmpeg cannot read this file as a video container ({err}).",
        "check that the file is a complete video (mp4, mov, avi, mkv, ...); " + _FIX_REENCODE,
    )


def frame_timing(
    pts: Sequence[int], durations: Sequence[int], time_base: Fraction
) -> dict[str, Any]:
    """Frame intervals and time span of a video stream, from its packets' timestamps.

    ``pts`` and ``durations`` are in ``time_base`` ticks, in any order (packets
    come in decoding order when there are B-frames). Returns:

    - ``frame_interval_s``: min / median / max seconds between consecutive frames
      (None for a single frame);
    - ``variable_frame_rate``: the intervals spread (max - min) by more than
      :data:`VFR_SPREAD` of the median and by more than one tick (a constant rate
      whose ticks do not divide evenly, e.g. 33/34 ms at 30 fps, is not variable);
    - ``timestamps_duration``: seconds from the first frame's start to the last
      frame's end (the last frame lasts its packet's duration, or the median
      interval when the container does not say).
    """
    if len(pts) == 0:  # e.g. a raw H.264 stream: no timestamps at all
        return {"variable_frame_rate": None, "frame_interval_s": None, "timestamps_duration": None}
    order = np.argsort(np.asarray(pts, dtype=np.int64), kind="stable")
    ticks = np.asarray(pts, dtype=np.int64)[order]
    last = int(np.asarray(durations, dtype=np.int64)[order][-1])
    tick_s = float(time_base)
    intervals = np.diff(ticks)
    if intervals.size == 0:
        return {
            "variable_frame_rate": False,
            "frame_interval_s": None,
            "timestamps_duration": max(last, 0) * tick_s,
        }
    median = float(np.median(intervals))
    spread = int(intervals.max() - intervals.min())
    return {
        "variable_frame_rate": bool(spread > max(VFR_SPREAD * median, 1)),
        "frame_interval_s": {
            "min": float(intervals.min()) * tick_s,
            "median": median * tick_s,
            "max": float(intervals.max()) * tick_s,
        },
        "timestamps_duration": float(ticks[-1] - ticks[0] + (last if last > 0 else median))
        * tick_s,
    }


def _open_checked(path: Path) -> av.container.InputContainer:
    """Open ``path`` with PyAV; InputError (what is wrong, how to fix) when it is not usable."""
    if not path.exists():
        raise InputError(
            path,
            "the video file does not exist.",
            "correct the `path` column of the videos sheet (relative paths are relative "
            "to the directory Snakemake runs in).",
            field="path",
        )
    if not path.is_file():
        raise InputError(path, "is not a regular file.", "point `path` at a video file.")
    if path.stat().st_size == 0:
        raise InputError(
            path,
            "the file is empty (0 bytes); the recording, export or copy that produced it failed.",
            _FIX_REENCODE,
        )
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as err:
        problem, fix = _diagnose_unopenable(path, err)
        raise InputError(path, problem, fix) from err
    if not container.streams.video:
        kinds = ", ".join(f"{s.type} ({s.codec_context.name})" for s in container.streams)
        container.close()
        raise InputError(
            path,
            f"the file has no video stream; it contains only {kinds or 'no streams'}.",
            "give the video file shown to the subject (an audio track alone cannot be used).",
        )
    return container


def _scan_packets(path: Path, container: av.container.InputContainer) -> dict[int, dict[str, Any]]:
    """Demux every packet (no decoding): per stream, packets, end time, damage, video timestamps.

    Packets the demuxer marks as discarded (before the start of an MP4 edit list,
    e.g. a clip trimmed without re-encoding) are not shown, so they are not counted.
    """
    size = path.stat().st_size
    stats = {
        s.index: {"packets": 0, "end": None, "corrupt": 0, "beyond_eof": 0, "pts": [], "dur": []}
        for s in container.streams
    }
    try:
        for packet in container.demux():
            if packet.size == 0 or packet.stream_index not in stats or packet.is_discard:
                continue  # flush packets, pre-roll of an edit list
            st = stats[packet.stream_index]
            st["packets"] += 1
            st["corrupt"] += bool(packet.is_corrupt)
            if packet.pos is not None and packet.pos >= 0 and packet.pos + packet.size > size:
                st["beyond_eof"] += 1
            if packet.pts is not None and packet.time_base is not None:
                end = (packet.pts + (packet.duration or 0)) * packet.time_base
                st["end"] = end if st["end"] is None else max(st["end"], end)
                st["pts"].append(packet.pts)
                st["dur"].append(packet.duration or 0)
    except av.error.FFmpegError as err:
        raise InputError(
            path, f"the file is damaged: reading its packets failed ({err}).", _FIX_REENCODE
        ) from err
    return stats


def _check_complete(
    path: Path,
    container: av.container.InputContainer,
    stats: dict[int, dict[str, Any]],
    fps: Fraction | None,
) -> None:
    """Raise InputError when the packets found stop short of what the file declares.

    The video's declared duration is compared with its own packets; a container
    that declares only an overall duration (Matroska/WebM) is compared with the
    latest packet of any stream, since audio may rightly outlast the video. Fewer
    packets than the index declares, with the timestamps reaching the end, are
    dropped frames (an AVI writes them as empty chunks), not a truncation.
    """
    vstream = container.streams.video[0]
    vstats = stats[vstream.index]
    if vstats["packets"] == 0:
        raise InputError(
            path,
            "the video stream contains no frames (the file is truncated or empty).",
            _FIX_REENCODE,
        )
    declared = _seconds(vstream.duration, vstream.time_base)
    start = _seconds(vstream.start_time, vstream.time_base) or 0.0
    ends = [st["end"] for st in stats.values() if st["end"] is not None]
    if declared is not None:
        found = None if vstats["end"] is None else float(vstats["end"]) - start
    elif container.duration:
        declared = container.duration / 1e6
        first = (container.start_time or 0) / 1e6
        found = float(max(ends)) - first if ends else None
    else:
        found = None
    frame_s = float(1 / fps) if fps else 0.04
    declared_frames = int(vstream.frames or 0)
    broken = sum(st["corrupt"] + st["beyond_eof"] for st in stats.values())
    time_known = declared is not None and found is not None
    short_time = time_known and found < declared - 2 * frame_s
    short_frames = declared_frames > 0 and vstats["packets"] < declared_frames
    if not (broken or short_time or (short_frames and not time_known)):
        return
    parts = []
    if time_known:
        parts.append(
            f"the video data stops at {found:.2f} s but the file declares {declared:.2f} s"
        )
    if declared_frames:
        parts.append(f"{vstats['packets']} of {declared_frames} frames are present")
    if broken:
        parts.append(f"{broken} packet(s) are cut off at the end of the file")
    raise InputError(path, f"the video file is truncated: {'; '.join(parts)}.", _FIX_REENCODE)


def probe(path: PathLike) -> dict[str, Any]:
    """Describe a video file (JSON-able) and reject files that cannot be used.

    Returns size, container format, duration, the first video stream (codec,
    width, height, average fps, frame count, pix_fmt, frame timing), the audio
    streams and the sha256 digest. ``video.frames`` is the number of video
    packets actually present (demuxed, not decoded); ``video.declared_frames`` is
    what the container's index claims (0 if it does not say). Frame timing from
    the packets' timestamps (:func:`frame_timing`): ``video.variable_frame_rate``,
    ``video.frame_interval_s`` (min / median / max) and
    ``video.timestamps_duration`` (first frame's start to last frame's end).

    Raises :class:`InputError` (naming the file, the problem and a fix) for a
    missing, empty, non-video (e.g. text), audio-only or truncated file.
    """
    path = Path(path)
    with _open_checked(path) as container:
        vstream = container.streams.video[0]
        fps = _stream_fps(vstream)
        stats = _scan_packets(path, container)
        _check_complete(path, container, stats, fps)
        vstats = stats[vstream.index]
        timing = frame_timing(vstats["pts"], vstats["dur"], vstream.time_base)
        declared_duration = _seconds(vstream.duration, vstream.time_base)
        cc = vstream.codec_context
        video = {
            "index": vstream.index,
            "codec": cc.name,
            "profile": cc.profile,
            "width": cc.width,
            "height": cc.height,
            "pix_fmt": cc.pix_fmt,
            "fps": float(fps) if fps else None,
            "fps_fraction": f"{fps.numerator}/{fps.denominator}" if fps else None,
            "frames": vstats["packets"],
            "declared_frames": int(vstream.frames or 0),
            "duration": declared_duration
            if declared_duration is not None
            else timing["timestamps_duration"],
            "start_time": _seconds(vstream.start_time, vstream.time_base) or 0.0,
            "sample_aspect_ratio": str(vstream.sample_aspect_ratio or "1"),
            **timing,
        }
        audio = [
            {
                "index": s.index,
                "codec": s.codec_context.name,
                "sample_rate": s.codec_context.sample_rate,
                "channels": s.codec_context.channels,
                "duration": _seconds(s.duration, s.time_base),
            }
            for s in container.streams.audio
        ]
        return {
            "path": str(path),
            "size_bytes": path.stat().st_size,
            "format": container.format.name,
            "format_long_name": container.format.long_name,
            "duration": container.duration / 1e6 if container.duration else video["duration"],
            "bit_rate": container.bit_rate,
            "video": video,
            "audio": audio,
            "comment": dict(container.metadata).get("comment"),
            "sha256": file_digest(path).split(":", 1)[1],
        }


# ---------------------------------------------------------------------- transcoding


def video_provenance(path: PathLike) -> dict[str, Any] | None:
    """Provenance stored by neurovid in a video's ``comment`` tag (None if absent)."""
    with av.open(str(path)) as container:
        comment = dict(container.metadata).get("comment")
    if not comment:
        return None
    try:
        return json.loads(comment)
    except json.JSONDecodeError:
        return None


def _run_ffmpeg(stream: Any, *, src: PathLike | None, what: str) -> None:
    """Run a compiled ffmpeg-python graph; decoding errors become InputError on ``src``."""
    args = ffmpeg.compile(stream, cmd=ffmpeg_exe(), overwrite_output=True)
    log.info("running: %s", " ".join(args))
    proc = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    stderr = proc.stderr.strip()
    if stderr:
        log.info("ffmpeg stderr:\n%s", stderr)
    if proc.returncode != 0:
        # "[h264 @ 0x55f7...] Invalid NAL unit size" -> "[h264] Invalid NAL unit size"
        lines = [
            re.sub(r" @ 0x[0-9a-f]+", "", line) for line in stderr.splitlines() if line.strip()
        ]
        detail = "; ".join(lines[:3]) + (" ..." if len(lines) > 3 else "")
        if src is not None:
            raise InputError(
                src,
                f"{what} failed: FFmpeg could not decode the video ({detail or 'no message'}).",
                "the file is damaged or truncated; " + _FIX_REENCODE,
            )
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}) during {what}: {detail}")


def fps_override_value(fps_override: Any) -> float | None:
    """The sheet's ``fps`` override as a positive float, or None when not given (None/NaN/NA)."""
    if fps_override is None:
        return None
    try:
        value = float(fps_override)
    except TypeError:  # pandas.NA: not given
        return None
    except ValueError as err:
        raise InputError(
            None,
            f"the frame-rate override {fps_override!r} is not a number.",
            "write a number in the `fps` column of the videos sheet, or leave it empty.",
            field="fps",
        ) from err
    if np.isnan(value):
        return None
    if value <= 0:
        raise InputError(
            None,
            f"the frame-rate override {fps_override!r} is not positive.",
            "write a positive number in the `fps` column of the videos sheet, or leave it empty.",
            field="fps",
        )
    return value


def source_duration(src: PathLike, info: Mapping[str, Any], fps_override: float | None) -> float:
    """Seconds the source lasts: its frames / ``fps_override``, else what its timestamps span.

    Falls back to the declared durations for a probe without timestamps (a raw
    stream, or probe.json from an older version).
    """
    video = info["video"]
    if fps_override:
        return video["frames"] / fps_override
    for value in (video.get("timestamps_duration"), video.get("duration"), info.get("duration")):
        if value:
            return float(value)
    raise InputError(
        src,
        "the video has no timestamps and declares no duration, so its frame rate is unknown.",
        "set the true frame rate in the `fps` column of the videos sheet.",
        field="fps",
    )


def check_duration(src: PathLike, frames: int, fps: float, expected_s: float) -> None:
    """InputError unless ``frames`` at ``fps`` last ``expected_s`` within one frame (+ tolerance)."""
    got_s = frames / fps
    if abs(got_s - expected_s) <= 1 / fps + DURATION_TOLERANCE_S:
        return
    raise InputError(
        src,
        f"the standardized video lasts {got_s:.3f} s ({frames} frames at {fps:g} fps) but the "
        f"source should last {expected_s:.3f} s (its timestamps, or its frames at the `fps` "
        "column's rate); the frames FFmpeg decodes do not match the file's timestamps.",
        "if the `fps` column of the videos sheet is set, check it (it replaces the file's "
        "timestamps: leave it empty unless the header's frame rate is wrong); otherwise "
        + _FIX_REENCODE,
        field="fps",
    )


def source_timing(info: Mapping[str, Any], fps_override: float | None) -> dict[str, Any]:
    """What a standardized video's provenance records about its source's timing."""
    video = info["video"]
    return {
        "frames": video["frames"],
        "header_fps": video["fps"],
        "variable_frame_rate": video.get("variable_frame_rate"),
        "frame_interval_s": video.get("frame_interval_s"),
        "timestamps_duration": video.get("timestamps_duration"),
        "start_time": video.get("start_time"),
        "fps_override": fps_override,
        "resampling": "by timestamps (fps filter, round=near): frame i at i/fps shows the "
        "source frame on screen at (i + 0.5)/fps"
        if not fps_override
        else "timestamps regenerated at fps_override, then resampled (fps filter, round=near)",
    }


def _standardize_graph(
    src: PathLike,
    tmp: Path,
    *,
    fps: float,
    width: int,
    height: int,
    color: str,
    crf: int,
    fps_override: float | None,
    threads: int,
    comment: Mapping[str, Any] | None,
) -> Any:
    """The one-pass ffmpeg-python graph of :func:`standardize` (see there)."""
    inp = ffmpeg.input(str(src), threads=threads, **({"r": fps_override} if fps_override else {}))
    video = (
        inp.video.filter("setpts", "PTS-STARTPTS")  # time 0 = the first video frame
        .filter("fps", fps=fps, round="near")
        .filter(
            "scale",
            width,
            height,
            force_original_aspect_ratio="decrease",
            force_divisible_by=2,
            flags="area",
        )
        .filter("pad", width, height, "(ow-iw)/2", "(oh-ih)/2", color="black")
        .filter("setsar", 1)
    )
    out_opts: dict[str, Any] = {
        "vcodec": "libx264",
        "pix_fmt": "gray" if color == "gray" else "yuv420p",
        "crf": crf,
        "preset": "medium",
        "threads": ENCODER_THREADS,
        "filter_threads": threads,
        "fps_mode": "passthrough",  # the fps filter's timestamps, unchanged
        "map_metadata": -1,
        "map_chapters": -1,
        "fflags": "+bitexact",
        "flags:v": "+bitexact",
        "movflags": "+faststart",
        "an": None,
        "sn": None,
        "dn": None,
    }
    if comment is not None:
        out_opts["metadata"] = f"comment={json.dumps(comment, sort_keys=True)}"
    return video.output(str(tmp), **out_opts).global_args(
        "-hide_banner", "-nostdin", "-xerror", "-loglevel", "error"
    )


def standardize(
    src: PathLike,
    dest: PathLike,
    *,
    fps: float,
    width: int,
    height: int,
    color: str = "gray",
    crf: int = 18,
    fps_override: float | None = None,
    threads: int = 1,
    source_probe: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Transcode ``src`` to a standard constant-frame-rate H.264 MP4 in one ffmpeg pass, atomically.

    - Frames are resampled to ``fps`` by their presentation timestamps (ffmpeg's
      ``fps`` filter, ``round=near``): frame i of the result has the timestamp
      i / fps from the first video frame (which is time 0 even when another
      stream starts earlier: the source's ``start_time`` goes into the provenance)
      and shows the source frame that was on screen at its centre, (i + 0.5) / fps.
      Variable-frame-rate sources (phones, webcams, rigs that drop frames)
      therefore come out constant-rate and in time; the timestamps are only
      shifted, never regenerated (``fps_mode passthrough`` keeps the filter's).
    - ``fps_override``: the true frame rate of the source when its header is wrong
      (sheet column ``fps``): the file's timestamps are replaced by i / fps_override.
    - scale to fit ``width x height`` keeping the aspect ratio, then pad (black) to
      exactly that size, square pixels.
    - ``color``: ``gray`` (8-bit luma only) or ``rgb`` (yuv420p).
    - libx264 at ``crf``, no audio/subtitles/data, no source metadata, bit-exact
      muxing and a fixed encoder thread count: the same input gives the same bytes.
    - ``provenance`` (JSON) is stored in the container's ``comment`` tag, with
      ``source_timing`` (:func:`source_timing`: whether the source was variable
      frame rate, its frame intervals) added.

    Decoding errors in ``src`` raise :class:`InputError` naming ``src``. The result
    is checked before it is renamed onto ``dest``: its size, and its duration
    against the source's (:func:`source_duration`, :func:`check_duration`).
    Returns the probe of the result.
    """
    if color not in ("gray", "rgb"):
        raise InputError(
            None, f"video color {color!r} is unknown.", "use gray or rgb.", field="video.color"
        )
    info = dict(source_probe) if source_probe is not None else probe(src)
    override = fps_override_value(fps_override)
    expected_s = source_duration(src, info, override)
    comment = (
        None
        if provenance is None
        else {**provenance, "source_timing": source_timing(info, override)}
    )
    with atomic_path(dest) as tmp:
        graph = _standardize_graph(
            src,
            tmp,
            fps=fps,
            width=width,
            height=height,
            color=color,
            crf=crf,
            fps_override=override,
            threads=threads,
            comment=comment,
        )
        _run_ffmpeg(graph, src=src, what="standardizing")
        result = probe(tmp)
        got = result["video"]
        if (got["width"], got["height"]) != (width, height):
            raise RuntimeError(
                f"{src}: standardized size {got['width']}x{got['height']} != {width}x{height}"
            )
        check_duration(src, got["frames"], fps, expected_s)
        log.info(
            "standardized %s: %d frames, %dx%d, %s fps, %s%s",
            src,
            got["frames"],
            width,
            height,
            fps,
            color,
            " (variable frame rate source)" if info["video"].get("variable_frame_rate") else "",
        )
    result["path"] = str(dest)
    return result


def extract_frames(video: PathLike, dest_dir: PathLike, *, provenance: Any = None) -> int:
    """Write one PNG per frame (``frame_000000.png`` ...) into ``dest_dir``, atomically.

    The folder also gets ``frames.json`` (frame rate, count, file pattern and
    ``provenance``). Returns the number of frames written.
    """
    info = probe(video)
    with atomic_dir(dest_dir) as tmp:
        graph = (
            ffmpeg.input(str(video))
            .output(
                str(tmp / "frame_%06d.png"),
                start_number=0,
                fps_mode="passthrough",
                fflags="+bitexact",
                **{"flags:v": "+bitexact"},
            )
            .global_args("-hide_banner", "-nostdin", "-xerror", "-loglevel", "error")
        )
        _run_ffmpeg(graph, src=video, what="extracting frames")
        n = len(list(tmp.glob("frame_*.png")))
        if n != info["video"]["frames"]:
            raise RuntimeError(f"{video}: wrote {n} PNGs for {info['video']['frames']} frames")
        (tmp / "frames.json").write_text(
            to_json(
                {
                    "frames": n,
                    "fps": info["video"]["fps"],
                    "pattern": "frame_%06d.png",
                    "time_of_frame_i": "(i + 0.5) / fps seconds (frame centre)",
                    "provenance": provenance,
                }
            )
            + "\n"
        )
    return n


# ------------------------------------------------------------------------- decoding


def video_fps(path: PathLike) -> float:
    """Average frame rate of the first video stream of ``path``."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise InputError(path, "the file has no video stream.", "give a video file.")
            fps = _stream_fps(container.streams.video[0])
    except (av.error.FFmpegError, FileNotFoundError) as err:
        raise InputError(path, f"cannot open the video ({err}).", _FIX_REENCODE) from err
    if not fps:
        raise InputError(path, "the video stream declares no frame rate.", _FIX_REENCODE)
    return float(fps)


def frame_count(path: PathLike) -> int:
    """Frames of the first video stream: its packets, demuxed (not decoded), as :func:`probe` counts."""
    try:
        with av.open(str(path)) as container:
            streams = container.streams.video
            count = (
                sum(1 for p in container.demux(streams[0]) if p.size and not p.is_discard)
                if streams
                else None
            )
    except (av.error.FFmpegError, FileNotFoundError) as err:
        raise InputError(path, f"cannot open the video ({err}).", _FIX_REENCODE) from err
    if count is None:
        raise InputError(path, "the file has no video stream.", "give a video file.")
    return count


def require_frames(path: PathLike, needed: int, *, what: str, fix: str, field: str) -> int:
    """The frame count of ``path``, or an InputError (file, ``field``, ``fix``) if under ``needed``.

    ``what`` completes "fewer than the {needed} ..." (e.g. "frames one clip spans").
    Extractors call it before they load a model or write anything.
    """
    count = frame_count(path)
    if count >= needed:
        return count
    fps = video_fps(path)
    raise InputError(
        path,
        f"the video has {count} frame(s) ({count / fps:.3f} s at {fps:g} fps), fewer than "
        f"the {needed} {what}.",
        fix,
        field=field,
    )


def iter_frames(
    path: PathLike,
    *,
    height: int | None = None,
    width: int | None = None,
    gray: bool = True,
    chunk: int = 256,
    interpolation: str = "AREA",
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Decode a video with PyAV in chunks of at most ``chunk`` frames.

    Yields ``(times, frames)``: ``times`` float64 [n], the centre of each frame in
    seconds from the start of the stream (pts time + 0.5 / fps); ``frames``
    float32 in 0..1, [n, h, w] (``gray``: luma) or [n, h, w, 3] (RGB). Frames
    are resized with swscale (``interpolation``) to ``height x width`` when
    given. Memory is bounded by ``chunk``. Decoding errors raise
    :class:`InputError` naming the file.
    """
    path = Path(path)
    fmt = "gray" if gray else "rgb24"
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, FileNotFoundError) as err:
        raise InputError(path, f"cannot open the video ({err}).", _FIX_REENCODE) from err
    with container:
        if not container.streams.video:
            raise InputError(path, "the file has no video stream.", "give a video file.")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = _stream_fps(stream)
        if not fps:
            raise InputError(path, "the video stream declares no frame rate.", _FIX_REENCODE)
        half = 0.5 / float(fps)
        start = stream.start_time or 0
        times: list[float] = []
        frames: list[np.ndarray] = []
        index = 0
        # One reformatter for the whole stream: its swscale context is reused
        # (frame.reformat() would build a new one per frame, ~7x slower).
        reformatter = VideoReformatter()
        try:
            for frame in container.decode(stream):
                image = reformatter.reformat(
                    frame, width=width, height=height, format=fmt, interpolation=interpolation
                ).to_ndarray()
                if frame.pts is not None:
                    t = float((frame.pts - start) * stream.time_base) + half
                else:
                    t = index / float(fps) + half
                times.append(t)
                frames.append(image)
                index += 1
                if len(frames) == chunk:
                    yield np.asarray(times), np.stack(frames).astype(np.float32) / 255.0
                    times, frames = [], []
        except av.error.FFmpegError as err:
            raise InputError(
                path, f"decoding failed after {index} frames ({err}).", _FIX_REENCODE
            ) from err
        if frames:
            yield np.asarray(times), np.stack(frames).astype(np.float32) / 255.0


# ------------------------------------------------------------------------- encoding


def write_video(
    frames: Iterable[np.ndarray],
    path: PathLike,
    fps: float,
    *,
    crf: int = 18,
    preset: str = "veryfast",
    pix_fmt: str = "yuv420p",
    metadata: Mapping[str, Any] | None = None,
) -> int:
    """Stream uint8 frames ([h, w, 3] RGB or [h, w] gray) into an H.264 MP4, atomically.

    Frames go to ffmpeg through a pipe one at a time (memory does not grow with
    the length). Bit-exact flags and one encoder thread make the bytes depend
    only on the frames and parameters. ``metadata`` is stored as a JSON
    ``comment`` tag. Returns the number of frames written.
    """
    iterator = iter(frames)
    try:
        first = np.asarray(next(iterator))
    except StopIteration:
        raise ValueError(f"{path}: no frames to write") from None
    if first.dtype != np.uint8 or first.ndim not in (2, 3):
        raise ValueError(
            f"{path}: frames must be uint8 [h, w] or [h, w, 3], got {first.dtype} {first.shape}"
        )
    h, w = first.shape[:2]
    if pix_fmt == "yuv420p" and (h % 2 or w % 2):
        raise ValueError(f"{path}: yuv420p needs an even width and height, got {w}x{h}")
    in_fmt = "gray" if first.ndim == 2 else "rgb24"
    out_opts: dict[str, Any] = {
        "vcodec": "libx264",
        "pix_fmt": pix_fmt,
        "crf": crf,
        "preset": preset,
        "threads": ENCODER_THREADS,
        "map_metadata": -1,
        "fflags": "+bitexact",
        "flags:v": "+bitexact",
        "movflags": "+faststart",
    }
    if metadata is not None:
        out_opts["metadata"] = f"comment={json.dumps(metadata, sort_keys=True)}"
    count = 0
    with atomic_path(path) as tmp, tempfile.TemporaryFile() as errfile:
        graph = (
            ffmpeg.input("pipe:", format="rawvideo", pix_fmt=in_fmt, s=f"{w}x{h}", framerate=fps)
            .output(str(tmp), **out_opts)
            .global_args("-hide_banner", "-nostdin", "-loglevel", "error")
        )
        args = ffmpeg.compile(graph, cmd=ffmpeg_exe(), overwrite_output=True)
        proc = subprocess.Popen(args, stdin=subprocess.PIPE, stderr=errfile)
        try:
            for frame in _chain(first, iterator):
                frame = np.ascontiguousarray(frame)
                if frame.shape != first.shape or frame.dtype != np.uint8:
                    raise ValueError(
                        f"{path}: frame {count} has {frame.dtype} {frame.shape}, expected uint8 {first.shape}"
                    )
                proc.stdin.write(frame.tobytes())
                count += 1
            proc.stdin.close()
            rc = proc.wait()
        except BrokenPipeError:
            proc.kill()  # ffmpeg exited early: report its message below
            proc.wait()
            rc = None
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if rc != 0:
            errfile.seek(0)
            message = errfile.read().decode(errors="replace").strip()
            raise RuntimeError(f"ffmpeg failed writing {path} after {count} frames: {message}")
    return count


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest
