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
from collections.abc import Iterable, Iterator, Mapping
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
#: Frames a standardized video may differ from ``duration x fps`` (rounding at both ends).
FRAME_TOLERANCE = 2
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


def probe(path: PathLike) -> dict[str, Any]:
    """Describe a video file (JSON-able) and reject files that cannot be used.

    Returns size, container format, duration, the first video stream (codec,
    width, height, average fps, frame count, pix_fmt), the audio streams and the
    sha256 digest. ``video.frames`` is the number of video packets actually
    present (demuxed, not decoded); ``video.declared_frames`` is what the
    container's index claims (0 if it does not say).

    Raises :class:`InputError` (naming the file, the problem and a fix) for a
    missing, empty, non-video (e.g. text), audio-only or truncated file.
    """
    path = Path(path)
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
    size = path.stat().st_size
    if size == 0:
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

    with container:
        if not container.streams.video:
            kinds = ", ".join(f"{s.type} ({s.codec_context.name})" for s in container.streams)
            raise InputError(
                path,
                f"the file has no video stream; it contains only {kinds or 'no streams'}.",
                "give the video file shown to the subject (an audio track alone cannot be used).",
            )
        vstream = container.streams.video[0]
        fps = _stream_fps(vstream)
        stats = {
            s.index: {"packets": 0, "end": None, "corrupt": 0, "beyond_eof": 0}
            for s in container.streams
        }
        try:
            for packet in container.demux():
                if packet.size == 0 or packet.stream_index not in stats:
                    continue  # flush packets
                st = stats[packet.stream_index]
                st["packets"] += 1
                st["corrupt"] += bool(packet.is_corrupt)
                if packet.pos is not None and packet.pos >= 0 and packet.pos + packet.size > size:
                    st["beyond_eof"] += 1
                if packet.pts is not None and packet.time_base is not None:
                    end = (packet.pts + (packet.duration or 0)) * packet.time_base
                    st["end"] = end if st["end"] is None else max(st["end"], end)
        except av.error.FFmpegError as err:
            raise InputError(
                path,
                f"the file is damaged: reading its packets failed ({err}).",
                _FIX_REENCODE,
            ) from err

        vstats = stats[vstream.index]
        start = _seconds(vstream.start_time, vstream.time_base) or 0.0
        declared_duration = _seconds(vstream.duration, vstream.time_base)
        if declared_duration is None and container.duration:
            declared_duration = container.duration / 1e6
        declared_frames = int(vstream.frames or 0)
        found_end = None if vstats["end"] is None else float(vstats["end"]) - start
        frame_s = float(1 / fps) if fps else 0.04

        broken = sum(st["corrupt"] + st["beyond_eof"] for st in stats.values())
        short_frames = declared_frames > 0 and vstats["packets"] < declared_frames
        short_time = (
            declared_duration is not None
            and found_end is not None
            and found_end < declared_duration - 2 * frame_s
        )
        if vstats["packets"] == 0:
            raise InputError(
                path,
                "the video stream contains no frames (the file is truncated or empty).",
                _FIX_REENCODE,
            )
        if broken or short_frames or short_time:
            parts = []
            if declared_duration is not None and found_end is not None:
                parts.append(
                    f"the video data stops at {found_end:.2f} s but the file declares "
                    f"{declared_duration:.2f} s"
                )
            if declared_frames:
                parts.append(f"{vstats['packets']} of {declared_frames} frames are present")
            if broken:
                parts.append(f"{broken} packet(s) are cut off at the end of the file")
            raise InputError(
                path,
                f"the video file is truncated: {'; '.join(parts)}.",
                _FIX_REENCODE,
            )

        cc = vstream.codec_context
        duration = container.duration / 1e6 if container.duration else declared_duration
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
            "declared_frames": declared_frames,
            "duration": declared_duration if declared_duration is not None else found_end,
            "start_time": start,
            "sample_aspect_ratio": str(vstream.sample_aspect_ratio or "1"),
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
            "size_bytes": size,
            "format": container.format.name,
            "format_long_name": container.format.long_name,
            "duration": duration,
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
    """Transcode ``src`` to a standard H.264 MP4 in one ffmpeg pass, atomically.

    - ``fps_override``: the true frame rate of the source when its header is wrong
      (sheet column ``fps``): timestamps are regenerated at that rate.
    - ``fps`` filter to the standard rate; scale to fit ``width x height`` keeping
      the aspect ratio, then pad (black) to exactly that size, square pixels.
    - ``color``: ``gray`` (8-bit luma only) or ``rgb`` (yuv420p).
    - libx264 at ``crf``, no audio/subtitles/data, no source metadata, bit-exact
      muxing and a fixed encoder thread count: the same input gives the same bytes.
    - ``provenance`` (JSON) is stored in the container's ``comment`` tag.

    Decoding errors in ``src`` raise :class:`InputError` naming ``src``. The result
    is checked (frame count = duration x fps within :data:`FRAME_TOLERANCE`, size)
    before it is renamed onto ``dest``. Returns the probe of the result.
    """
    if color not in ("gray", "rgb"):
        raise InputError(
            None, f"video color {color!r} is unknown.", "use gray or rgb.", field="video.color"
        )
    info = dict(source_probe) if source_probe is not None else probe(src)
    override = fps_override_value(fps_override)
    src_video = info["video"]
    if override:
        duration = src_video["frames"] / override
    else:
        duration = src_video["duration"] or info["duration"]
    expected = round(duration * fps)

    inp = ffmpeg.input(str(src), threads=threads, **({"r": override} if override else {}))
    video = (
        inp.video.filter("fps", fps=fps)
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
        "map_metadata": -1,
        "map_chapters": -1,
        "fflags": "+bitexact",
        "flags:v": "+bitexact",
        "movflags": "+faststart",
        "an": None,
        "sn": None,
        "dn": None,
    }
    if provenance is not None:
        out_opts["metadata"] = f"comment={json.dumps(provenance, sort_keys=True)}"
    with atomic_path(dest) as tmp:
        graph = video.output(str(tmp), **out_opts).global_args(
            "-hide_banner", "-nostdin", "-xerror", "-loglevel", "error"
        )
        _run_ffmpeg(graph, src=src, what="standardizing")
        result = probe(tmp)
        got = result["video"]
        if (got["width"], got["height"]) != (width, height):
            raise RuntimeError(
                f"{src}: standardized size {got['width']}x{got['height']} != {width}x{height}"
            )
        if abs(got["frames"] - expected) > FRAME_TOLERANCE:
            raise InputError(
                src,
                f"the standardized video has {got['frames']} frames but {duration:.3f} s at "
                f"{fps} fps should give {expected}; the source's timestamps are inconsistent "
                "(variable frame rate or a wrong frame rate in its header).",
                "set the true frame rate in the `fps` column of the videos sheet.",
                field="fps",
            )
        log.info(
            "standardized %s: %d frames, %dx%d, %s fps, %s",
            src,
            got["frames"],
            width,
            height,
            fps,
            color,
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
