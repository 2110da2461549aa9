"""The NWB door (neurovid.nwb): Units, RoiResponseSeries, behavior, presentations -> neurovid files.

Every NWB file is written here with pynwb, holding the same data as a table of
the TSV route; what the door reads must equal what the table route reads.
"""

from __future__ import annotations

import datetime
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import dry_run, namedlist, planned_inputs, run_script
from snakemake.io import Namedlist

from neurovid import neural, nwb, nwb_table, sheets
from neurovid.errors import InputError
from neurovid.io import read_features, read_responses, write_features

REPO = Path(__file__).resolve().parents[1]
RATE = 10.0  # Hz: bins (spikes) and frames (calcium)
T0 = 5.0  # s: the recording's first sample on the NWB clock
VIDEOS = {"A": "stim/clipA.mp4", "B": "stim/clipB.mp4"}
# The presentations name A by its id and B by its file's stem; on the recording's clock
# they start at 1.0 and 2.5 s.
PRESENTED = [("A", 1.0, 2.0), ("clipB", 2.5, 3.5)]


def nwbfile():
    from pynwb import NWBFile

    return NWBFile(
        session_description="neurovid test",
        identifier="neurovid-test",
        session_start_time=datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC),
    )


def add_presentations(f, rows=PRESENTED, name="presentations", t0=T0):
    from pynwb.epoch import TimeIntervals

    table = TimeIntervals(name=name, description="videos shown")
    table.add_column(name="video_id", description="video shown")
    for video, start, stop in rows:
        table.add_row(start_time=t0 + start, stop_time=t0 + stop, video_id=video)
    f.add_time_intervals(table)


def add_behavior(f, n_samples: int, t0=T0):
    """running_speed (BehavioralTimeSeries) and pupil_area (PupilTracking) at 4x the rate."""
    from pynwb.base import TimeSeries
    from pynwb.behavior import BehavioralTimeSeries, PupilTracking

    k = np.arange(4 * n_samples)
    stamps = t0 + k / (4 * RATE)
    module = f.create_processing_module("behavior", "behavior")
    running = BehavioralTimeSeries(name="BehavioralTimeSeries")
    running.add_timeseries(
        TimeSeries(name="running_speed", data=np.sin(k / 7.0), unit="cm/s", timestamps=stamps)
    )
    pupil = PupilTracking(name="PupilTracking")
    pupil.add_timeseries(
        TimeSeries(name="pupil_area", data=1.0 + k / 100.0, unit="px", timestamps=stamps)
    )
    module.add(running)
    module.add(pupil)
    return np.sin(k / 7.0), 1.0 + k / 100.0


def write(f, path: Path) -> Path:
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(path), "w") as io:
        io.write(f)
    return path


def spikes_data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {u: np.sort(rng.uniform(0, 6.0, 25 + 5 * int(u))) for u in ("0", "1", "2")}


def spikes_nwb(path: Path, obs=True, presentations=PRESENTED) -> Path:
    f = nwbfile()
    for unit, times in spikes_data().items():
        kwargs = {"obs_intervals": [[T0, T0 + 6.0]]} if obs else {}
        f.add_unit(id=int(unit), spike_times=(times + (T0 if obs else 0.0)), **kwargs)
    if presentations is not None:
        add_presentations(f, presentations, t0=T0 if obs else 0.0)
    return write(f, path)


def calcium_data() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(40, 3)).astype(np.float32)


def calcium_nwb(path: Path, timestamps=True, presentations=PRESENTED, behavior=True) -> Path:
    from pynwb.ophys import DfOverF, ImageSegmentation, OpticalChannel, RoiResponseSeries

    f = nwbfile()
    device = f.create_device(name="scope")
    plane = f.create_imaging_plane(
        name="plane",
        optical_channel=OpticalChannel(name="green", description="GCaMP", emission_lambda=520.0),
        imaging_rate=RATE,
        description="V1",
        device=device,
        excitation_lambda=920.0,
        indicator="GCaMP6f",
        location="V1",
    )
    ophys = f.create_processing_module("ophys", "calcium")
    segmentation = ImageSegmentation()
    ophys.add(segmentation)
    rois = segmentation.create_plane_segmentation(
        name="rois", description="ROIs", imaging_plane=plane
    )
    for _ in range(3):
        rois.add_roi(image_mask=np.ones((4, 4)))
    region = rois.create_roi_table_region(region=[0, 1, 2], description="all")
    data = calcium_data()
    if timestamps:
        timing = {"timestamps": T0 + np.arange(len(data)) / RATE}
    else:
        timing = {"rate": RATE, "starting_time": T0}
    dff = DfOverF(name="DfOverF")
    ophys.add(dff)
    dff.add_roi_response_series(
        RoiResponseSeries(name="RoiResponseSeries", data=data, rois=region, unit="1", **timing)
    )
    if behavior:
        add_behavior(f, len(data))
    if presentations is not None:
        add_presentations(f, presentations)
    return write(f, path)


def tsv_spikes(path: Path) -> Path:
    rows = [(u, t) for u, times in spikes_data().items() for t in times]
    path.write_text("unit\tspike_time\n" + "".join(f"{u}\t{float(t)!r}\n" for u, t in rows))
    return path


def tsv_calcium(path: Path) -> Path:
    data = calcium_data()
    path.write_text(
        "0\t1\t2\n" + "".join("\t".join(repr(float(v)) for v in r) + "\n" for r in data)
    )
    return path


def read_nwb(path: Path, modality: str, **kwargs) -> neural.Recording:
    kwargs.setdefault("stimulus_table", "presentations")
    kwargs.setdefault("videos", VIDEOS)
    return neural.ingest_recording(
        path, modality=modality, sampling_rate=kwargs.pop("sampling_rate", RATE), nwb=kwargs
    )


def expected_events() -> list[dict]:
    events = sheets.parse_stimulus("A@1.0;B@2.5", set(VIDEOS))
    return [{"video_id": e.video_id, "onset": e.onset} for e in events]


def assert_same(nwb_rec: neural.Recording, tsv_rec: neural.Recording) -> None:
    np.testing.assert_array_equal(nwb_rec.responses, tsv_rec.responses)
    np.testing.assert_allclose(nwb_rec.times, tsv_rec.times, rtol=0, atol=1e-12)
    assert list(nwb_rec.target_names) == list(tsv_rec.target_names)
    assert nwb_rec.sampling_rate == pytest.approx(tsv_rec.sampling_rate)


# --------------------------------------------------------------------------- equal to the tables


def test_nwb_units_bin_like_the_spike_times_table(tmp_path: Path) -> None:
    rec = read_nwb(spikes_nwb(tmp_path / "s.nwb"), "spikes")
    table = neural.ingest_table(
        tsv_spikes(tmp_path / "s.tsv"), modality="spikes", sampling_rate=RATE, duration=6.0
    )
    assert_same(rec, table)
    assert rec.responses.shape == (60, 3) and rec.responses.sum() == 25 + 30 + 35
    assert rec.info["t0"] == T0 and rec.info["t0_from"] == "obs_intervals"
    onsets = [(e.video_id, e.onset) for e in sheets.parse_stimulus("A@1;B@2.5")]
    assert [(e["video_id"], e["onset"]) for e in rec.stimulus_events] == onsets


def test_nwb_units_without_obs_intervals_start_at_the_file_clock_zero(tmp_path: Path) -> None:
    rec = read_nwb(spikes_nwb(tmp_path / "s.nwb", obs=False), "spikes")
    table = neural.ingest_table(
        tsv_spikes(tmp_path / "s.tsv"), modality="spikes", sampling_rate=RATE
    )
    assert_same(rec, table)
    assert rec.info["t0"] == 0.0 and rec.stimulus_events == expected_events()


@pytest.mark.parametrize("timestamps", [True, False], ids=["timestamps", "rate"])
def test_nwb_roi_response_series_reads_like_the_calcium_table(
    tmp_path: Path, timestamps: bool
) -> None:
    rec = read_nwb(
        calcium_nwb(tmp_path / "c.nwb", timestamps=timestamps),
        "calcium",
        series="DfOverF/RoiResponseSeries",
        sampling_rate=None,
    )
    table = neural.ingest_table(
        tsv_calcium(tmp_path / "c.tsv"), modality="calcium", sampling_rate=RATE
    )
    assert_same(rec, table)
    assert rec.info["t0"] == pytest.approx(T0)
    assert [e["video_id"] for e in rec.stimulus_events] == ["A", "B"]
    np.testing.assert_allclose([e["onset"] for e in rec.stimulus_events], [1.0, 2.5], atol=1e-9)


def test_behavior_channels_are_window_means_on_the_response_samples(tmp_path: Path) -> None:
    path = calcium_nwb(tmp_path / "c.nwb")
    rec = read_nwb(path, "calcium", behavior="running_speed, PupilTracking")
    k = np.arange(4 * 40)
    assert list(rec.behavior_names) == ["running_speed", "pupil_area"]
    expected = np.stack(
        [np.sin(k / 7.0).reshape(40, 4).mean(1), (1.0 + k / 100.0).reshape(40, 4).mean(1)], axis=1
    )
    np.testing.assert_allclose(rec.behavior, expected, rtol=1e-6)


def test_window_means_interpolate_sparse_series_and_leave_nan_outside() -> None:
    sample_times = (np.arange(6) + 0.5) / RATE  # windows [0, .1), [.1, .2), ...
    values = nwb.window_means(np.array([0.15, 0.35]), np.array([[1.0], [3.0]]), sample_times, RATE)
    # windows 1 and 3 hold a value; window 2's centre 0.25 is interpolated; 0, 4, 5 outside
    np.testing.assert_allclose(values[:, 0], [np.nan, 1.0, 2.0, 3.0, np.nan, np.nan])


def test_ingest_script_writes_behavior_and_events_and_align_uses_them(tmp_path: Path) -> None:
    path = calcium_nwb(tmp_path / "c.nwb")
    out = run_ingest(
        tmp_path,
        path,
        "calcium",
        nwb={
            "series": "RoiResponseSeries",
            "behavior": "BehavioralTimeSeries",
            "stimulus_table": "presentations",
            "video_column": None,
            "videos": VIDEOS,
        },
    )
    rs = read_responses(out)
    assert rs.responses.shape == (40, 3) and list(rs.behavior_names) == ["running_speed"]
    assert rs.behavior.shape == (40, 1)
    events = rs.attrs["stimulus_events"]
    assert [e["video_id"] for e in events] == ["A", "B"]
    np.testing.assert_allclose([e["onset"] for e in events], [1.0, 2.5], atol=1e-9)
    prov = rs.attrs["provenance"]
    assert prov["params"]["nwb"]["series"] == "RoiResponseSeries"
    assert "pynwb" in prov["versions"]

    # align with the timeline from the responses file = align with the same timeline given
    features = {}
    for video in ("A", "B", "C"):
        times = (np.arange(8) + 0.5) / 8.0
        features[video] = tmp_path / "features" / f"{video}.h5"
        write_features(
            features[video],
            np.stack([times, -times], 1) + ord(video),
            times,
            {"duration": 1.0, "model_id": "m", "revision": "r", "layer": ""},
        )
    from_nwb = run_align(tmp_path / "nwb.h5", out, list(features.values()), None)
    given = run_align(
        tmp_path / "sheet.h5", out, [features["A"], features["B"]], [["A", 1.0], ["B", 2.5]]
    )
    np.testing.assert_allclose(from_nwb.features, given.features, atol=1e-6)
    assert from_nwb.features[:10].sum() == 0 and from_nwb.features[10:20].min() > 60


def run_ingest(tmp_path: Path, recording: Path, modality: str, **params) -> Path:
    out = tmp_path / "results" / "neural" / "rec.h5"
    smk = SimpleNamespace(
        input=Namedlist(fromdict={"recording": str(recording)}),
        output=Namedlist([str(out)]),
        params=Namedlist(
            fromdict={
                "recording_id": "rec",
                "subject": "s1",
                "modality": modality,
                "tr": float("nan"),
                "sampling_rate": params.get("sampling_rate", float("nan")),
                "fmri": {"mask": "mni152_gm", "resolution_mm": 3, "drop_nan_voxels": False},
                "nwb": params["nwb"],
            }
        ),
        log=Namedlist([str(tmp_path / "ingest.log")]),
        threads=1,
    )
    run_script(str(REPO / "scripts" / "ingest.py"), init_globals={"snakemake": smk})
    return out


def run_align(out: Path, responses: Path, features: list[Path], timeline):
    smk = SimpleNamespace(
        input=namedlist(responses=str(responses), features=[str(p) for p in features]),
        output=namedlist([str(out)]),
        params=namedlist(timeline=timeline, source="the presentations table"),
        wildcards=namedlist(recording="rec", extractor="motion_energy"),
        log=namedlist([str(out.with_suffix(".log"))]),
        threads=1,
    )
    run_script(str(REPO / "scripts" / "align.py"), init_globals={"snakemake": smk})
    return read_features(out)


# --------------------------------------------------------------------------- bad input


def fails_without_output(tmp_path: Path, path: Path, modality: str, message: str, **nwb_params):
    nwb_params = {
        "series": None,
        "behavior": None,
        "stimulus_table": "presentations",
        "video_column": None,
        "videos": VIDEOS,
        **nwb_params,
    }
    rate = nwb_params.pop("sampling_rate", RATE)
    with pytest.raises(InputError) as err:
        run_ingest(tmp_path, path, modality, sampling_rate=rate, nwb=nwb_params)
    assert message in str(err.value), str(err.value)
    assert str(path) in str(err.value)
    assert not (tmp_path / "results" / "neural" / "rec.h5").exists()
    assert not list((tmp_path / "results").rglob("*.h5"))
    return str(err.value)


def test_missing_series_lists_the_series_the_file_has(tmp_path: Path) -> None:
    path = calcium_nwb(tmp_path / "c.nwb")
    message = fails_without_output(
        tmp_path,
        path,
        "calcium",
        "has no RoiResponseSeries named 'Fluorescence/RoiResponseSeries'; the file's "
        "RoiResponseSeries: processing/ophys/DfOverF/RoiResponseSeries.",
        series="Fluorescence/RoiResponseSeries",
    )
    assert "[nwb_series]" in message and "Fix: write one of these" in message


def test_missing_behavior_series_lists_the_time_series(tmp_path: Path) -> None:
    message = fails_without_output(
        tmp_path, calcium_nwb(tmp_path / "c.nwb"), "calcium", "named 'wheel'", behavior="wheel"
    )
    assert "processing/behavior/BehavioralTimeSeries/running_speed" in message
    assert "[nwb_behavior]" in message


def test_presentation_ending_before_it_starts(tmp_path: Path) -> None:
    path = spikes_nwb(tmp_path / "s.nwb", presentations=[("A", 1.0, 2.0), ("B", 3.0, 2.9)])
    message = fails_without_output(
        tmp_path,
        path,
        "spikes",
        "row 1 of the TimeIntervals table 'presentations' ends before it starts "
        "(start_time 8 s, stop_time 7.9 s).",
    )
    assert "[presentations.stop_time]" in message and "stop_time >= start_time" in message


def test_presentation_of_a_video_not_in_the_sheet(tmp_path: Path) -> None:
    path = spikes_nwb(tmp_path / "s.nwb", presentations=[("A", 1.0, 2.0), ("clipZ", 3.0, 4.0)])
    message = fails_without_output(
        tmp_path,
        path,
        "spikes",
        "row 1 of the TimeIntervals table 'presentations' shows video 'clipZ' (column `video_id`), "
        "which is neither a video_id of the videos sheet nor the file name stem of one of its paths.",
    )
    assert "Fix: add the video to videos.tsv" in message


def test_presentation_past_the_end_of_the_recording(tmp_path: Path) -> None:
    path = spikes_nwb(tmp_path / "s.nwb", presentations=[("A", 1.0, 2.0), ("B", 5.5, 6.5)])
    fails_without_output(
        tmp_path,
        path,
        "spikes",
        "the presentation of 'B' in table 'presentations' (10.5-11.5 s on the file's clock) "
        "lies outside the recording (5-11 s).",
    )


def test_spikes_without_sampling_rate(tmp_path: Path) -> None:
    message = fails_without_output(
        tmp_path,
        spikes_nwb(tmp_path / "s.nwb"),
        "spikes",
        "no sampling rate is given to bin it.",
        sampling_rate=float("nan"),
    )
    assert "[sampling_rate]" in message and "set `sampling_rate` (Hz, the bin rate)" in message


def test_missing_presentations_table(tmp_path: Path) -> None:
    fails_without_output(
        tmp_path,
        spikes_nwb(tmp_path / "s.nwb", presentations=None),
        "spikes",
        "has no TimeIntervals table 'presentations' (none).",
    )


# --------------------------------------------------------------------------- planning


def test_parse_time_reader_matches_pynwb_and_checks_the_table(tmp_path: Path) -> None:
    path = spikes_nwb(tmp_path / "s.nwb")
    rows = nwb.presentation_videos(path, "presentations", VIDEOS)
    assert rows == [("A", T0 + 1.0, T0 + 2.0), ("B", T0 + 2.5, T0 + 3.5)]
    bad = spikes_nwb(tmp_path / "bad.nwb", presentations=[("A", 2.0, 1.0)])
    with pytest.raises(
        InputError, match=r"row 0 of the TimeIntervals table 'presentations' ends before"
    ):
        nwb.presentation_videos(bad, "presentations", VIDEOS)
    with pytest.raises(InputError, match=r"has no column `stimulus`.*nwb_video_column"):
        nwb.presentation_videos(path, "presentations", VIDEOS, column="stimulus")


def test_parse_time_reader_agrees_with_ingest(tmp_path: Path) -> None:
    """Measures (prints) the cost per file of planning; asserts only the result."""
    path = calcium_nwb(tmp_path / "c.nwb")
    start = time.perf_counter()
    nwb_table._read_table_h5.cache_clear()
    rows = nwb.presentation_videos(path, "presentations", VIDEOS)
    h5_s = time.perf_counter() - start
    start = time.perf_counter()
    rec = read_nwb(path, "calcium")
    pynwb_s = time.perf_counter() - start
    print(f"parse-time h5py read {h5_s * 1e3:.1f} ms, pynwb ingest {pynwb_s * 1e3:.1f} ms")
    assert [v for v, _, _ in rows] == [e["video_id"] for e in rec.stimulus_events]


def write_sheets(work: Path, nwb_path: str, stimulus: str = "nwb:presentations") -> None:
    (work / "stim").mkdir(exist_ok=True)
    for v in ("A", "B", "C"):
        (work / f"stim/clip{v}.mp4").write_bytes(b"")
    (work / "videos.tsv").write_text(
        "video_id\tpath\tkind\n"
        + "".join(f"{v}\t{p}\tstimulus\n" for v, p in VIDEOS.items())
        + "C\tstim/clipC.mp4\tstimulus\n"
    )
    (work / "recordings.tsv").write_text(
        "recording_id\tsubject\tmodality\tpath\tstimulus\tsampling_rate\tnwb_series\tnwb_behavior\n"
        f"m1\tmouse\tcalcium\t{nwb_path}\t{stimulus}\t\tRoiResponseSeries\trunning_speed\n"
    )


def test_recordings_sheet_reads_the_nwb_timeline_videos(tmp_path: Path) -> None:
    calcium_nwb(tmp_path / "c.nwb")
    write_sheets(tmp_path, "c.nwb")
    videos = sheets.load_videos(
        tmp_path / "videos.tsv", REPO / "schemas/videos.schema.yaml", tmp_path
    )
    recordings = sheets.load_recordings(
        tmp_path / "recordings.tsv", REPO / "schemas/recordings.schema.yaml", videos, tmp_path
    )
    row = recordings.loc["m1"]
    assert row["timeline"] is None and row["stimulus_table"] == "presentations"
    assert row["nwb_videos"] == ["A", "B"] and row["stimulus_key"] == "nwb:A@0;B@1.5"
    # a file the workflow makes itself (results/) is not read: videos unknown, key unique
    with (tmp_path / "recordings.tsv").open("a") as fh:
        fh.write("m2\tmouse\tcalcium\tresults/m2.nwb\tnwb:presentations\t\t\t\n")
    recordings = sheets.load_recordings(
        tmp_path / "recordings.tsv", REPO / "schemas/recordings.schema.yaml", videos, tmp_path
    )
    assert recordings.at["m2", "nwb_videos"] is None
    assert recordings.at["m2", "stimulus_key"] == "nwb:m2"
    write_sheets(tmp_path, "c.tsv")
    (tmp_path / "c.tsv").write_text("0\n1\n")
    with pytest.raises(
        InputError, match=r"is read from an NWB file.*\[stimulus\]|\[stimulus\].*NWB"
    ):
        sheets.load_recordings(
            tmp_path / "recordings.tsv", REPO / "schemas/recordings.schema.yaml", videos, tmp_path
        )


def test_workflow_plans_ingest_and_align_of_an_nwb_recording(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    from _workflow import copy_workflow, without_demo_bids

    work = copy_workflow(tmp_path / "wf")
    calcium_nwb(work / "c.nwb")
    write_sheets(work, "c.nwb")
    # A run whose file a rule would make (results/): planned with every stimulus video.
    with (work / "recordings.tsv").open("a") as fh:
        fh.write("m2\tmouse\tcalcium\tresults/made/m2.nwb\tnwb:presentations\t\t\t\n")
    config = (work / "config.yaml").read_text()
    config = config.replace("videos: demo/videos.tsv", "videos: videos.tsv").replace(
        "recordings: demo/recordings.tsv", "recordings: recordings.tsv"
    )
    (work / "config.yaml").write_text(without_demo_bids(config))
    done = dry_run(work, ["results/aligned/motion_energy/m1.h5"])
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    jobs = planned_inputs(out)
    assert jobs[("ingest", "results/neural/m1.h5")] == ["c.nwb"]
    assert jobs[("align", "results/aligned/motion_energy/m1.h5")] == [
        "results/neural/m1.h5",
        "results/features/motion_energy/A.h5",
        "results/features/motion_energy/B.h5",
    ]


def test_nwb_runs_repeat_when_their_ingested_presentations_do(tmp_path: Path) -> None:
    from neurovid.io import repeat_keys, write_responses

    paths = []
    for run, (first, videos) in enumerate([(12.0, "AB"), (3.0, "AB"), (3.0, "BA")]):
        events = [{"video_id": v, "onset": first + 5 * k} for k, v in enumerate(videos)]
        path = tmp_path / f"r{run}.h5"
        write_responses(
            path, np.zeros((4, 1)), np.arange(4) + 0.5, ["n0"], {"stimulus_events": events}
        )
        paths.append(path)
    keys = repeat_keys(["nwb:r0", "nwb:r1", "nwb:r2", "A@0"], [*paths, paths[0]])
    assert keys == ["nwb:A@0;B@5", "nwb:A@0;B@5", "nwb:B@0;A@5", "A@0"]
