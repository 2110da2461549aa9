"""Body feature spaces (neurovid.body): the behavior video and channels on the recording's clock.

Planted steps and impulses on the behavior clock must land on the response samples
the sheet's ``behavior_offset_s`` says; the NWB and table routes of the behavior
channels must agree; bad input stops with messages naming the file, field and fix.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import dry_run, namedlist, planned_inputs, run_script

from neurovid import body, nwb, sheets
from neurovid.align import timeline_features
from neurovid.errors import InputError
from neurovid.io import FeatureSet, read_features, read_responses, write_features, write_responses
from neurovid.sheets import StimulusEvent

REPO = Path(__file__).resolve().parents[1]
RATE = 10.0  # Hz, response samples
N_SAMPLES = 100  # a 10 s recording
FPS = 30.0  # behavior camera
SAMPLE_TIMES = (np.arange(N_SAMPLES) + 0.5) / RATE


def camera_features(seconds: float, impulse_s: float | None = None) -> FeatureSet:
    """Per-frame features of a behavior video: column 0 is 1 on the frames of
    [impulse_s, impulse_s + 0.1) (three frames), column 1 is the video time."""
    n = int(round(seconds * FPS))
    times = (np.arange(n) + 0.5) / FPS
    values = np.zeros((n, 2))
    if impulse_s is not None:
        start = int(round(impulse_s * FPS))
        values[start : start + 3, 0] = 1.0
    values[:, 1] = times
    return FeatureSet(values.astype(np.float32), times, {"duration": n / FPS})


@pytest.mark.parametrize("offset", [-2.5, -0.7, 0.0, 1.5])
def test_behavior_offset_places_a_planted_impulse_on_the_right_sample(offset: float) -> None:
    # The impulse is at 5.0 s of the behavior video = offset + 5.0 s on the recording's clock.
    covered = offset <= 0  # a video starting after the recording leaves its start uncovered
    # (a stimulus-like timeline then: the video must end within the recording)
    fs = camera_features(20.0 if covered else 8.0, impulse_s=5.0)
    events = [StimulusEvent("cam", offset)]
    out = timeline_features(events, {"cam": fs}, SAMPLE_TIMES, require_cover=covered)
    expected = int(round((offset + 5.0) * RATE))
    assert int(np.argmax(out[:, 0])) == expected
    np.testing.assert_allclose(out[expected, 0], 1.0, atol=1e-5)
    np.testing.assert_allclose(np.delete(out[:, 0], expected), 0.0, atol=1e-5)
    # the video's own clock at a sample's centre = recording time - offset
    inside = (SAMPLE_TIMES >= offset + 0.05) & (SAMPLE_TIMES <= offset + fs.duration - 0.05)
    np.testing.assert_allclose(out[inside, 1], SAMPLE_TIMES[inside] - offset, atol=1e-4)
    if not covered:
        with pytest.raises(InputError, match=r"0\.000 to 1\.500 s of the recording is not covered"):
            timeline_features(events, {"cam": fs}, SAMPLE_TIMES, require_cover=True)


def kinematics_table(n_frames: int, step_s: float) -> pd.DataFrame:
    """A kinematics table (rule kinematics) whose speed steps from 2 to 10 cm/s at step_s,
    with tracking lost on frames 30-32 (NaN)."""
    time_s = np.arange(n_frames) / FPS
    speed = np.where(time_s >= step_s, 10.0, 2.0)
    table = pd.DataFrame(
        {
            "frame": np.arange(n_frames),
            "time_s": time_s,
            "x_cm": np.linspace(0, 30, n_frames),
            "y_cm": np.full(n_frames, 5.0),
            "speed_cm_per_s": speed,
            "acceleration_cm_per_s2": np.zeros(n_frames),
            "tangential_acceleration_cm_per_s2": np.zeros(n_frames),
            "distance_cm": np.zeros(n_frames),
            "moving": np.ones(n_frames),
        }
    )
    table.loc[30:32, ["x_cm", "y_cm", "speed_cm_per_s"]] = np.nan
    return table


def responses_file(path: Path, behavior=None, names=None) -> Path:
    write_responses(
        path,
        np.zeros((N_SAMPLES, 2)),
        SAMPLE_TIMES,
        ["n0", "n1"],
        {"recording_id": "rec", "subject": "m", "modality": "calcium", "sampling_rate": RATE},
        behavior=behavior,
        behavior_names=names,
    )
    return path


def run_kinematics_features(tmp_path: Path, table: pd.DataFrame) -> Path:
    csv = tmp_path / "results/kinematics/cam.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(csv, index=False)
    summary = csv.with_suffix(".json")
    summary.write_text('{"fps": 30.0}')
    out = tmp_path / "results/features/kinematics/cam.h5"
    smk = type("S", (), {})()
    smk.input = namedlist(csv=str(csv), summary=str(summary))
    smk.output = namedlist([str(out)])
    smk.log = namedlist([str(tmp_path / "kf.log")])
    smk.params, smk.threads = namedlist(), 1
    run_script(str(REPO / "scripts/kinematics_features.py"), init_globals={"snakemake": smk})
    return out


def run_align(tmp_path: Path, responses: Path, features: Path, timeline, space: str) -> Path:
    out = tmp_path / f"results/aligned/{space}/rec.h5"
    smk = type("S", (), {})()
    smk.input = namedlist(responses=str(responses), features=[str(features)])
    smk.output = namedlist([str(out)])
    smk.params = namedlist(
        timeline=timeline,
        source="the behavior_offset_s column of recordings.tsv (row rec)",
        require_cover=True,
        field="behavior_offset_s",
    )
    smk.wildcards = namedlist(recording="rec", extractor=space)
    smk.log = namedlist([str(tmp_path / "align.log")])
    smk.threads = 1
    run_script(str(REPO / "scripts/align.py"), init_globals={"snakemake": smk})
    return out


def test_kinematics_features_align_at_the_behavior_offset(tmp_path: Path) -> None:
    # 14 s of video from -2.5 s; the speed steps at 4.0 s video time = 1.5 s recording time
    features = run_kinematics_features(tmp_path, kinematics_table(int(14 * FPS), step_s=4.0))
    fs = read_features(features)
    assert fs.attrs["columns"] == list(body.KINEMATICS_COLUMNS)
    np.testing.assert_allclose(fs.times[:2], [0.5 / FPS, 1.5 / FPS])
    assert fs.attrs["duration"] == pytest.approx(14.0)
    # tracking lost on frames 30-32: filled from the neighbours (counted), never NaN
    assert fs.attrs["filled"]["speed_cm_per_s"] == 3 and np.isfinite(fs.features).all()
    x_cm = fs.features[:, body.KINEMATICS_COLUMNS.index("x_cm")]
    np.testing.assert_allclose(x_cm[30:33], np.linspace(0, 30, 420)[30:33], atol=1e-4)

    responses = responses_file(tmp_path / "results/neural/rec.h5")
    aligned = read_features(run_align(tmp_path, responses, features, [["cam", -2.5]], "kinematics"))
    speed = aligned.features[:, 0]
    np.testing.assert_allclose(speed[:15], 2.0, atol=1e-5)  # samples before 1.5 s
    np.testing.assert_allclose(speed[15:], 10.0, atol=1e-5)
    np.testing.assert_allclose(aligned.times, SAMPLE_TIMES)
    assert aligned.attrs["timeline"] == [["cam", -2.5]]


def test_kinematics_features_name_missing_columns(tmp_path: Path) -> None:
    with pytest.raises(
        InputError, match=r"k\.csv: column\(s\) speed_cm_per_s missing.*Fix: re-run"
    ):
        body.kinematics_features(
            kinematics_table(10, 0.1).drop(columns="speed_cm_per_s"), FPS, "k.csv"
        )


def test_behavior_video_shorter_than_its_recording(tmp_path: Path) -> None:
    features = run_kinematics_features(tmp_path, kinematics_table(int(8 * FPS), step_s=4.0))
    responses = responses_file(tmp_path / "results/neural/rec.h5")
    with pytest.raises(InputError) as err:
        run_align(tmp_path, responses, features, [["cam", -1.0]], "kinematics")
    message = str(err.value)
    assert message.startswith(
        f"{responses} [behavior_offset_s]: recording 'rec' runs from 0 to 10.000 s"
    )
    assert "video 'cam' at onset -1 s lasts 8.000 s" in message
    assert "7.000 to 10.000 s of the recording is not covered" in message
    assert (
        "Fix: check the clock offset in the behavior_offset_s column of recordings.tsv" in message
    )
    assert not (tmp_path / "results/aligned").exists() or not list(
        (tmp_path / "results/aligned").rglob("*.h5")
    )


# ---------------------------------------------------------------- behavior channels


def running_series(offset: float = 0.0):
    """Running speed at 40 Hz on the recording's clock from 0.2 to 9.6 s (so the first
    and last samples have no value), and pupil area; times minus ``offset`` = the
    behavior clock."""
    times = np.arange(0.2, 9.6, 0.025)
    values = np.stack([np.sin(times), 1.0 + times / 10.0], axis=1)
    return times, values


def test_behavior_channels_from_nwb_and_from_a_table_agree(tmp_path: Path) -> None:
    times, values = running_series()
    names = ["running_speed", "pupil_area"]
    # NWB door: ingest puts window means on the responses file (neurovid.nwb)
    on_samples = nwb.window_means(times, values, SAMPLE_TIMES, RATE)
    assert np.isnan(on_samples[0]).all() and np.isnan(on_samples[-1]).all()
    nwb_rs = responses_file(tmp_path / "nwb.h5", on_samples, names)
    from_nwb = body.behavior_channels(
        read_responses(nwb_rs), nwb_rs, recording="rec", sheet="r.tsv"
    )
    # the same channels as a table on the recording's clock, and on the behavior clock
    plain = responses_file(tmp_path / "plain.h5")
    table = tmp_path / "behavior.tsv"
    pd.DataFrame({"time": times, "running_speed": values[:, 0], "pupil_area": values[:, 1]}).to_csv(
        table, sep="\t", index=False
    )
    from_table = body.behavior_channels(
        read_responses(plain), plain, table, None, recording="rec", sheet="r.tsv"
    )
    shifted = tmp_path / "behavior_clock.csv"
    pd.DataFrame(
        {"behavior_time": times + 3.0, "running_speed": values[:, 0], "pupil_area": values[:, 1]}
    ).to_csv(shifted, index=False)
    from_clock = body.behavior_channels(
        read_responses(plain), plain, shifted, -3.0, recording="rec", sheet="r.tsv"
    )
    for other in (from_table, from_clock):
        assert other.attrs["columns"] == names
        np.testing.assert_allclose(other.features, from_nwb.features, atol=1e-6)
    # the documented fill: the first / last samples (no value) hold the nearest valid one
    # (the series starts in sample 2's window and ends in sample 95's)
    valid = np.flatnonzero(np.isfinite(on_samples[:, 0]))
    assert (valid[0], valid[-1], len(valid)) == (2, 95, 94)
    assert from_nwb.attrs["filled"] == {"running_speed": 6, "pupil_area": 6}
    np.testing.assert_allclose(from_nwb.features[:2], on_samples[[2, 2]], rtol=1e-6)
    np.testing.assert_allclose(from_nwb.features[96:], on_samples[[95] * 4], rtol=1e-6)
    np.testing.assert_allclose(from_nwb.features[2:96], on_samples[2:96], rtol=1e-6)
    # aligned with one event at onset 0: the channels themselves, on the response times
    path = tmp_path / "results/features/behavior_channels/rec.h5"
    write_features(path, from_nwb.features, from_nwb.times, from_nwb.attrs)
    aligned = read_features(run_align(tmp_path, nwb_rs, path, [["rec", 0.0]], "behavior_channels"))
    np.testing.assert_allclose(aligned.features, from_nwb.features, atol=1e-5)
    np.testing.assert_allclose(aligned.times, SAMPLE_TIMES)


def test_behavior_channels_script_writes_the_table_route(tmp_path: Path) -> None:
    times, values = running_series()
    table = tmp_path / "behavior.tsv"
    pd.DataFrame({"time": times, "running_speed": values[:, 0]}).to_csv(
        table, sep="\t", index=False
    )
    responses = responses_file(tmp_path / "results/neural/rec.h5")
    out = run_channels_script(tmp_path, responses, table, None)
    fs = read_features(out)
    assert fs.attrs["columns"] == ["running_speed"] and fs.attrs["recording"] == "rec"
    assert fs.attrs["provenance"]["inputs"]["table"]["path"] == str(table)
    expected = nwb.window_means(times, values[:, :1], SAMPLE_TIMES, RATE)[2:96, 0]
    np.testing.assert_allclose(fs.features[2:96, 0], expected, rtol=1e-6)
    assert fs.attrs["filled"] == {"running_speed": 6}


def run_channels_script(tmp_path: Path, responses: Path, table: Path | None, offset) -> Path:
    out = tmp_path / "results/features/behavior_channels/rec.h5"
    smk = type("S", (), {})()
    smk.input = namedlist(responses=str(responses), **({"table": str(table)} if table else {}))
    smk.output = namedlist([str(out)])
    smk.params = namedlist(offset=offset, sheet="recordings.tsv")
    smk.wildcards = namedlist(recording="rec")
    smk.log = namedlist([str(tmp_path / "channels.log")])
    smk.threads = 1
    run_script(str(REPO / "scripts/behavior_channels.py"), init_globals={"snakemake": smk})
    return out


def test_behavior_channel_on_another_clock_without_offset(tmp_path: Path) -> None:
    times, values = running_series()
    table = tmp_path / "behavior.tsv"
    pd.DataFrame({"behavior_time": times, "running_speed": values[:, 0]}).to_csv(
        table, sep="\t", index=False
    )
    responses = responses_file(tmp_path / "results/neural/rec.h5")
    with pytest.raises(InputError) as err:
        run_channels_script(tmp_path, responses, table, None)
    message = str(err.value)
    assert message.startswith(
        f"{table} [behavior_offset_s]: its times (behavior_time) are on the behavior clock"
    )
    assert "recording 'rec' has no behavior_offset_s in recordings.tsv" in message
    assert (
        "Fix: write in behavior_offset_s of 'rec' the recording-clock time (s) of the behavior clock's 0"
        in message
    )
    assert not (tmp_path / "results/features").exists()


def test_behavior_table_without_a_time_column(tmp_path: Path) -> None:
    table = tmp_path / "behavior.tsv"
    table.write_text("t\trunning\n0.1\t1\n0.2\t2\n")
    with pytest.raises(
        InputError,
        match=r"behavior\.tsv \[time\]: has no time column.*Fix: give exactly one of `time`",
    ):
        body.table_channels(table, SAMPLE_TIMES, RATE, None, recording="rec", sheet="r.tsv")


def test_a_channel_never_recorded_is_an_error(tmp_path: Path) -> None:
    behavior = np.full((N_SAMPLES, 1), np.nan)
    path = responses_file(tmp_path / "rec.h5", behavior, ["pupil_area"])
    with pytest.raises(
        InputError, match=r"rec\.h5 \[nwb_behavior\]: channel 'pupil_area' has no valid value"
    ):
        body.behavior_channels(read_responses(path), path, recording="rec", sheet="r.tsv")


# ---------------------------------------------------------------- the recordings sheet


def load_sheet(
    tmp_path: Path, rows: str, header: str = "behavior_video\tbehavior_offset_s\tbehavior"
):
    (tmp_path / "clip.mp4").write_bytes(b"")
    (tmp_path / "rec.tsv").write_text("time\tn0\n")
    (tmp_path / "videos.tsv").write_text(
        "video_id\tpath\tkind\nA\tclip.mp4\tstimulus\ncam\tclip.mp4\tbehavior\n"
    )
    (tmp_path / "recordings.tsv").write_text(
        f"recording_id\tsubject\tmodality\tpath\tstimulus\t{header}\n" + rows
    )
    videos = sheets.load_videos(
        tmp_path / "videos.tsv", REPO / "schemas/videos.schema.yaml", tmp_path
    )
    table = sheets.load_recordings(
        tmp_path / "recordings.tsv", REPO / "schemas/recordings.schema.yaml", videos, tmp_path
    )
    return body.check_behavior_columns(table, videos, tmp_path / "recordings.tsv", tmp_path)


def test_sheet_behavior_columns_are_read(tmp_path: Path) -> None:
    (tmp_path / "b.tsv").write_text("time\trun\n")
    table = load_sheet(tmp_path, "r1\tm\tspikes\trec.tsv\tA\tcam\t-2.5\tb.tsv\n")
    assert table.at["r1", "behavior_offset_s"] == -2.5
    row = table.to_dict("index")["r1"]
    assert body.body_timeline("kinematics", "r1", row, "s.tsv") == [["cam", -2.5]]
    assert body.body_timeline("motion_svd", "r1", row, "s.tsv") == [["cam", -2.5]]
    assert body.body_timeline("behavior_channels", "r1", row, "s.tsv") == [["r1", 0.0]]


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        (
            "B\t-1\t",
            r"\[behavior_video\]: row 'r1': behavior_video 'B' is not a video_id of the videos sheet\..*Fix: name the behavior video",
        ),
        (
            "A\t-1\t",
            r"\[behavior_video\]: row 'r1': behavior_video 'A' is a stimulus video in the videos sheet, not a behavior video\..*Fix: name a video of kind behavior",
        ),
        (
            "cam\t\t",
            r"\[behavior_offset_s\]: row 'r1': behavior_video 'cam' is given without behavior_offset_s.*Fix: write in behavior_offset_s the recording-clock time",
        ),
        (
            "cam\t-1\tmissing.tsv",
            r"\[behavior\]: row 'r1': behavior table 'missing.tsv' does not exist",
        ),
    ],
)
def test_sheet_behavior_columns_bad_input(tmp_path: Path, cells: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as err:
        load_sheet(tmp_path, f"r1\tm\tspikes\trec.tsv\tA\t{cells}\n")
    assert str(err.value).startswith(str(tmp_path / "recordings.tsv"))


def test_sheet_offset_must_be_a_number(tmp_path: Path) -> None:
    with pytest.raises(
        InputError,
        match=r"\[behavior_offset_s\]: row 2 \(recording_id='r1'\): 'soon' is not a number",
    ):
        load_sheet(tmp_path, "r1\tm\tspikes\trec.tsv\tA\tcam\tsoon\t\n")


@pytest.mark.parametrize(
    ("space", "column"), [("kinematics", "behavior_video"), ("behavior_channels", "behavior")]
)
def test_body_space_for_a_recording_without_behavior(
    tmp_path: Path, space: str, column: str
) -> None:
    table = load_sheet(tmp_path, "r1\tm\tspikes\trec.tsv\tA\t\t\t\n")
    with pytest.raises(InputError) as err:
        body.body_timeline(space, "r1", table.to_dict("index")["r1"], "recordings.tsv")
    message = str(err.value)
    assert message.startswith(f"recordings.tsv [{column}]: recording 'r1' has no behavior")
    assert f"uses the body feature space {space!r}" in message
    assert f"or leave {space} out of the `features` of the models fit on its subject" in message


def test_a_body_model_is_fit_on_the_subjects_with_that_behavior() -> None:
    rows = {
        "a1": {"nwb_behavior": "running_speed"},
        "a2": {"behavior": "a2_treadmill.tsv"},
        "b1": {"behavior_video": "cam-b1", "behavior_offset_s": 0.0},
        "c1": {},
        "d1": {"behavior": "d1.tsv"},
        "d2": {"behavior": ""},
    }
    runs = {"a": ["a1", "a2"], "b": ["b1"], "c": ["c1"], "d": ["d1", "d2"]}
    fit = body.subjects_with_body(["motion_energy", "behavior_channels"], runs, rows)
    assert fit == (["a"], {"b": ["b1"], "c": ["c1"], "d": ["d2"]})
    fit = body.subjects_with_body(["motion_svd", "behavior_channels"], runs, rows)
    assert fit == ([], {"a": ["a1", "a2"], "b": ["b1"], "c": ["c1"], "d": ["d1", "d2"]})
    assert body.subjects_with_body(["motion_energy"], runs, rows) == (["a", "b", "c", "d"], {})
    assert (
        body.behavior_columns(["motion_energy", "behavior_channels"]) == "nwb_behavior or behavior"
    )
    assert body.behavior_columns(["kinematics", "behavior_channels"]) == (
        "behavior_video + behavior_offset_s; nwb_behavior or behavior"
    )


# ---------------------------------------------------------------- the workflow plans it


def test_workflow_plans_the_body_spaces_of_a_model(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    from _workflow import copy_workflow, without_demo_bids

    work = copy_workflow(tmp_path / "wf")
    for name in ("clip.mp4", "cam.mp4", "cam_pose.h5", "m1.tsv", "m2.tsv", "m1_behavior.tsv"):
        (work / name).write_bytes(b"")
    (work / "videos.tsv").write_text(
        "video_id\tpath\tkind\tpose\nA\tclip.mp4\tstimulus\t\ncam\tcam.mp4\tbehavior\tcam_pose.h5\n"
    )
    (work / "recordings.tsv").write_text(
        "recording_id\tsubject\tmodality\tpath\tstimulus\tsampling_rate\tbehavior_video\tbehavior_offset_s\tbehavior\n"
        "m1\tmouse\tspikes\tm1.tsv\tA@1\t10\tcam\t-2.5\tm1_behavior.tsv\n"
        "m2\tmouse2\tspikes\tm2.tsv\tA@1\t10\t\t\t\n"
    )
    config = yaml.safe_load(without_demo_bids((work / "config.yaml").read_text()))
    config.update(videos="videos.tsv", recordings="recordings.tsv")
    config["encoding"]["models"] = {
        "body": {
            "features": ["motion_energy", "behavior_channels"],
            "estimator": "ridge",
            "alphas": [1, 10],
            "pca_variance": 0.95,
            "modalities": ["spikes"],
        }
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    done = dry_run(
        work,
        [
            "results/encoding/body/mouse/scores.h5",
            "results/aligned/kinematics/m1.h5",
            "results/aligned/motion_svd/m1.h5",
        ],
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    jobs = planned_inputs(out)
    assert jobs[("align", "results/aligned/motion_energy/m1.h5")] == [
        "results/neural/m1.h5",
        "results/features/motion_energy/A.h5",
    ]
    assert jobs[("align", "results/aligned/behavior_channels/m1.h5")] == [
        "results/neural/m1.h5",
        "results/features/behavior_channels/m1.h5",
    ]
    assert jobs[("behavior_channels", "results/features/behavior_channels/m1.h5")] == [
        "results/neural/m1.h5",
        "m1_behavior.tsv",
    ]
    assert jobs[("align", "results/aligned/kinematics/m1.h5")] == [
        "results/neural/m1.h5",
        "results/features/kinematics/cam.h5",
    ]
    assert jobs[("kinematics_features", "results/features/kinematics/cam.h5")] == [
        "results/kinematics/cam.csv",
        "results/kinematics/cam.json",
    ]
    assert jobs[("align", "results/aligned/motion_svd/m1.h5")] == [
        "results/neural/m1.h5",
        "results/features/motion_svd/cam.h5",
    ]
    assert ("motion_svd", "results/features/motion_svd/cam.h5") in jobs
    # building the DAG names the subjects the model is not fit on (`all` leaves them out)
    assert (
        "neurovid: model body is not fit on mouse2: runs m2 give no behavior for its body spaces (behavior_channels; recordings sheet columns nwb_behavior or behavior)."
        in done.stderr
    )

    # the model on a subject whose recording has no behavior channels: an error naming it
    done = dry_run(work, ["results/encoding/body/mouse2/scores.h5"])
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert (
        "recording 'm2' has no behavior channels (columns nwb_behavior and behavior are empty)"
        in out
    )
    assert "recordings.tsv [behavior]" in out
