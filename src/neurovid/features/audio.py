"""Sound of the stimulus as feature spaces: the audio track on the video's clock, log-mel bands.

Clock. The audio comes from the ORIGINAL video file (the sheet's ``path``: the
standardized ``results/video/{video}/standard.mp4`` has no audio, ``-an``), and its
times are on the standardized video's clock, whose time 0 is the original's first
video frame (:func:`neurovid.video.standardize` shifts the video by ``setpts
PTS-STARTPTS``; the video stream's ``start_time``, as :func:`neurovid.video.probe`
records it). An audio track that starts ``offset = audio start - video start``
seconds later (edit lists, ``-itsoffset``, cameras that start sound first) is
shifted by that many samples: silence is put before it (``offset > 0``) or its
first samples are dropped (``offset < 0``). The audio start is the first decoded
audio frame's timestamp; later samples are taken as contiguous (gaps in an audio
track's timestamps are not filled). A video whose frame rate is overridden in the
sheet (``fps`` column) keeps the audio on its own sample clock.

Signal. Decoded with PyAV, resampled to ``sample_rate`` by FFmpeg's swresample
(:class:`av.AudioResampler`, planar float, channel layout kept), then mixed to mono
as the mean of the channels (as ``librosa.to_mono``), in float64.

Rows. Row ``k`` is centred at ``k * hop / sample_rate`` seconds (``hop`` = round(hop_s
x sample_rate) samples) and sees the samples of a window centred there, with zeros
outside the audio (``librosa``'s ``center=True, pad_mode="constant"``); rows run
while their centre lies inside the video (``0 <= t < duration``, the clock video's
frames / fps), so the audio spaces span the same time as the picture spaces, and an
audio track shorter than the video gives silent rows at its end. Memory is bounded
by the decoding chunk and the row batch, whatever the length of the file
(:func:`centred_windows`, :class:`~neurovid.features.runtime.FeatureWriter`).

Log-mel convention (:func:`mel_filterbank`, :func:`log_mel`), librosa's defaults
(``librosa.feature.melspectrogram``, checked in tests/test_audio_features.py): a
periodic Hann window of ``window_s`` (``win_length`` samples) zero-padded to the
centre of ``n_fft`` (default: the next power of two), ``|STFT|^power`` (power 2),
triangular filters on the Slaney mel scale (``htk: false``; ``true`` for HTK's
2595 log10(1 + f/700)) with Slaney area normalization (``norm: slaney``; ``null``:
peak 1), then ``log(mel + log_offset)`` (natural log).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from neurovid import __version__
from neurovid.errors import InputError
from neurovid.features.runtime import FeatureWriter, Progress, emitter
from neurovid.io import PathLike
from neurovid.video import frame_count, video_fps

FIELD = "features.audio_mel"
#: What the mel bands follow (recorded in the features file's attrs).
MEL_CONVENTION = (
    "librosa.feature.melspectrogram: periodic Hann window of win_length samples centred in "
    "n_fft, center=True with zero padding (pad_mode='constant'), |STFT|^power, triangular "
    "filters on the {scale} mel scale, norm={norm}; then log(mel + log_offset), natural log"
)


# ------------------------------------------------------------------ the audio track


@dataclass(frozen=True)
class AudioTrack:
    """The first audio stream of a video file and where it sits on the video's clock."""

    path: Path
    codec: str
    sample_rate: int
    channels: int
    layout: str
    video_start_s: float

    def describe(self) -> dict[str, Any]:
        return {
            "codec": self.codec,
            "source_sample_rate": self.sample_rate,
            "channels": self.channels,
            "layout": self.layout,
            "video_start_s": self.video_start_s,
        }


def open_audio(path: PathLike, space: str) -> AudioTrack:
    """The audio track of ``path``; InputError naming the file when it has none.

    ``space`` (``audio_mel``, ``audio_encoder``) is the feature space that asked for
    the sound: the error says to take it out of the models or to give a video with
    its sound track.
    """
    path = Path(path)
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, FileNotFoundError) as err:
        raise InputError(
            path,
            f"cannot open the video ({err}).",
            "point the `path` column of the videos sheet at a readable video.",
            field=f"features.{space}",
        ) from err
    with container:
        if not container.streams.video:
            raise InputError(path, "the file has no video stream.", "give a video file.")
        if not container.streams.audio:
            kinds = ", ".join(
                f"{s.type} ({getattr(s.codec_context, 'name', None) or 'no decoder'})"
                for s in container.streams
            )
            raise InputError(
                path,
                f"the video has no audio track (it contains {kinds}), so the sound feature "
                f"space `{space}` cannot be computed for it.",
                f"remove `{space}` from `features.extractors` and from the encoding models' "
                "`features` (a silent stimulus has no sound features), or point this video's "
                "row of the videos sheet at a copy of the video with its sound track.",
                field=f"features.{space}",
            )
        video, audio = container.streams.video[0], container.streams.audio[0]
        start = video.start_time
        cc = audio.codec_context
        return AudioTrack(
            path=path,
            codec=str(cc.name),
            sample_rate=int(cc.sample_rate),
            channels=int(cc.channels),
            layout=str(cc.layout.name),
            video_start_s=float(start * video.time_base) if start is not None else 0.0,
        )


def iter_audio(
    track: AudioTrack, sample_rate: int, *, chunk_s: float = 10.0
) -> Iterator[np.ndarray]:
    """Mono float64 samples at ``sample_rate`` on the video's clock (sample 0 at time 0).

    Yields chunks of about ``chunk_s`` seconds (memory does not grow with the
    file). The track is shifted by its start relative to the video's (module
    docstring). Decoding errors raise :class:`InputError` naming the file.
    """
    chunk = max(int(chunk_s * sample_rate), 1)
    resampler = av.AudioResampler(format="fltp", rate=int(sample_rate))
    held: list[np.ndarray] = []
    n_held = 0
    skip: int | None = None  # samples still to drop (< 0: silence to put first)
    decoded = 0
    with av.open(str(track.path)) as container:
        stream = container.streams.audio[0]
        try:
            for frame in container.decode(stream):
                if skip is None:
                    start = frame.time if frame.time is not None else 0.0
                    skip = -round((start - track.video_start_s) * sample_rate)
                    if skip < 0:
                        held.append(np.zeros(-skip))
                        n_held, skip = -skip, 0
                for out in resampler.resample(frame):
                    samples, skip = _mono_after(out, skip)
                    held.append(samples)
                    n_held += len(samples)
                decoded += 1
                if n_held >= chunk:
                    yield np.concatenate(held)
                    held, n_held = [], 0
        except av.error.FFmpegError as err:
            raise InputError(
                track.path,
                f"decoding the audio failed after {decoded} frames ({err}).",
                "the file is damaged or truncated; copy or re-export it from the original.",
            ) from err
        for out in resampler.resample(None):  # what the resampler still holds
            samples, skip = _mono_after(out, skip)
            held.append(samples)
    if held:
        yield np.concatenate(held)


def _mono_after(frame: av.AudioFrame, skip: int | None) -> tuple[np.ndarray, int | None]:
    """A resampled frame's mono samples (channel mean, float64) after dropping the first
    ``skip`` samples still to drop; returns them and the samples left to drop."""
    samples = frame.to_ndarray().astype(np.float64).mean(axis=0)
    if not skip:
        return samples, skip
    dropped = min(skip, len(samples))
    return samples[dropped:], skip - dropped


def clock_duration(clock_video: PathLike) -> float:
    """Seconds the clock video lasts: its frames / fps (as the picture spaces record it)."""
    return frame_count(clock_video) / video_fps(clock_video)


def row_count(duration: float, hop: int, sample_rate: int) -> int:
    """Rows centred at ``k * hop / sample_rate`` s with their centre inside ``[0, duration)``."""
    return max(math.ceil(duration * sample_rate / hop - 1e-9), 1)


def centred_windows(
    chunks: Iterable[np.ndarray], *, width: int, hop: int, n_rows: int, batch: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Windows of ``width`` samples centred every ``hop`` samples: ``(first row, [n, width])``.

    Row ``k`` holds samples ``k * hop - width // 2`` to ``k * hop - width // 2 + width``
    of the signal that ``chunks`` stream, with zeros before its start and after its
    end (librosa's ``center=True, pad_mode="constant"`` when ``width`` is even).
    Exactly ``n_rows`` rows come, in batches of at most ``batch``; only the samples
    the next batch needs are held, and no more chunks are read once all rows are
    out (a track longer than the video is not decoded to its end).
    """
    left = width // 2
    buf = np.zeros(left)
    buf_start = -left  # signal index of buf[0]
    source = iter(chunks)
    exhausted = False
    k = 0
    while k < n_rows:
        end = buf_start + len(buf)
        ready = min((end + left - width) // hop + 1, n_rows)  # rows 0..ready-1 are complete
        if ready - k >= batch or (ready == n_rows and ready > k):
            take = min(batch, ready - k)
            first = k * hop - left - buf_start
            span = buf[first : first + (take - 1) * hop + width]
            yield k, np.array(sliding_window_view(span, width)[::hop])
            k += take
            drop = k * hop - left - buf_start
            if drop > 0:
                buf, buf_start = buf[drop:], buf_start + drop
            continue
        if not exhausted:
            piece = next(source, None)
            if piece is None:
                exhausted = True
            else:
                buf = np.concatenate([buf, np.asarray(piece, dtype=np.float64)])
            continue
        need = (min(k + batch, n_rows) - 1) * hop - left + width - end
        buf = np.concatenate([buf, np.zeros(need)])


# ------------------------------------------------------------------------- log-mel


def hz_to_mel(hz: np.ndarray | float, htk: bool = False) -> np.ndarray:
    """Mel value of frequencies: Slaney's scale (linear below 1 kHz, log above) or HTK's."""
    hz = np.asarray(hz, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    linear = hz / f_sp
    return np.where(
        hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-12) / min_log_hz) / logstep, linear
    )


def mel_to_hz(mel: np.ndarray, htk: bool = False) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`."""
    mel = np.asarray(mel, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(
        mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel
    )


def mel_filterbank(
    *,
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    fmin: float,
    fmax: float,
    htk: bool = False,
    norm: str | None = "slaney",
) -> np.ndarray:
    """Triangular mel filters [n_mels, n_fft // 2 + 1] (``librosa.filters.mel``'s construction).

    ``n_mels + 2`` points evenly spaced in mel from ``fmin`` to ``fmax``; filter ``i``
    rises from point ``i`` to ``i + 1`` and falls to ``i + 2``. ``norm="slaney"``
    divides each by its width in Hz / 2 (equal area); ``None`` keeps peak 1. A
    filter that falls between two FFT bins (too many bands for the window) is an
    :class:`InputError`.
    """
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    points = mel_to_hz(np.linspace(hz_to_mel(fmin, htk), hz_to_mel(fmax, htk), n_mels + 2), htk)
    widths = np.diff(points)
    ramps = points[:, None] - freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    if norm == "slaney":
        weights *= (2.0 / (points[2:] - points[:-2]))[:, None]
    elif norm is not None:
        raise InputError(
            None, f"norm {norm!r} is unknown.", "use slaney or null.", field=f"{FIELD}.norm"
        )
    empty = np.flatnonzero(weights.max(axis=1) <= 0)
    if empty.size:
        raise InputError(
            None,
            f"{empty.size} of the {n_mels} mel bands (first: band {empty[0]}) contain no FFT bin: "
            f"an FFT of {n_fft} samples at {sample_rate} Hz resolves {sample_rate / n_fft:g} Hz, "
            "too coarse for that many bands.",
            "lower n_mels, or raise window_s / n_fft.",
            field=f"{FIELD}.n_mels",
        )
    return weights


def hann_window(win_length: int, n_fft: int) -> np.ndarray:
    """Periodic Hann window of ``win_length`` samples, zero-padded to the centre of ``n_fft``."""
    n = np.arange(win_length)
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)
    out = np.zeros(n_fft)
    start = (n_fft - win_length) // 2
    out[start : start + win_length] = window
    return out


def log_mel(
    frames: np.ndarray,
    window: np.ndarray,
    filters: np.ndarray,
    *,
    power: float = 2.0,
    log_offset: float = 1e-6,
) -> np.ndarray:
    """``log(filters @ |rfft(frames * window)|^power + log_offset)``: [n, n_mels] float64."""
    spectrum = np.abs(np.fft.rfft(frames * window, axis=1)) ** power
    return np.log(spectrum @ filters.T + log_offset)


@dataclass(frozen=True)
class MelSettings:
    """Checked log-mel settings, in samples."""

    sample_rate: int
    n_mels: int
    win_length: int
    hop: int
    n_fft: int
    fmin: float
    fmax: float
    htk: bool
    norm: str | None
    power: float
    log_offset: float

    @classmethod
    def from_config(
        cls,
        *,
        sample_rate: int,
        n_mels: int,
        window_s: float,
        hop_s: float,
        n_fft: int | None,
        fmin: float,
        fmax: float | None,
        htk: bool,
        norm: str | None,
        power: float,
        log_offset: float,
    ) -> MelSettings:
        """Seconds -> samples; InputError (naming the setting) for values that cannot work."""
        sr = int(sample_rate)
        win, hop = round(window_s * sr), round(hop_s * sr)
        fft = int(n_fft) if n_fft else 1 << max(win - 1, 1).bit_length()
        top = sr / 2 if fmax is None else float(fmax)
        checks = [
            (sr > 0 and n_mels >= 1, "sample_rate and n_mels must be positive", "sample_rate"),
            (win >= 2, f"window_s={window_s} is under two samples at {sr} Hz", "window_s"),
            (hop >= 1, f"hop_s={hop_s} is under one sample at {sr} Hz", "hop_s"),
            (fft >= win, f"n_fft={fft} is shorter than the window ({win} samples)", "n_fft"),
            (0 <= fmin < top <= sr / 2, f"need 0 <= fmin ({fmin}) < fmax ({top}) <= {sr / 2:g} Hz (Nyquist)", "fmax"),
            (power > 0 and log_offset > 0, "power and log_offset must be positive", "log_offset"),
        ]  # fmt: skip
        for ok, problem, key in checks:
            if not ok:
                raise InputError(
                    None, problem + ".", "correct it in config.yaml.", field=f"{FIELD}.{key}"
                )
        return cls(sr, int(n_mels), win, hop, fft, float(fmin), top, bool(htk), norm, float(power), float(log_offset))  # fmt: skip


def audio_mel(
    video_path: PathLike,
    out_path: PathLike,
    *,
    clock_video: PathLike | None = None,
    sample_rate: int = 16000,
    n_mels: int = 64,
    window_s: float = 0.025,
    hop_s: float = 0.010,
    n_fft: int | None = None,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: str | None = "slaney",
    power: float = 2.0,
    log_offset: float = 1e-6,
    chunk_s: float = 10.0,
    extra_attrs: Mapping[str, Any] | None = None,
    log: logging.Logger | Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Write the log-mel bands of ``video_path``'s audio to ``out_path`` (streamed); return the attrs.

    ``features`` float32 [T, n_mels] (low to high frequency), ``times`` the row
    centres ``k * hop`` on the video's clock, T = rows inside ``clock_video``'s
    duration (the standardized video; default ``video_path`` itself). A video with
    no audio track raises :class:`InputError` before anything is written.
    """
    emit = emitter(log)
    mel = MelSettings.from_config(
        sample_rate=sample_rate, n_mels=n_mels, window_s=window_s, hop_s=hop_s, n_fft=n_fft,
        fmin=fmin, fmax=fmax, htk=htk, norm=norm, power=power, log_offset=log_offset,
    )  # fmt: skip
    track = open_audio(video_path, "audio_mel")
    filters = mel_filterbank(
        sample_rate=mel.sample_rate, n_fft=mel.n_fft, n_mels=mel.n_mels, fmin=mel.fmin,
        fmax=mel.fmax, htk=mel.htk, norm=mel.norm,
    )  # fmt: skip
    window = hann_window(mel.win_length, mel.n_fft)
    duration = clock_duration(clock_video or video_path)
    n_rows = row_count(duration, mel.hop, mel.sample_rate)
    emit(
        f"{video_path}: {track.codec} {track.sample_rate} Hz {track.layout}, video starts at "
        f"{track.video_start_s:.4f} s -> mono {mel.sample_rate} Hz; {n_mels} mel bands, window "
        f"{mel.win_length} / n_fft {mel.n_fft} / hop {mel.hop} samples; {n_rows} rows over {duration:.3f} s"
    )
    progress = Progress(emit, f"{video_path} (rows)")
    batch = max(int(chunk_s * mel.sample_rate / mel.hop), 1)
    windows = centred_windows(
        iter_audio(track, mel.sample_rate, chunk_s=chunk_s),
        width=mel.n_fft, hop=mel.hop, n_rows=n_rows, batch=batch,
    )  # fmt: skip
    with FeatureWriter(out_path, mel.n_mels) as writer:
        for first, frames in windows:
            rows = np.arange(first, first + len(frames))
            bands = log_mel(frames, window, filters, power=mel.power, log_offset=mel.log_offset)
            writer.append(bands.astype(np.float32), rows * mel.hop / mel.sample_rate)
            progress.update(writer.rows)
        progress.finish(writer.rows)
        attrs = {
            "extractor": "audio_mel",
            "model_id": "log-mel",
            "revision": f"neurovid {__version__}",
            "layer": "",
            "dtype": "float32",
            "fps": mel.sample_rate / mel.hop,
            "duration": duration,
            "n_rows": writer.rows,
            "sample_rate": mel.sample_rate,
            "n_mels": mel.n_mels,
            "win_length": mel.win_length,
            "hop_length": mel.hop,
            "n_fft": mel.n_fft,
            "fmin": mel.fmin,
            "fmax": mel.fmax,
            "htk": mel.htk,
            "norm": mel.norm,
            "power": mel.power,
            "log_offset": mel.log_offset,
            "band_centres_hz": mel_to_hz(
                np.linspace(hz_to_mel(mel.fmin, mel.htk), hz_to_mel(mel.fmax, mel.htk), n_mels + 2),
                mel.htk,
            )[1:-1].tolist(),
            "convention": MEL_CONVENTION.format(
                scale="HTK" if mel.htk else "Slaney", norm=mel.norm
            ),
            "mono": "mean of the channels after resampling (swresample)",
            "clock": "time 0 = the original video's first video frame (the standardized video's clock); row k centred at k * hop_length / sample_rate s",
            "audio": track.describe(),
            **dict(extra_attrs or {}),
        }
        writer.close(attrs)
    return attrs
