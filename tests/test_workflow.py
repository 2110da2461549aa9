"""The demo workflow end to end, incremental re-runs, and bad input through Snakemake.

The demo runs once per session in a fresh copy of the workflow (as a new
clone would be); the other tests read its results or work on copies of it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from neurovid import hardware
from neurovid.demo.responses import noise_ceiling
from neurovid.io import read_features, read_h5, read_responses
from neurovid.scheduler_fix import peak_reservations

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from _workflow import copy_workflow, without_demo_bids  # noqa: E402

pytestmark = pytest.mark.workflow  # one xdist worker runs these files (tests/conftest.py)
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
REPORT = ("--report", "results/report.html", "--report-after-run")  # as in README.md
FMRI_SUBJECTS = ["sub-01", "sub-02", "sub-03", "sub-04"]
MICE = {"mouse-1": "spikes", "mouse-2": "calcium"}


def snakemake(work: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [SNAKEMAKE, "--profile", "profiles/workstation", *args],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def planned_jobs(work: Path, *args: str) -> dict[tuple[str, str], list[str]]:
    """Dry-run: {(rule, first output): all outputs + logs} of every job Snakemake would run."""
    done = snakemake(work, "--dry-run", *args, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    jobs: dict[tuple[str, str], list[str]] = {}
    rule = None
    files: list[str] = []
    for line in (done.stdout + "\n" + done.stderr).splitlines():
        header = re.match(r"^(?:local)?rule (\w+):$", line)
        if header:
            rule, files = header.group(1), []
            continue
        field = re.match(r"^    (output|log): (.*)$", line)
        if rule and field:
            files += [f.strip() for f in field.group(2).split(",")]
        if rule and line.startswith("    jobid:"):
            jobs[(rule, files[0] if files else "")] = files
            rule = None
    return jobs


def snapshot(work: Path) -> dict[str, int]:
    return {
        str(p.relative_to(work)): p.stat().st_mtime_ns
        for p in (work / "results").rglob("*")
        if p.is_file()
    }


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    work = copy_workflow(tmp_path_factory.mktemp("demo") / "workflow")
    start = time.perf_counter()
    done = snakemake(work, *REPORT)
    wall = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-6000:]
    print(f"\ndemo end to end: {wall:.0f} s")
    return SimpleNamespace(work=work, results=work / "results", wall=wall, log=done.stderr)


def test_demo_builds_the_report(demo: SimpleNamespace) -> None:
    # Wall time is a benchmark (bench/demo.py), not an assertion: a loaded machine must not fail it.
    report = demo.results / "report.html"
    assert report.stat().st_size > 100_000
    html = report.read_text(errors="replace")
    for figure in ("surface.png", "glass_brain.png", "score_hist.png", "sub-01.png", "mouse-1.png"):
        assert figure in html, f"{figure} missing from the report"


def test_demo_jobs_never_claim_more_cores_or_gpus_than_provided(demo: SimpleNamespace) -> None:
    # Snakemake 9.15 alone ran a lone ready job unreserved: 5 threads on 2 cores (neurovid.scheduler_fix).
    peak = peak_reservations(demo.log)
    print(f"peak reserved: {peak}")
    assert peak["cores"] >= 1 and peak["peak_cores"] >= 1
    assert peak["peak_cores"] <= peak["cores"] and peak["peak_gpu"] <= peak["gpu"]


def test_demo_outputs_follow_the_contracts(demo: SimpleNamespace) -> None:
    probe = json.loads((demo.results / "video/bigbuckbunny/probe.json").read_text())
    assert json.dumps(probe).count("audio") >= 1  # the real clip has an audio track, dropped later
    features = read_features(demo.results / "features/motion_energy/gen03.h5")
    assert features.features.shape[0] == len(features.times) == 60 * 15
    assert np.all(np.diff(features.times) > 0) and features.times[-1] < features.duration <= 60.1
    assert features.attrs["extractor"] == "motion_energy" and "provenance" in features.attrs
    responses = read_responses(demo.results / "neural/sub-01_task-movie_run-1.h5")
    assert responses.responses.shape[1] == int(responses.mask.sum()) == 64292
    assert responses.attrs["modality"] == "fmri" and responses.sampling_rate == 1.0
    table = pd.read_csv(demo.results / "encoding/me_ridge/mouse-1/scores.tsv", sep="\t")
    assert len(table) == 50 and {"target", "r", "r2", "alpha"} <= set(table.columns)


FMRI_MODEL = "me_sound"  # the demo's fMRI model: picture + sound


def demo_rois(results: Path) -> np.ndarray:
    """The simulated ROIs: visual (motion energy) and auditory (the soundtrack)."""
    truth = results / "demo/truth"
    visual = nib.load(truth / "fmri_roi.nii.gz").get_fdata() > 0
    return visual | (nib.load(truth / "fmri_roi_auditory.nii.gz").get_fdata() > 0)


def roi_and_scores(results: Path, subject: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    arrays, _ = read_h5(results / f"encoding/{FMRI_MODEL}/{subject}/scores.h5")
    r_map = nib.load(results / f"encoding/{FMRI_MODEL}/{subject}/r.nii.gz").get_fdata()
    return demo_rois(results), arrays["mask"] > 0, r_map


def test_demo_roi_voxels_score_higher_than_the_rest(demo: SimpleNamespace) -> None:
    for subject in FMRI_SUBJECTS:
        roi, mask, r_map = roi_and_scores(demo.results, subject)
        roi_mean = float(r_map[roi & mask].mean())
        rest_mean = float(r_map[mask & ~roi].mean())
        print(
            f"{subject}: mean held-out r ROI {roi_mean:.3f} ({(roi & mask).sum()} voxels), non-ROI {rest_mean:.3f}"
        )
        assert roi_mean > rest_mean + 0.2
        assert abs(rest_mean) < 0.05


def test_demo_group_fdr_map_recovers_the_roi(demo: SimpleNamespace) -> None:
    roi, mask, _ = roi_and_scores(demo.results, FMRI_SUBJECTS[0])
    significant = nib.load(demo.results / f"stats/{FMRI_MODEL}/fdr_mask.nii.gz").get_fdata() > 0
    dice = 2 * (significant & roi).sum() / (significant.sum() + roi.sum())
    summary = json.loads((demo.results / f"stats/{FMRI_MODEL}/summary.json").read_text())
    print(
        f"Dice(FDR map, ROI) = {dice:.3f}; {significant.sum()} significant voxels, ROI {roi.sum()}"
    )
    assert summary["n_subjects"] == 4
    assert dice >= 0.7


def mouse_noise_ceiling(results: Path, mouse: str, runs=(1, 2, 3, 4)) -> np.ndarray:
    """Per-neuron r between the simulation's expected response and the recorded one, mean over runs."""
    per_run = []
    for run in runs:
        recorded = read_responses(results / f"neural/{mouse}_run-{run}.h5").responses
        truth, _ = read_h5(results / f"demo/mice/{mouse}_run-{run}.truth.h5")
        per_run.append(noise_ceiling(truth["expected"], recorded))
    return np.nanmean(per_run, axis=0)


def running_driven(results: Path, mouse: str) -> np.ndarray:
    """The neurons the simulation drives by running speed instead of the stimulus."""
    truth, _ = read_h5(results / f"demo/truth/{mouse}.h5")
    return truth["running_driven"].astype(bool)


def test_demo_mice_reach_the_noise_ceiling(demo: SimpleNamespace) -> None:
    for mouse, modality in MICE.items():
        running = running_driven(demo.results, mouse)
        assert running.sum() == 15  # demo running_share 0.3 of 50 neurons
        ceiling = mouse_noise_ceiling(demo.results, mouse)
        # The stimulus model reaches the ceiling of the stimulus-driven neurons, and
        # stimulus + running speed that of all neurons.
        for model, neurons in (("me_ridge", ~running), ("me_body", slice(None))):
            arrays, attrs = read_h5(demo.results / f"encoding/{model}/{mouse}/scores.h5")
            assert attrs["modality"] == modality
            model_r = float(np.nanmean(arrays["r"][neurons]))
            print(
                f"{mouse} ({modality}) {model}: mean held-out r {model_r:.3f}, noise ceiling {ceiling[neurons].mean():.3f}"
            )
            assert abs(model_r - ceiling[neurons].mean()) <= 0.1
        # Runs 3 and 4 repeat one stimulus: the pipeline's explainable variance estimates the
        # simulation's true ceiling (r between expected and recorded response, squared) of
        # the stimulus-driven neurons; running is not repeated with the stimulus, so the
        # running-driven neurons' variance is not explainable by it.
        arrays, attrs = read_h5(demo.results / f"encoding/me_ridge/{mouse}/scores.h5")
        assert attrs["repeat_runs"] == [f"{mouse}_run-3+{mouse}_run-4"]
        true_ev = mouse_noise_ceiling(demo.results, mouse, runs=(3, 4)) ** 2
        ev = arrays["ev"]
        print(
            f"{mouse}: explainable variance {np.nanmean(ev[~running]):.3f} (stimulus-driven; true {true_ev[~running].mean():.3f}), {np.nanmean(ev[running]):.3f} (running-driven; their true ceiling {true_ev[running].mean():.3f})"
        )
        assert abs(np.nanmean(ev[~running]) - true_ev[~running].mean()) <= 0.05
        assert np.nanmean(ev[running]) < 0.25 * true_ev[running].mean()
        # Above the ceiling by more than the estimate's standard error (across neurons)
        # fails; me_body is held to it by its fit without the running speed.
        for model in ("me_ridge", "me_body"):
            arrays, attrs = read_h5(demo.results / f"encoding/{model}/{mouse}/scores.h5")
            assert attrs["ceiling_fit"] == (
                "joint" if model == "me_ridge" else "without behavior_channels"
            )
            fraction = arrays["r2_ceiling_fraction"][~running]
            fraction = fraction[np.isfinite(fraction)]
            standard_error = fraction.std(ddof=1) / np.sqrt(len(fraction))
            print(
                f"{mouse} {model}: share of the ceiling {fraction.mean():.3f} ± {standard_error:.3f} (SE)"
            )
            assert 0.6 <= fraction.mean() <= 1 + standard_error


def test_demo_running_neurons_have_the_largest_behavior_unique_variance(
    demo: SimpleNamespace,
) -> None:
    from sklearn.metrics import roc_auc_score

    for mouse in MICE:
        running = running_driven(demo.results, mouse)
        table = pd.read_csv(demo.results / f"encoding/me_body/{mouse}/scores.tsv", sep="\t")
        assert {"unique_motion_energy", "unique_behavior_channels", "shared"} <= set(table)
        behavior = table["unique_behavior_channels"].to_numpy()
        picture = table["unique_motion_energy"].to_numpy()
        auc = roc_auc_score(running, behavior)
        print(
            f"{mouse}: unique R² of the running speed {behavior[running].mean():.3f} (running-driven) vs {behavior[~running].mean():.3f} (others), of motion energy {picture[running].mean():.3f} vs {picture[~running].mean():.3f}; AUC {auc:.3f}"
        )
        assert auc >= 0.9
        assert roc_auc_score(~running, picture) >= 0.9
        # the per-neuron figure counts the neurons each space explains alone
        figure = demo.results / "figures/me_body/variance_targets.png"
        counted = json.loads(Image.open(figure).info["Description"])["plotted"]
        label = f"{mouse} ({MICE[mouse]})"
        assert counted[label]["behavior_channels"] == int(np.sum(behavior > 0.05))
    html = (demo.results / "report.html").read_text(errors="replace")
    assert "me_body" in html and "variance_targets.png" in html


def test_demo_lstm_uses_the_ridge_folds_and_is_compared_in_the_report(
    demo: SimpleNamespace,
) -> None:
    for mouse in MICE:
        folder = demo.results / f"encoding/me_lstm/{mouse}"
        lstm = pd.read_csv(folder / "metrics.tsv", sep="\t")
        ridge = pd.read_csv(demo.results / f"encoding/me_ridge/{mouse}/metrics.tsv", sep="\t")
        columns = ["fold", "held_out_run", "n_train", "n_test"]
        pd.testing.assert_frame_equal(lstm[columns], ridge[columns])
        # Measured on the demo: 0.36 vs 0.37 (spikes), 0.52 vs 0.56 (calcium); neither sees
        # the running speed that drives 30% of the neurons (me_body does).
        assert lstm["mean_r"].iloc[-1] >= ridge["mean_r"].iloc[-1] - 0.1
        for fold in ("fold-1", "fold-2", "fold-3", "final"):
            assert (folder / "training" / fold / "best.pt").is_file()
            assert (folder / "training" / fold / "loss_curve.png").is_file()
    html = (demo.results / "report.html").read_text(errors="replace")
    assert "model_comparison.png" in html


def test_demo_behavior_stage_recovers_the_rendered_truth(demo: SimpleNamespace) -> None:
    from neurovid.behavior.evaluation import match_segments, read_annotations
    from neurovid.demo.behavior import path_length, read_truth

    results = demo.results
    truth = read_truth(results / "demo/behavior/openfield-2.truth.h5")
    summary = json.loads((results / "kinematics/openfield-2.json").read_text())
    true_cm = path_length(truth.centroid()) / truth.px_per_cm
    # DLC-like noise and dropouts on the pose; distance counts moving frames (kinematics docs).
    assert summary["distance_cm"] == pytest.approx(true_cm, rel=0.02)
    assert summary["px_per_cm"] == pytest.approx(truth.px_per_cm, rel=1e-6)
    assert summary["time_in_centre_s"] + summary["time_in_border_s"] == pytest.approx(40, abs=0.1)
    kinematics = pd.read_csv(results / "kinematics/openfield-2.csv")
    assert len(kinematics) == truth.n_frames == 1200 and "speed_cm_per_s" in kinematics

    frames = pd.read_csv(results / "behavior/openfield-2.frames.csv")
    assert len(frames) == 1200
    probabilities = frames[["p_grooming", "p_other", "p_rearing"]].sum(axis=1)
    assert np.allclose(probabilities, 1, atol=1e-5)

    # Stage 1 finds the bouts (label-agnostic IoU >= 0.5); stage 2's labels come from a
    # random-weight Qwen2-VL in the demo, so only their form is checked.
    segments = pd.read_csv(results / "behavior/openfield-2.segments.csv")
    annotations = read_annotations(results / "demo/behavior/openfield-2.annotations.csv", 1200)
    anonymous = {"label": "action"}
    matched = match_segments(segments.assign(**anonymous), annotations.assign(**anonymous), 0.5)
    assert len(matched) / len(annotations) >= 0.75, (segments, annotations)
    assert set(segments["label"]) <= {"rearing", "grooming"}
    assert segments["score"].between(0, 1).all()

    evaluation = pd.read_csv(results / "behavior/evaluation.tsv", sep="\t")
    pooled = evaluation[(evaluation["video"] == "openfield-2") & (evaluation["label"] == "all")]
    assert int(pooled["n_true"].iloc[0]) == len(annotations)
    assert int(pooled["n_pred"].iloc[0]) == len(segments)
    metrics = pd.read_csv(results / "behavior/classifier/model/metrics.tsv", sep="\t")
    assert list(metrics["class"]) == ["grooming", "other", "rearing", "macro"]
    html = (results / "report.html").read_text(errors="replace")
    for figure in ("ethogram.png", "trajectory.png", "speed.png", "segments.png", "confusion.png"):
        assert figure in html, f"{figure} missing from the report"


@pytest.fixture(scope="module")
def scratch(demo: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the finished demo (modification times kept) to change and re-run."""
    work = tmp_path_factory.mktemp("rerun") / "workflow"
    shutil.copytree(demo.work, work, symlinks=True)
    return work


def demo_runs_showing(video: str) -> list[str]:
    """Runs whose alignment reads the video's features. Mouse-1's timelines are in NWB
    files the demo makes: not read when the DAG is built, so each of its runs depends on
    every stimulus video (rules/common.smk timeline_videos)."""
    run = {"gen01": 1, "bigbuckbunny": 1, "bikes": 2, "gen02": 2, "gen03": 3, "gen04": 3}[video]
    runs = [f"{s}_task-movie_run-{run}" for s in FMRI_SUBJECTS] + [f"mouse-2_run-{run}"]
    if run == 3:
        runs.append("mouse-2_run-4")  # run 4 repeats run 3
    return runs + [f"mouse-1_run-{r}" for r in (1, 2, 3, 4)]


# The demo's partitioned models and their feature spaces.
PARTITIONED = {
    "me_sound": ("motion_energy", "audio_mel"),
    "me_body": ("motion_energy", "behavior_channels"),
}
MODEL_COMPARISON = ("figure_model_comparison", "results/figures/model_comparison.png")
SUMMARY = ("summary", "results/summary/summary.tsv")


def encoding_downstream(
    model: str, subjects: list[str], rule: str = "encode"
) -> set[tuple[str, str]]:
    jobs = {(rule, f"results/encoding/{model}/{s}/scores.h5") for s in subjects}
    jobs |= {("figure_traces", f"results/figures/{model}/traces/{s}.png") for s in subjects}
    jobs.add(("figure_score_hist", f"results/figures/{model}/score_hist.png"))
    fmri = [s for s in subjects if s.startswith("sub-")]
    if fmri:
        jobs |= {("score_maps", f"results/encoding/{model}/{s}/r.nii.gz") for s in fmri}
        jobs |= {
            ("group_stats", f"results/stats/{model}/t.nii.gz"),
            ("figure_surface", f"results/figures/{model}/surface.png"),
            ("figure_glass_brain", f"results/figures/{model}/glass_brain.png"),
        }
    spaces = PARTITIONED.get(model)
    if spaces:  # a map per part and fMRI subject, their mean maps, the partition figure
        parts = [f"unique_{space}" for space in spaces] + ["shared"]
        jobs |= {
            ("partition_map", f"results/encoding/{model}/{s}/{part}.nii.gz")
            for s in fmri
            for part in parts
        }
        if fmri:
            jobs.add(("figure_variance_maps", f"results/figures/{model}/variance_maps.png"))
        jobs.add(("figure_variance_partition", f"results/figures/{model}/variance_partition.png"))
    return jobs


def test_touching_one_video_reruns_exactly_its_downstream_jobs(scratch: Path) -> None:
    time.sleep(1.1)
    (scratch / "results/demo/stimuli/gen01.mp4").touch()
    jobs = planned_jobs(scratch)
    expected = {
        ("probe", "results/video/gen01/probe.json"),
        ("standardize", "results/video/gen01/standard.mp4"),
        ("motion_energy", "results/features/motion_energy/gen01.h5"),
        ("all", ""),
    }
    expected |= {
        ("align", f"results/aligned/motion_energy/{r}.h5") for r in demo_runs_showing("gen01")
    }
    # its soundtrack too (the stimulus file changed): audio_mel and me_sound downstream
    expected.add(("audio_mel", "results/features/audio_mel/gen01.h5"))
    expected |= {
        ("align", f"results/aligned/audio_mel/{r}.h5")
        for r in demo_runs_showing("gen01")
        if r.startswith("sub-")
    }
    expected |= encoding_downstream("me_sound", FMRI_SUBJECTS)
    expected.add(SUMMARY)
    expected |= encoding_downstream("me_ridge", list(MICE))
    expected |= encoding_downstream("me_body", list(MICE))
    expected |= encoding_downstream("me_lasso", list(MICE), rule="encode_lasso")
    expected |= encoding_downstream("me_lstm", list(MICE), rule="encode_trained")
    expected.add(MODEL_COMPARISON)
    assert set(jobs) == expected

    before = snapshot(scratch)
    features_before = (scratch / "results/features/motion_energy/gen01.h5").read_bytes()
    done = snakemake(scratch, *REPORT)
    assert done.returncode == 0, done.stderr[-4000:]
    after = snapshot(scratch)
    changed = {path for path, mtime in after.items() if before.get(path) != mtime}
    allowed = {f for files in jobs.values() for f in files} | {"results/report.html"}
    allowed |= {p for p in changed if p.startswith("results/benchmarks/")}
    # Files inside a planned directory() output (the LSTM's training/) are planned too.
    unexpected = sorted(
        p for p in changed - allowed if not any(p.startswith(f"{f}/") for f in allowed)
    )
    assert not unexpected, unexpected[:20]
    for files in jobs.values():
        for f in files:
            if (
                f.startswith("results/")
                and not f.startswith("results/logs/")
                and (scratch / f).is_file()
            ):
                assert f in changed, f"{f} was planned but not rewritten"
    untouched = "results/features/motion_energy/gen02.h5"
    assert untouched in before and untouched not in changed
    # Same inputs, same bytes: the recomputed features are identical.
    assert (scratch / "results/features/motion_energy/gen01.h5").read_bytes() == features_before


def test_changing_an_encoding_parameter_reruns_only_encoding_and_after(scratch: Path) -> None:
    config = (scratch / "config.yaml").read_text()
    changed = config.replace("      pca_variance: 0.9\n", "      pca_variance: 0.85\n")  # me_ridge
    assert changed != config
    (scratch / "config.yaml").write_text(changed)
    jobs = planned_jobs(scratch)
    expected = encoding_downstream("me_ridge", list(MICE)) | {("all", "")}
    expected |= {MODEL_COMPARISON, SUMMARY}
    assert set(jobs) == expected


def make_project(root: Path, videos: list[tuple[str, str]], recording: str = "v1") -> Path:
    work = copy_workflow(root / "workflow")
    (work / "data").mkdir()
    (work / "data/rec.tsv").write_text(
        "time\tn0\n" + "".join(f"{(i + 0.5) / 10}\t{i % 3}\n" for i in range(100))
    )
    (work / "videos.tsv").write_text(
        "video_id\tpath\tkind\n" + "".join(f"{v}\t{p}\tstimulus\n" for v, p in videos)
    )
    (work / "recordings.tsv").write_text(
        "recording_id\tsubject\tmodality\tpath\tstimulus\tsampling_rate\n"
        f"r1\ts1\tspikes\tdata/rec.tsv\t{recording}\t10\nr2\ts1\tspikes\tdata/rec.tsv\t{recording}\t10\n"
    )
    config = (work / "config.yaml").read_text()
    config = config.replace("videos: demo/videos.tsv", "videos: videos.tsv").replace(
        "recordings: demo/recordings.tsv", "recordings: recordings.tsv"
    )
    (work / "config.yaml").write_text(without_demo_bids(config))
    return work


def test_own_sheets_plan_no_demo_jobs(tmp_path: Path) -> None:
    work = make_project(tmp_path, [("v1", "data/rec.tsv")])
    jobs = planned_jobs(work)
    rules = {rule for rule, _ in jobs}
    assert not {r for r in rules if r.startswith("demo_")}
    assert ("probe", "results/video/v1/probe.json") in jobs
    assert ("encode", "results/encoding/me_ridge/s1/scores.h5") in jobs


def test_text_file_named_mp4_fails_in_the_workflow_without_partial_output(tmp_path: Path) -> None:
    work = make_project(tmp_path, [("v1", "data/notes.mp4")])
    (work / "data/notes.mp4").write_text("these are my notes, not a video\n")
    done = snakemake(work, "results/video/v1/standard.mp4", timeout=300)
    assert done.returncode != 0
    log = (work / "results/logs/probe/v1.log").read_text()
    assert "data/notes.mp4" in log
    assert not (work / "results/video/v1/probe.json").exists()
    assert not list((work / "results/video").rglob("*.json"))


def test_duplicate_ids_stop_the_workflow_before_any_job(tmp_path: Path) -> None:
    work = make_project(tmp_path, [("v1", "data/rec.tsv"), ("v1", "data/rec.tsv")])
    done = snakemake(work, "--dry-run", timeout=120)
    assert done.returncode != 0
    assert (
        "videos.tsv [video_id]: video_id 'v1' appears 2 times (rows 2, 3)"
        in done.stdout + done.stderr
    )
    assert not (work / "results").exists()


def job_resources(dry_run_output: str) -> dict[str, list[str]]:
    """{rule: [resources line of each planned job]} from a dry-run's output."""
    found: dict[str, list[str]] = {}
    rule = None
    for line in dry_run_output.splitlines():
        header = re.match(r"^(?:local)?rule (\w+):$", line)
        if header:
            rule = header.group(1)
        elif rule and line.strip().startswith("resources:"):
            found.setdefault(rule, []).append(line.strip())
    return found


def test_gpu_auto_reserves_no_gpu_on_a_machine_without_one(tmp_path: Path) -> None:
    # Reserving the workstation's one `gpu` slot for jobs that run on the CPU would run every
    # GPU-capable job (encode, behavior models) one at a time on a CPU-only machine.
    if hardware.gpu_visible():
        pytest.skip("this machine sees a GPU driver")
    work = make_project(tmp_path, [("v1", "data/rec.tsv")])
    done = snakemake(work, "--dry-run", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    encode = job_resources(done.stdout + done.stderr)["encode"]
    assert encode and all("gpu=0" in line for line in encode), encode
    forced = snakemake(work, "--dry-run", "--config", "gpu=True", timeout=300)
    assert all("gpu=1" in line for line in job_resources(forced.stdout + forced.stderr)["encode"])
    # On a cluster the login node says nothing about the nodes: `auto` is refused there.
    cluster = subprocess.run(
        [SNAKEMAKE, "--profile", "profiles/slurm", "--dry-run", "--config", "seed=1"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert cluster.returncode != 0
    said = cluster.stdout + cluster.stderr
    assert "config gpu is auto, but the profile names a SLURM partition" in said
    assert "add gpu=True slurm_gpu_partition=<your GPU partition> to it" in said


def test_changing_a_kinematics_parameter_reruns_only_kinematics_and_its_figures(
    demo: SimpleNamespace, scratch: Path
) -> None:
    config = (demo.work / "config.yaml").read_text()  # undo earlier tests' edits
    changed = config.replace("moving_threshold_cm_per_s: 1.5", "moving_threshold_cm_per_s: 2.0")
    assert changed != config
    (scratch / "config.yaml").write_text(changed)
    jobs = planned_jobs(scratch)
    videos = ["openfield-1", "openfield-2"]
    assert set(jobs) == {
        *{("kinematics", f"results/kinematics/{v}.csv") for v in videos},
        *{("figure_behavior", f"results/figures/behavior/{v}/ethogram.png") for v in videos},
        *{("pose_nwb", f"results/nwb/{v}.nwb") for v in videos},  # pose + kinematics in NWB
        ("all", ""),
    }


def planned_after_editing(work: Path, module: str) -> dict[tuple[str, str], list[str]]:
    """Jobs a dry-run plans once a library module's text changes (the edit is undone after)."""
    path = work / "src/neurovid" / module
    original = path.read_text()
    path.write_text(original + "\n# an edit that changes the file\n")
    try:
        return planned_jobs(work)
    finally:
        path.write_text(original)


def test_editing_the_ridge_solver_reruns_exactly_the_jobs_that_run_it(
    demo: SimpleNamespace, scratch: Path
) -> None:
    shutil.copy2(demo.work / "config.yaml", scratch / "config.yaml")  # undo earlier tests' edits
    assert set(planned_jobs(scratch)) == set()  # nothing to do before the edit
    jobs = planned_after_editing(scratch, "ridge.py")
    # The encode scripts reach ridge.py through neurovid.encoding (LASSO and the LSTM too:
    # they share its cross-validation); nothing upstream of encoding does.
    expected = encoding_downstream("me_ridge", list(MICE))
    expected |= encoding_downstream("me_body", list(MICE))
    expected |= encoding_downstream("me_lasso", list(MICE), rule="encode_lasso")
    expected |= encoding_downstream("me_lstm", list(MICE), rule="encode_trained")
    expected |= encoding_downstream("me_sound", FMRI_SUBJECTS)
    expected |= {MODEL_COMPARISON, SUMMARY, ("all", "")}
    assert set(jobs) == expected
    # Undone, the digest is the old one again: nothing to do.
    assert set(planned_jobs(scratch)) == set()


def test_editing_a_module_no_rule_imports_schedules_nothing(scratch: Path) -> None:
    (scratch / "src/neurovid/unused_helpers.py").write_text("def helper():\n    return 1\n")
    try:
        assert set(planned_after_editing(scratch, "unused_helpers.py")) == set()
    finally:
        (scratch / "src/neurovid/unused_helpers.py").unlink()


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_run_killed_mid_job_resumes_to_the_uninterrupted_results(
    demo: SimpleNamespace, tmp_path: Path
) -> None:
    """kill -9 leaves Snakemake's lock; README "After a crash": --unlock, then the same command."""
    work = tmp_path / "workflow"
    shutil.copytree(demo.work, work, symlinks=True)
    target = "results/encoding/me_ridge/mouse-1/scores.h5"
    uninterrupted = (work / target).read_bytes()
    log = work / "results/logs/encode/me_ridge/mouse-1.log"
    log.unlink()
    # (the target before --forcerun, which takes several values)
    command = [SNAKEMAKE, target, "--profile", "profiles/workstation", "--forcerun", "encode"]
    run = subprocess.Popen(
        command,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the job dies with Snakemake
    )
    try:
        wait_for(lambda: log.is_file() and "job environment" in log.read_text(), 120, "the job")
        time.sleep(2)  # well inside the job (about 15 s on 2 cores)
    finally:
        os.killpg(run.pid, 9)
        run.wait(timeout=30)
    assert not (work / target).exists(), "the job finished before the kill: nothing was tested"
    locked = snakemake(work, target, timeout=300)
    assert locked.returncode != 0
    assert "LockException" in locked.stdout + locked.stderr
    assert "--unlock" in locked.stdout + locked.stderr
    assert snakemake(work, "--unlock", timeout=120).returncode == 0
    resumed = snakemake(work, target, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert (work / target).read_bytes() == uninterrupted


@pytest.fixture(scope="module")
def doors(demo: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hard-linked copy of the finished demo (jobs replace files, never edit them)."""
    work = tmp_path_factory.mktemp("doors") / "workflow"
    shutil.copytree(demo.work, work, symlinks=True, copy_function=os.link)
    return work


DEMO_PLAN = {1: "bigbuckbunny@0;gen01@6", 2: "bikes@0;gen02@11", 3: "gen03@0;gen04@60"}


def test_the_bids_door_and_a_sheet_give_the_same_features_and_scores(doors: Path) -> None:
    # sub-01's runs once more, written by hand into a recordings sheet from the demo's plan
    derived = pd.read_csv(doors / "results/sheets/recordings.tsv", sep="\t").set_index(
        "recording_id"
    )
    rows = []
    for run, stimulus in DEMO_PLAN.items():
        bids_run = derived.loc[f"sub-01_task-movie_run-{run}"]
        rows.append(
            {"recording_id": f"sheet-01_run-{run}", "subject": "sheet-01", "modality": "fmri"}
            | {"path": bids_run["path"], "stimulus": stimulus, "tr": 1}
            | {"confounds": bids_run["confounds"]}
        )
    sheet = pd.read_csv(doors / "demo/recordings.tsv", sep="\t", dtype=str)
    pd.concat([sheet, pd.DataFrame(rows)]).to_csv(doors / "both.tsv", sep="\t", index=False)
    aligned = "results/aligned/motion_energy/{}.h5"
    targets = [aligned.format(f"sheet-01_run-{run}") for run in DEMO_PLAN]
    done = snakemake(
        doors,
        *targets,
        f"results/encoding/{FMRI_MODEL}/sheet-01/scores.h5",
        "--config",
        "recordings=both.tsv",
    )
    assert done.returncode == 0, done.stderr[-4000:]
    for run in DEMO_PLAN:
        by_sheet = read_features(doors / aligned.format(f"sheet-01_run-{run}"))
        by_bids = read_features(doors / aligned.format(f"sub-01_task-movie_run-{run}"))
        np.testing.assert_array_equal(by_sheet.features, by_bids.features)
        np.testing.assert_array_equal(by_sheet.times, by_bids.times)
    by_sheet, _ = read_h5(doors / f"results/encoding/{FMRI_MODEL}/sheet-01/scores.h5")
    by_bids, _ = read_h5(doors / f"results/encoding/{FMRI_MODEL}/sub-01/scores.h5")
    np.testing.assert_array_equal(by_sheet["r"], by_bids["r"])
    np.testing.assert_array_equal(by_sheet["alpha"], by_bids["alpha"])


def test_denoising_the_demo_recovers_the_roi_better_than_z_scoring_alone(
    doors: Path, demo: SimpleNamespace
) -> None:
    off = {"detrend_order": None, "high_pass_s": None, "motion": "none", "acompcor": 0}
    off["fd_threshold_mm"] = None
    (doors / "off.yaml").write_text(yaml.safe_dump({"neural": {"fmri": {"denoise": off}}}))
    subjects = FMRI_SUBJECTS[:2]
    on = {s: roi_and_scores(demo.results, s) for s in subjects}
    targets = [f"results/encoding/{FMRI_MODEL}/{s}/r.nii.gz" for s in subjects]
    done = snakemake(doors, *targets, "--configfile", "off.yaml")
    assert done.returncode == 0, done.stderr[-4000:]
    for subject in subjects:
        roi, mask, r_on = on[subject]
        _, _, r_off = roi_and_scores(doors / "results", subject)
        on_mean, off_mean = float(r_on[roi & mask].mean()), float(r_off[roi & mask].mean())
        print(
            f"{subject}: ROI mean held-out r, denoised {on_mean:.3f}, not denoised {off_mean:.3f}"
        )
        assert on_mean > off_mean + 0.1
    censored = json.loads((demo.results / f"encoding/{FMRI_MODEL}/sub-01/scores.json").read_text())[
        "censored_volumes"
    ]
    print(f"sub-01 censored volumes per run: {censored}")
    assert sum(censored.values()) > 0


# me_sound (motion_energy + audio_mel, variance partitioning): each space's unique held-out
# R² map against the ROI that space drives in the simulation. Threshold 0.05: voxels that
# neither space drives scatter around 0 (a few thousand of the 64k exceed 0.02 by chance),
# the ROIs' own space reaches 0.4-0.5 (library-level run of one demo subject: Dice 0.96
# visual, 0.99 auditory at 0.05; 0.55 at 0.02).
SOUND_MODEL = "me_sound"
SPACE_ROIS = {"motion_energy": "fmri_roi.nii.gz", "audio_mel": "fmri_roi_auditory.nii.gz"}
UNIQUE_THRESHOLD = 0.05


def test_demo_sound_and_picture_each_explain_their_own_roi(demo: SimpleNamespace) -> None:
    truth = demo.results / "demo/truth"
    rois = {space: nib.load(truth / name).get_fdata() > 0 for space, name in SPACE_ROIS.items()}
    assert not (rois["motion_energy"] & rois["audio_mel"]).any()
    for subject in FMRI_SUBJECTS:
        folder = demo.results / f"encoding/{SOUND_MODEL}/{subject}"
        unique = {
            space: np.nan_to_num(nib.load(folder / f"unique_{space}.nii.gz").get_fdata())
            for space in SPACE_ROIS
        }
        for own, other in (("motion_energy", "audio_mel"), ("audio_mel", "motion_energy")):
            roi = rois[own]
            own_mean, other_mean = float(unique[own][roi].mean()), float(unique[other][roi].mean())
            found = unique[own] > UNIQUE_THRESHOLD
            dice = 2 * (found & roi).sum() / (found.sum() + roi.sum())
            print(
                f"{subject}, {own} ROI ({roi.sum()} voxels): mean unique R² {own} {own_mean:.3f}, "
                f"{other} {other_mean:.3f}; unique {own} > {UNIQUE_THRESHOLD}: {found.sum()} "
                f"voxels, Dice with the ROI {dice:.3f}"
            )
            assert own_mean > other_mean + 0.1
            assert dice >= 0.6
