"""Alignment of stimulus features to a recording's timebase, FIR delays, and scripts/align.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import namedlist, run_script

from neurovid.align import add_delays, delay_samples, timeline_features
from neurovid.errors import InputError
from neurovid.io import FeatureSet, read_features, write_features, write_responses
from neurovid.sheets import StimulusEvent

REPO = Path(__file__).resolve().parents[1]


def video(values: list[float], fps: float, duration: float | None = None) -> FeatureSet:
    """A 2-D feature set: column 0 = values, column 1 = 10 x values; frame-centre times."""
    v = np.asarray(values, dtype=np.float32)
    times = (np.arange(len(v)) + 0.5) / fps
    attrs = {"duration": duration if duration is not None else len(v) / fps}
    return FeatureSet(np.stack([v, 10 * v], axis=1), times, attrs)


def seconds(n: int, rate: float) -> np.ndarray:
    """Centre times of ``n`` samples at ``rate`` Hz."""
    return (np.arange(n) + 0.5) / rate


def test_frames_are_averaged_into_sample_windows_and_gaps_are_zero() -> None:
    # Recording: 5 samples at 1 Hz (windows [0,1) ... [4,5)).
    # Video A: 4 frames at 2 fps (2 s) from 1 s -> frames at 1.25, 1.75 | 2.25, 2.75.
    # Video B: 1 frame at 1 fps from 4 s.
    sets = {"A": video([1, 3, 5, 7], fps=2), "B": video([9], fps=1)}
    events = [StimulusEvent("A", 1.0), StimulusEvent("B", 4.0)]
    out = timeline_features(events, sets, seconds(5, 1.0))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], [0, 2, 6, 0, 9])  # mean(1,3)=2, mean(5,7)=6, gap=0
    np.testing.assert_allclose(out[:, 1], [0, 20, 60, 0, 90])


def test_partly_covered_window_is_scaled_by_the_covered_share() -> None:
    # Video A from 0.5 s: frames at 0.75 | 1.25, 1.75 | 2.25; the video covers half of
    # window 0 and half of window 2.
    out = timeline_features([StimulusEvent("A", 0.5)], {"A": video([1, 3, 5, 7], 2)}, seconds(4, 1))
    np.testing.assert_allclose(out[:, 0], [0.5 * 1, 4, 0.5 * 7, 0])


def test_features_sparser_than_samples_are_interpolated() -> None:
    # 1 Hz features (values 0 and 10 at 0.55 s and 1.55 s) on a 10 Hz recording of 2 s.
    fs = FeatureSet(
        np.array([[0.0], [10.0]], dtype=np.float32), np.array([0.55, 1.55]), {"duration": 2.0}
    )
    t = seconds(20, 10.0)
    out = timeline_features([StimulusEvent("A", 0.0)], {"A": fs}, t)
    np.testing.assert_allclose(out[:, 0], np.clip(10 * (t - 0.55), 0, 10), atol=1e-5)


def test_recording_shorter_than_its_timeline_names_recording_durations_and_video() -> None:
    sets = {"A": video([1, 2, 3, 4], fps=2)}  # 2 s long
    with pytest.raises(InputError) as err:
        timeline_features(
            [StimulusEvent("A", 3.0)],
            sets,
            seconds(4, 1.0),
            recording="sub-01_run-1",
            recording_path="results/neural/sub-01_run-1.h5",
        )
    message = str(err.value)
    assert message.startswith("results/neural/sub-01_run-1.h5 [stimulus]: ")
    assert "recording 'sub-01_run-1' is 4.000 s long" in message
    assert "stimulus timeline ends at 5.000 s" in message
    assert "video 'A'" in message
    assert "Fix:" in message


def test_overlapping_videos_are_rejected() -> None:
    sets = {"A": video([1, 2, 3, 4], fps=2), "B": video([1], fps=1)}
    with pytest.raises(
        InputError, match=r"video 'B' starts at 1 s, before the previous video ends \(2.000 s\)"
    ):
        timeline_features([StimulusEvent("A", 0.0), StimulusEvent("B", 1.0)], sets, seconds(6, 1.0))


def test_delay_samples_rounds_and_drops_duplicates() -> None:
    assert delay_samples([1, 2, 3, 4, 5, 6], 1.0) == [1, 2, 3, 4, 5, 6]
    assert delay_samples([0.0, 0.1, 0.2], 10.0) == [0, 1, 2]
    assert delay_samples([0.04, 0.06, 0.14, 0.31], 10.0) == [0, 1, 3]  # 0.6 -> 1, 1.4 -> 1 (dup)
    assert delay_samples([2.0, 4.0, 6.0], 0.5) == [1, 2, 3]  # TR 2 s


def test_add_delays_by_hand() -> None:
    x = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.float32)
    out = add_delays(x, [0, 1, -1, 5])
    expected = np.array(
        [
            [1, 2, 0, 0, 3, 4, 0, 0],
            [3, 4, 1, 2, 5, 6, 0, 0],
            [5, 6, 3, 4, 0, 0, 0, 0],
        ],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.float32


def test_align_script_writes_features_on_the_response_times(tmp_path: Path) -> None:
    times = seconds(5, 1.0)
    responses = tmp_path / "rec.h5"
    write_responses(
        responses,
        np.zeros((5, 2)),
        times,
        ["n0", "n1"],
        {"sampling_rate": 1.0, "modality": "spikes", "recording_id": "rec"},
    )
    paths = []
    for name, fs in {"A": video([1, 3, 5, 7], 2), "B": video([9], 1)}.items():
        paths.append(tmp_path / f"{name}.h5")
        attrs = {**fs.attrs, "model_id": "pymoten", "revision": "0.1.3", "layer": ""}
        write_features(paths[-1], fs.features, fs.times, attrs)
    out = tmp_path / "aligned" / "rec.h5"
    smk = type("Smk", (), {})()
    smk.input = namedlist(responses=str(responses), features=[str(p) for p in paths])
    smk.output = namedlist([str(out)])
    smk.params = namedlist(
        timeline=[["A", 1.0], ["B", 4.0]], source="the `stimulus` column of rec.tsv"
    )
    smk.wildcards = namedlist(recording="rec", extractor="motion_energy")
    smk.log = namedlist([str(tmp_path / "align.log")])
    smk.threads = 1
    run_script(str(REPO / "scripts" / "align.py"), init_globals={"snakemake": smk})

    fs = read_features(out)
    np.testing.assert_allclose(fs.features[:, 0], [0, 2, 6, 0, 9])
    np.testing.assert_array_equal(fs.times, times)
    assert fs.attrs["recording"] == "rec"
    assert fs.attrs["extractor"] == "motion_energy"
    assert fs.attrs["timeline"] == [["A", 1.0], ["B", 4.0]]
    assert fs.attrs["sampling_rate"] == 1.0 and fs.attrs["duration"] == 5.0
    assert fs.attrs["model_id"] == "pymoten" and fs.attrs["revision"] == "0.1.3"
    assert fs.attrs["provenance"]["step"] == "align"
    assert set(fs.attrs["provenance"]["inputs"]) == {"responses", "A", "B"}


def test_align_script_leaves_nothing_when_the_recording_is_too_short(tmp_path: Path) -> None:
    responses = tmp_path / "rec.h5"
    write_responses(responses, np.zeros((2, 1)), seconds(2, 1.0), ["n0"], {"sampling_rate": 1.0})
    fs = video([1, 3, 5, 7], 2)
    write_features(tmp_path / "A.h5", fs.features, fs.times, fs.attrs)
    out = tmp_path / "aligned" / "rec.h5"
    smk = type("Smk", (), {})()
    smk.input = namedlist(responses=str(responses), features=[str(tmp_path / "A.h5")])
    smk.output = namedlist([str(out)])
    smk.params = namedlist(timeline=[["A", 1.0]], source="the `stimulus` column of rec.tsv")
    smk.wildcards = namedlist(recording="rec", extractor="motion_energy")
    smk.log = namedlist([str(tmp_path / "align.log")])
    smk.threads = 1
    with pytest.raises(InputError, match="recording 'rec' is 2.000 s long"):
        run_script(str(REPO / "scripts" / "align.py"), init_globals={"snakemake": smk})
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())
    assert "recording 'rec' is 2.000 s long" in (tmp_path / "align.log").read_text()
