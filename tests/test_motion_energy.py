"""Motion-energy features: shape, times, streaming == whole video == pymoten, provenance, direction."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import moten
import numpy as np
import pytest
from conftest import run_script
from snakemake.io import Namedlist

from neurovid.errors import InputError
from neurovid.features.motion_energy import (
    build_pyramid,
    channel_table,
    motion_energy,
    to_luminance,
)
from neurovid.io import read_features
from neurovid.video import iter_frames, write_video

REPO = Path(__file__).resolve().parents[1]
FPS = 15
# A small pyramid keeps the tests fast (221 channels on 24x32 frames).
SETTINGS = {
    "height": 24,
    "width": 32,
    "temporal_frequencies": [0, 2, 4],
    "spatial_frequencies": [0, 2, 4, 8],
    "spatial_directions": [0, 90, 180, 270],
}


def grating_frames(n: int, *, h: int = 48, w: int = 64, cycles: float = 4, hz: float = 2):
    """uint8 RGB frames of a vertical grating drifting rightward (toward +x) at ``hz``."""
    x = np.arange(w) / w
    for i in range(n):
        row = 0.5 + 0.4 * np.sin(2 * np.pi * (cycles * x - hz * i / FPS))
        gray = np.tile((row * 255).astype(np.uint8), (h, 1))
        yield np.repeat(gray[..., None], 3, axis=2)


@pytest.fixture(scope="module")
def grating(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("me") / "grating.mp4"
    write_video(grating_frames(45), path, FPS, crf=10)
    return path


@pytest.fixture(scope="module")
def movie(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of random blobs moving around: broadband, changing content."""
    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp("me") / "movie.mp4"
    base = rng.integers(0, 256, (60, 80), dtype=np.uint8)
    frames = [
        np.repeat(np.roll(base, (i, 2 * i), axis=(0, 1))[..., None], 3, axis=2) for i in range(45)
    ]
    write_video(frames, path, FPS, crf=10)
    return path


def test_shape_times_attrs(movie: Path) -> None:
    features, times, attrs = motion_energy(movie, chunk_frames=256, **SETTINGS)
    n_filters = build_pyramid(fps=FPS, **SETTINGS).nfilters
    assert n_filters == 221
    assert features.shape == (45, n_filters) and features.dtype == np.float32
    assert np.isfinite(features).all()
    np.testing.assert_allclose(times, (np.arange(45) + 0.5) / FPS)
    assert times[-1] + 0.5 / FPS == pytest.approx(attrs["duration"]) == pytest.approx(3.0)
    assert attrs["extractor"] == "motion_energy" and attrs["model_id"] == "pymoten"
    assert attrs["revision"] == moten.__version__ and attrs["layer"] == ""
    assert (attrs["dtype"], attrs["fps"], attrs["n_filters"]) == ("float32", 15.0, 221)
    assert attrs["spatial_directions"] == [0.0, 90.0, 180.0, 270.0]
    assert attrs["filter_temporal_width"] == 10  # int(15 * 2/3)


def test_chunked_equals_whole_and_pymoten(movie: Path) -> None:
    whole, times_w, _ = motion_energy(movie, chunk_frames=1000, **SETTINGS)
    for chunk in (7, 16):
        chunked, times_c, _ = motion_energy(movie, chunk_frames=chunk, **SETTINGS)
        np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(times_c, times_w)
    # Reference: pymoten's own (per-filter) projection of the whole luminance movie.
    rgb = np.concatenate(
        [f for _, f in iter_frames(movie, height=24, width=32, gray=False, chunk=1000)]
    )
    pyramid = build_pyramid(fps=FPS, **SETTINGS)
    reference = pyramid.project_stimulus(to_luminance(rgb))
    np.testing.assert_allclose(whole, reference, rtol=0, atol=1e-4)


def test_luminance_noise_is_per_frame(movie: Path) -> None:
    rgb = np.concatenate([f for _, f in iter_frames(movie, height=24, width=32, gray=False)])
    all_at_once = to_luminance(rgb, seed=3)
    pieces = np.concatenate(
        [to_luminance(rgb[:10], seed=3), to_luminance(rgb[10:], first_index=10, seed=3)]
    )
    np.testing.assert_array_equal(all_at_once, pieces)
    assert 0 <= all_at_once.min() and all_at_once.max() <= 100
    # Pure black and white map to L* 0 and 100 (pymoten's CIE L*), before noise.
    bw = to_luminance(np.array([[[[0, 0, 0], [1, 1, 1]]]], dtype=np.float32), noise=0)
    np.testing.assert_allclose(bw[0, 0], [0.0, 100.0], atol=1e-3)


def test_rightward_grating_drives_rightward_channels(grating: Path) -> None:
    features, _, _ = motion_energy(grating, chunk_frames=20, **SETTINGS)
    table = channel_table(build_pyramid(fps=FPS, **SETTINGS))
    steady = features[10:-10]  # away from the zero-padded ends
    # 4 cycles / 64 px at 2 Hz -> matching channels: 4 cycles/image, 2 Hz.
    band = (table["spatial_freq"] == 4) & (table["temporal_freq"] == 2)
    energy = {
        d: float(steady[:, band & (table["motion_direction"] == d)].mean())
        for d in (0, 90, 180, 270)
    }
    assert energy[0] > energy[180] + 1.0  # log units: > e times more energy rightward
    assert energy[0] > energy[90] and energy[0] > energy[270]
    # pymoten's own label for the channels that prefer rightward motion is 180.
    assert set(table.loc[table["motion_direction"] == 0, "direction"]) == {180.0}


def test_deterministic_script_output(movie: Path, tmp_path: Path) -> None:
    outputs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.h5"
        smk = SimpleNamespace(
            input=Namedlist(fromdict={"video": str(movie)}),
            output=Namedlist([str(out)]),
            params=Namedlist(fromdict={"settings": {**SETTINGS, "chunk_frames": 16}}),
            log=Namedlist([str(tmp_path / f"{name}.log")]),
            threads=1,
        )
        run_script(str(REPO / "scripts" / "motion_energy.py"), init_globals={"snakemake": smk})
        outputs.append(out)
    assert outputs[0].read_bytes() == outputs[1].read_bytes()
    fs = read_features(outputs[0])
    assert fs.features.shape == (45, 221) and fs.duration == pytest.approx(3.0)
    prov = fs.attrs["provenance"]
    assert prov["step"] == "motion_energy"
    assert prov["params"]["chunk_frames"] == 16
    assert prov["inputs"]["video"]["digest"].startswith("sha256:")
    assert prov["versions"]["pymoten"] == moten.__version__
    log = (tmp_path / "a.log").read_text()
    assert "45 frames done" in log and "frames/s" in log


def test_non_integer_fps_rejected(tmp_path: Path) -> None:
    path = tmp_path / "ntsc.mp4"
    write_video(grating_frames(6), path, 29.97)
    with pytest.raises(InputError, match=r"29.97 fps.*integer"):
        motion_energy(path, chunk_frames=8, **SETTINGS)


def test_too_short_video_rejected_before_any_output(tmp_path: Path) -> None:
    """pymoten's temporal filters span int(15 * 2/3) = 10 frames: 9 are too few, 10 enough."""
    one = tmp_path / "one.mp4"
    write_video(grating_frames(1), one, FPS)
    out = tmp_path / "results" / "one.h5"
    out.parent.mkdir()
    smk = SimpleNamespace(
        input=Namedlist(fromdict={"video": str(one)}),
        output=Namedlist([str(out)]),
        params=Namedlist(fromdict={"settings": {**SETTINGS, "chunk_frames": 16}}),
        log=Namedlist([str(tmp_path / "one.log")]),
        threads=1,
    )
    with pytest.raises(InputError) as info:
        run_script(str(REPO / "scripts" / "motion_energy.py"), init_globals={"snakemake": smk})
    assert str(info.value) == (
        f"{one} [features.motion_energy]: the video has 1 frame(s) (0.067 s at 15 fps), fewer "
        "than the 10 frames motion energy needs at 15 fps: pymoten's temporal filters span 10 "
        "frames (about 2/3 s), and in a shorter video no output frame has the filters' full "
        "support. Fix: use a stimulus video of at least 0.67 s, or take motion_energy out of "
        "`features.extractors` and of the encoding models' `features`."
    )
    assert list(out.parent.iterdir()) == []
    for n, ok in ((9, False), (10, True)):
        path = tmp_path / f"{n}.mp4"
        write_video(grating_frames(n), path, FPS)
        if ok:
            assert motion_energy(path, **SETTINGS)[0].shape == (10, 221)
        else:
            with pytest.raises(InputError, match=r"has 9 frame\(s\).*fewer than the 10"):
                motion_energy(path, **SETTINGS)
