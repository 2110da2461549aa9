"""Simulated demo recordings: ROI, ground truth, fMRI and mouse runs, and their scripts."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import run_script as run_rule_script
from scipy.ndimage import gaussian_filter1d
from snakemake.io import Namedlist

from neurovid import neural
from neurovid.demo import responses as R
from neurovid.io import FeatureSet, read_responses, write_features
from neurovid.sheets import StimulusEvent

REPO = Path(__file__).resolve().parents[1]
FPS = 15.0


def fake_features(seed: int, seconds: float, dims: int = 48) -> FeatureSet:
    """Stand-in motion energy: positive, strongly correlated, slow drifts and scene cuts."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * FPS))
    scene = np.cumsum(rng.random(n) < 1 / (3 * FPS))  # a cut every ~3 s
    level = rng.normal(0, 1, scene[-1] + 1)[scene]
    slow = 4 * gaussian_filter1d(rng.standard_normal((n, 4)), sigma=8.0, axis=0, mode="wrap")
    x = 3 + 0.5 * level[:, None] + slow @ rng.uniform(0.3, 1, (4, dims))
    x += 0.3 * rng.standard_normal((n, dims))
    times = (np.arange(n) + 0.5) / FPS
    return FeatureSet(x.astype(np.float32), times, {"duration": n / FPS, "fps": FPS})


@pytest.fixture(scope="module")
def videos() -> dict[str, FeatureSet]:
    return {"A": fake_features(1, 4.0), "B": fake_features(2, 30.0), "C": fake_features(3, 34.0)}


EVENTS = [StimulusEvent("A", 0.0), StimulusEvent("B", 5.0)]  # ends at 35 s


@pytest.fixture(scope="module")
def gm_mask() -> nib.Nifti1Image:
    return neural.load_mask("mni152_gm", 3)


@pytest.fixture(scope="module")
def roi(gm_mask: nib.Nifti1Image) -> nib.Nifti1Image:
    return R.make_roi(gm_mask)


@pytest.fixture(scope="module")
def fmri_truth(videos, roi) -> dict:
    datasets, attrs = R.make_fmri_truth(videos["A"], roi, [1, "sub-01"])
    return {**datasets, **attrs}


def test_roi_is_bilateral_occipital_gray_matter(gm_mask, roi) -> None:
    data = np.asarray(roi.dataobj)
    assert roi.shape == (67, 79, 64) and data.dtype == np.uint8
    ijk = np.argwhere(data > 0)
    assert 1500 <= len(ijk) <= 3000
    assert np.all(np.asarray(gm_mask.dataobj)[tuple(ijk.T)] > 0)
    xyz = nib.affines.apply_affine(roi.affine, ijk)
    assert xyz[:, 1].max() <= -65  # posterior: all behind y = -65 mm
    left, right = (xyz[:, 0] < 0).sum(), (xyz[:, 0] > 0).sum()
    assert min(left, right) > 0.4 * len(ijk)  # both hemispheres


def test_fmri_truth_contents(fmri_truth, roi) -> None:
    n_roi = int(np.asarray(roi.dataobj).sum())
    assert fmri_truth["patterns"].shape == (4, 48) and fmri_truth["mixing"].shape == (n_roi, 4)
    assert R.fmri_weights(fmri_truth).shape == (n_roi, 48)
    # Patterns are orthogonal to the reference feature mean (blank periods sit at the mean drive).
    np.testing.assert_allclose(fmri_truth["patterns"] @ fmri_truth["feature_mean"], 0, atol=1e-3)
    assert 1.3 <= fmri_truth["snr"].min() and fmri_truth["snr"].max() <= 2.2
    assert len(fmri_truth["baseline"]) == int(fmri_truth["brain_mask"].sum()) > 64000
    assert 700 < fmri_truth["baseline"].min() and fmri_truth["baseline"].max() < 1300


def test_fmri_run_volumes_header_and_signal(videos, fmri_truth, roi) -> None:
    img, truth = R.simulate_fmri_run(EVENTS, videos, fmri_truth, tr=1.0, tail_s=8, seed=[1, "r1"])
    n_vols = math.ceil(35 + 8)
    assert img.shape == (67, 79, 64, n_vols) and img.get_data_dtype() == np.int16
    assert img.header.get_zooms()[3] == 1.0 and img.header.get_xyzt_units() == ("mm", "sec")
    data = np.asarray(img.dataobj)
    brain = fmri_truth["brain_mask"] > 0
    assert not data[~brain].any()  # zeros outside the brain
    assert 900 < data[brain].mean() < 1100

    roi_ijk = fmri_truth["roi_ijk"]
    observed = data[tuple(roi_ijk.T)].T.astype(np.float64)  # [T, R]
    r_roi = R.noise_ceiling(truth["signal"], observed)
    snr = fmri_truth["snr"]
    assert np.mean(r_roi) == pytest.approx(np.mean(snr / np.sqrt(1 + snr**2)), abs=0.06)
    assert np.percentile(r_roi, 5) > 0.6
    # Noise SD as stored; signal SD = snr * noise SD.
    np.testing.assert_allclose(truth["signal"].std(axis=0), snr * truth["noise_sd"], rtol=1e-3)
    # Voxels outside the ROI carry no signal.
    outside = np.argwhere(brain & (np.asarray(roi.dataobj) == 0))[::50]
    other = data[tuple(outside.T)].T.astype(np.float64)
    r_out = R.noise_ceiling(np.repeat(truth["signal"][:, :1], other.shape[1], axis=1), other)
    assert abs(np.mean(r_out)) < 0.05 and np.percentile(np.abs(r_out), 95) < 0.45


def test_fmri_run_is_deterministic(videos, fmri_truth) -> None:
    run = dict(tr=2.0, tail_s=4, seed=[1, "r1"])
    a, ta = R.simulate_fmri_run(EVENTS, videos, fmri_truth, **run)
    b, tb = R.simulate_fmri_run(EVENTS, videos, fmri_truth, **run)
    c, _ = R.simulate_fmri_run(EVENTS, videos, fmri_truth, **{**run, "seed": [1, "r2"]})
    assert a.shape[3] == math.ceil((35 + 4) / 2)
    np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
    np.testing.assert_array_equal(ta["signal"], tb["signal"])
    assert not np.array_equal(np.asarray(a.dataobj), np.asarray(c.dataobj))
    d1, _ = R.make_fmri_truth(videos["A"], R.make_roi(neural.load_mask()), [1, "sub-01"])
    d2, _ = R.make_fmri_truth(videos["A"], R.make_roi(neural.load_mask()), [1, "sub-02"])
    assert not np.array_equal(d1["patterns"], d2["patterns"])
    np.testing.assert_array_equal(d1["patterns"], fmri_truth["patterns"])


@pytest.mark.parametrize("modality", ["spikes", "calcium"])
def test_mouse_run(videos, modality: str) -> None:
    datasets, attrs = R.make_mouse_truth(videos["A"], [1, "m"], modality=modality)
    truth = {**datasets, **attrs}
    table, run = R.simulate_mouse_run(
        EVENTS, videos, truth, sampling_rate=10.0, tail_s=8, seed=[1, "m_run-1"]
    )
    n = math.ceil((35 + 8) * 10)
    assert list(table.columns[:2]) == ["time", "neuron_000"] and table.shape == (n, 51)
    np.testing.assert_allclose(table["time"], (np.arange(n) + 0.5) / 10)
    y = table.drop(columns="time").to_numpy(np.float64)
    assert run["expected"].shape == y.shape
    ceiling = R.noise_ceiling(run["expected"], y)
    if modality == "spikes":
        assert (table.dtypes.iloc[1:] == np.int64).all() and y.min() >= 0
        # Mean count per bin matches E[count] (Poisson: SE ~ sqrt(mean / n_bins_total)).
        assert y.mean() == pytest.approx(run["expected"].mean(), rel=0.02)
        assert 0.9 < run["rate_hz"].mean() / truth["rate_hz"].mean() < 1.6
        assert 0.35 < ceiling.mean() < 0.8
    else:
        assert 0.6 < ceiling.mean() < 0.95
        tau_bins = truth["tau_s"] * 10
        assert np.all((tau_bins >= 3) & (tau_bins <= 5))
    assert ceiling.min() > 0.2
    # Latency within the encoding delays: the expected response lags the drive by 1 bin.
    assert set(np.rint(truth["latency_s"] * 10).astype(int)) <= {0, 1, 2}


def test_noise_ceiling_values() -> None:
    e = np.array([[0.0, 1], [1, 1], [2, 1]])
    o = np.array([[0.0, 3], [1, 2], [2, 1]])
    # a constant expectation has no correlation: NaN (neurovid.scoring's convention), not 0
    np.testing.assert_allclose(R.noise_ceiling(e, o), [1.0, np.nan])


# --------------------------------------------------------------------------- scripts


def run_script(name: str, tmp_path: Path, *, input: dict, output: dict, params: dict) -> None:
    smk = SimpleNamespace(
        input=Namedlist(fromdict={**input, "code": []}),
        output=Namedlist(fromdict=output),
        params=Namedlist(fromdict=params),
        log=Namedlist([str(tmp_path / f"{name}.log")]),
        threads=1,
    )
    run_rule_script(str(REPO / "scripts" / f"{name}.py"), init_globals={"snakemake": smk})


@pytest.fixture(scope="module")
def feature_files(videos, tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("features")
    paths = {}
    for video, fs in videos.items():
        paths[video] = str(folder / f"{video}.h5")
        write_features(paths[video], fs.features, fs.times, fs.attrs)
    return paths


def test_fmri_demo_scripts_chain_into_ingest(tmp_path: Path, feature_files) -> None:
    fmri = {"mask": "mni152_gm", "resolution_mm": 3, "drop_nan_voxels": False}
    roi = str(tmp_path / "truth" / "fmri_roi.nii.gz")
    audio_roi = str(tmp_path / "truth" / "fmri_roi_auditory.nii.gz")
    run_script(
        "demo_roi",
        tmp_path,
        input={},
        output={"visual": roi, "auditory": audio_roi},
        params={"fmri": fmri},
    )
    assert R.nifti_provenance(roi)["step"] == "demo_roi"
    assert R.nifti_provenance(audio_roi)["params"]["roi"] == "auditory"
    audio = {}
    for video, seed in (("A", 11), ("C", 13)):  # stand-in sound features, independent
        fs = fake_features(seed, 4.0 if video == "A" else 34.0, dims=16)
        audio[video] = str(tmp_path / f"audio_{video}.h5")
        write_features(audio[video], fs.features, fs.times, fs.attrs)
    truth = str(tmp_path / "truth" / "sub-01.h5")
    params = {"subject": "sub-01", "modality": "fmri", "seed": [1, "sub-01"]}
    inputs = {"features": feature_files["A"], "roi": [roi]}
    inputs |= {"audio": [audio["A"]], "audio_roi": [audio_roi]}
    run_script("demo_truth", tmp_path, input=inputs, output={"t": truth}, params=params)
    func = tmp_path / "fmriprep" / "sub-01" / "func"
    bold = func / "sub-01_task-movie_run-1_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz"
    run_script(
        "demo_fmri_run",
        tmp_path,
        input={
            "features": [feature_files["C"]],
            "audio": [audio["C"]],
            "truth": truth,
            "roi": roi,
        },
        output={
            "bold": str(bold),
            "sidecar": str(
                func / "sub-01_task-movie_run-1_space-MNI152NLin2009cAsym_desc-preproc_bold.json"
            ),
            "confounds": str(func / "sub-01_task-movie_run-1_desc-confounds_timeseries.tsv"),
            "confounds_sidecar": str(
                func / "sub-01_task-movie_run-1_desc-confounds_timeseries.json"
            ),
            "truth": str(tmp_path / "fmri" / "sub-01_run-1.truth.h5"),
        },
        params={
            "recording": "sub-01_task-movie_run-1",
            "timeline": [["C", 0.0]],
            "tr": 2.0,
            "tail_s": 8,
            "seed": [1, "sub-01_run-1"],
            "artefacts": {"drift_sd": 0, "motion_sd": 0, "jumps": 0, "spike_sd": 0},
        },
    )
    img = nib.load(bold)
    assert img.shape[3] == 21 and img.header.get_zooms()[3] == 2.0
    assert R.nifti_provenance(img)["params"]["tr"] == 2.0
    out = tmp_path / "neural" / "sub-01_run-1.h5"
    run_script(
        "ingest",
        tmp_path,
        input={"recording": str(bold)},
        output={"o": str(out)},
        params={
            "recording_id": "sub-01_run-1",
            "subject": "sub-01",
            "modality": "fmri",
            "tr": float("nan"),  # from the header
            "sampling_rate": float("nan"),
            "fmri": fmri,
        },
    )
    rs = read_responses(out)
    assert rs.responses.shape == (21, 64292) and rs.sampling_rate == 0.5
    # The ingested ROI voxels are the simulated signal plus noise.
    run_truth = R.read_truth(tmp_path / "fmri" / "sub-01_run-1.truth.h5")
    column = {tuple(v): i for i, v in enumerate(rs.voxel_ijk)}
    cols = [column[tuple(v)] for v in run_truth["roi_ijk"]]
    r = R.noise_ceiling(run_truth["signal"], rs.responses[:, cols].astype(np.float64))
    assert np.mean(r) > 0.7
    # ... and the auditory ROI's voxels the sound-driven signal plus noise.
    cols = [column[tuple(v)] for v in run_truth["audio_roi_ijk"]]
    r = R.noise_ceiling(run_truth["audio_signal"], rs.responses[:, cols].astype(np.float64))
    assert np.mean(r) > 0.7


def test_mouse_demo_scripts(tmp_path: Path, feature_files) -> None:
    truth = str(tmp_path / "truth" / "mouse-2.h5")
    run_script(
        "demo_truth",
        tmp_path,
        input={"features": feature_files["A"], "roi": []},
        output={"t": truth},
        params={
            "subject": "mouse-2",
            "modality": "calcium",
            "seed": [1, "mouse-2"],
            "running_share": 0.0,
        },
    )
    table = tmp_path / "mice" / "mouse-2_run-1.tsv"
    outputs = {
        "table": str(table),
        "behavior": str(tmp_path / "mice" / "mouse-2_run-1.behavior.tsv"),
        "truth": str(tmp_path / "mice" / "mouse-2_run-1.truth.h5"),
    }
    params = {
        "timeline": [["A", 0.0], ["B", 5.0]],
        "modality": "calcium",
        "sampling_rate": 10,
        "tail_s": 8,
        "seed": [1, "mouse-2_run-1"],
        "behavior_offset_s": 0.0,
    }
    inputs = {"features": [feature_files["A"], feature_files["B"]], "truth": truth}
    run_script("demo_mouse_run", tmp_path, input=inputs, output=outputs, params=params)
    first = table.read_bytes()
    run_script("demo_mouse_run", tmp_path, input=inputs, output=outputs, params=params)
    assert table.read_bytes() == first  # same seed, same bytes
    df = pd.read_csv(table, sep="\t")
    assert df.shape == (430, 51)
    rec = neural.ingest_table(table, modality="calcium", sampling_rate=10)
    assert rec.responses.shape == (430, 50) and rec.sampling_rate == 10
    run_truth = R.read_truth(outputs["truth"])
    assert run_truth["modality"] == "calcium" and run_truth["expected"].shape == (430, 50)


@pytest.mark.parametrize(
    ("fps", "bin_s", "onsets"),
    [(15.0, 0.1, (0.0, 7.3)), (30.0, 1.0, (2.05, 13.5)), (25.0, 2.0, (0.0, 4.0))],
)
def test_the_simulator_and_the_alignment_agree_on_the_time_contract(fps, bin_s, onsets) -> None:
    """The demo's truth integrates the displayed frames itself (not with neurovid.align):
    both must agree on the contract. Onsets are seconds from the start of the first
    sample; sample i covers [i * T, (i + 1) * T); its feature is the integral of the
    displayed frames' features over that window, divided by T."""
    from neurovid.align import timeline_features
    from neurovid.demo.responses import displayed_features

    gen = np.random.default_rng(int(fps))
    sets = {}
    for name, n_frames in (("A", 97), ("B", 61)):
        times = (np.arange(n_frames) + 0.5) / fps
        attrs = {"fps": fps, "duration": n_frames / fps}
        sets[name] = FeatureSet(gen.standard_normal((n_frames, 3)).astype(np.float32), times, attrs)
    events = [StimulusEvent("A", onsets[0]), StimulusEvent("B", onsets[1])]
    n_bins = int(np.ceil((onsets[1] + 61 / fps + 1.0) / bin_s))
    simulated, covered = displayed_features(events, sets, bin_s, n_bins)
    aligned = timeline_features(events, sets, (np.arange(n_bins) + 0.5) * bin_s)
    np.testing.assert_allclose(aligned, simulated, atol=1e-5)
    assert covered.sum() * bin_s == pytest.approx(97 / fps + 61 / fps)
    # By hand: the first frame of B is on screen during [onset, onset + 1/fps).
    one = {"A": FeatureSet(np.ones((1, 1), np.float32), np.array([0.5 / fps]), {"fps": fps})}
    impulse, _ = displayed_features([StimulusEvent("A", onsets[1])], one, bin_s, n_bins)
    start, stop = onsets[1], onsets[1] + 1 / fps
    expected = np.zeros(n_bins)
    for i in range(n_bins):
        expected[i] = max(0.0, min(stop, (i + 1) * bin_s) - max(start, i * bin_s)) / bin_s
    np.testing.assert_allclose(impulse[:, 0], expected, atol=1e-12)
    assert expected[int(start // bin_s)] > 0 and expected[: int(start // bin_s)].sum() == 0
