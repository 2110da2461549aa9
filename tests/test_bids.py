"""The BIDS + fMRIPrep front door (neurovid.bids): runs -> recordings-sheet rows."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _bids_dataset import SPACE, make_bids  # noqa: E402

from neurovid import bids, sheets  # noqa: E402
from neurovid.align import timeline_features  # noqa: E402
from neurovid.errors import InputError  # noqa: E402
from neurovid.io import FeatureSet  # noqa: E402

EVENTS = ((0.0, 4.0, "clip.mp4"), (5.0, 2.0, "n/a"), (6.0, 3.0, "stimuli/other.mp4"))
VIDEOS = pd.DataFrame(
    {"video_id": ["clip", "other-video"], "path": ["data/clip.mp4", "data/other.mp4"]}
)


def settings(tmp_path: Path, **more) -> dict:
    return {
        "root": str(tmp_path / "ds"),
        "derivatives": str(tmp_path / "ds/derivatives/fmriprep"),
        "space": SPACE,
        **more,
    }


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    make_bids(
        tmp_path / "ds",
        tmp_path / "ds/derivatives/fmriprep",
        subjects=("01", "02"),
        runs=(1, 2),
        events=EVENTS,
    )
    return tmp_path


def test_each_run_with_events_becomes_a_sheet_row(dataset: Path) -> None:
    table = bids.bids_recordings(settings(dataset), VIDEOS)
    assert list(table["recording_id"]) == [
        "sub-01_task-movie_run-1",
        "sub-01_task-movie_run-2",
        "sub-02_task-movie_run-1",
        "sub-02_task-movie_run-2",
    ]
    row = table.iloc[2]
    assert row["subject"] == "sub-02" and row["modality"] == "fmri" and row["tr"] == 1.0
    # stim_file by file name (a stimuli/ path included); an n/a row is not a stimulus
    assert row["stimulus"] == "clip@0;other-video@6"
    func = dataset / "ds/derivatives/fmriprep/sub-02/func"
    assert (
        Path(row["path"])
        == func / f"sub-02_task-movie_run-1_space-{SPACE}_desc-preproc_bold.nii.gz"
    )
    assert Path(row["confounds"]) == func / "sub-02_task-movie_run-1_desc-confounds_timeseries.tsv"
    assert Path(row["sidecar"]).name.endswith("_desc-preproc_bold.json")
    assert Path(row["events"]).name == "sub-02_task-movie_run-1_events.tsv"


def test_filters_and_the_derived_sheet_read_back_as_a_recordings_sheet(
    dataset: Path, schemas: Path
) -> None:
    table = bids.bids_recordings(settings(dataset, subject="02", run=[2]), VIDEOS)
    assert list(table["recording_id"]) == ["sub-02_task-movie_run-2"]
    sheet = dataset / "results/sheets/recordings.tsv"
    assert bids.write_sheet(table, sheet) and not bids.write_sheet(table, sheet)
    videos = VIDEOS.assign(kind="stimulus").set_index("video_id", drop=False)
    loaded = sheets.load_recordings(sheet, schemas / "recordings.schema.yaml", videos)
    assert loaded.loc["sub-02_task-movie_run-2", "timeline"] == [
        sheets.StimulusEvent("clip", 0.0),
        sheets.StimulusEvent("other-video", 6.0),
    ]


def test_the_sidecar_gives_the_tr_and_its_absence_is_an_error(tmp_path: Path) -> None:
    make_bids(tmp_path / "ds", tmp_path / "ds/derivatives/fmriprep", tr=None, events=EVENTS)
    table = bids.bids_recordings(settings(tmp_path), VIDEOS)
    assert pd.isna(table.at[0, "tr"])
    sidecar = Path(table.at[0, "sidecar"])
    with pytest.raises(InputError) as err:
        bids.repetition_time(sidecar, None, "sub-01_task-movie_run-1")
    message = str(err.value)
    assert str(sidecar) in message and "[RepetitionTime]" in message
    assert "no RepetitionTime" in message and "task-<task>_bold.json" in message
    assert bids.repetition_time(sidecar, 2.0, "r") == 2.0  # the raw dataset's
    sidecar.write_text(json.dumps({"RepetitionTime": 1.5}))
    assert bids.repetition_time(sidecar, 2.0, "r") == 1.5  # fMRIPrep's wins


def test_a_stim_file_not_in_the_videos_sheet_names_the_events_row(dataset: Path) -> None:
    with pytest.raises(InputError) as err:
        bids.bids_recordings(settings(dataset), VIDEOS.iloc[:1], "lab/videos.tsv")
    message = str(err.value)
    assert "sub-01_task-movie_run-1_events.tsv [stim_file]" in message
    assert (
        "row 4: stim_file 'stimuli/other.mp4' is not in the videos sheet lab/videos.tsv" in message
    )
    assert "Fix: add a row for it to lab/videos.tsv" in message


def test_missing_fmriprep_outputs_are_named(dataset: Path) -> None:
    with pytest.raises(
        InputError, match=r"has no preprocessed BOLD of run sub-01_task-movie_run-1 in space T1w"
    ):
        bids.bids_recordings(settings(dataset, space="T1w"), VIDEOS)
    gone = settings(dataset, derivatives=str(dataset / "nowhere"))
    with pytest.raises(
        InputError, match=r"nowhere \[derivatives\]: the fMRIPrep derivatives folder does not exist"
    ):
        bids.bids_recordings(gone, VIDEOS)
    with pytest.raises(
        InputError, match=r"has no functional runs with events matching \{'task': \['rest'\]\}"
    ):
        bids.bids_recordings(settings(dataset, task="rest"), VIDEOS)


def test_derivatives_made_by_the_workflow_are_expected_under_fmriprep_names(
    tmp_path: Path,
) -> None:
    make_bids(tmp_path / "ds", tmp_path / "unused", derivatives=False, events=EVENTS)
    work = {"root": str(tmp_path / "ds"), "derivatives": "results/demo/fmriprep", "space": SPACE}
    table = bids.bids_recordings(work, VIDEOS, workdir=tmp_path)
    stem = "results/demo/fmriprep/sub-01/func/sub-01_task-movie_run-1"
    assert table.at[0, "path"] == f"{stem}_space-{SPACE}_desc-preproc_bold.nii.gz"
    assert table.at[0, "confounds"] == f"{stem}_desc-confounds_timeseries.tsv"


def test_an_event_past_the_end_of_its_run_names_the_events_file() -> None:
    clip = FeatureSet(
        features=np.ones((40, 2), np.float32), times=(np.arange(40) + 0.5) / 10, attrs={}
    )
    source = "the BIDS events file ds/sub-01/func/sub-01_task-movie_run-1_events.tsv"
    with pytest.raises(InputError) as err:
        timeline_features(
            [sheets.StimulusEvent("clip", 8.0)],
            {"clip": clip},
            np.arange(10) + 0.5,
            recording="sub-01_task-movie_run-1",
            source=source,
        )
    assert "is 10.000 s long" in str(err.value) and "ends at 12.000 s" in str(err.value)
    assert f"Fix: check the onsets in {source}" in str(err.value)


def test_the_demo_comes_through_the_bids_door(repo: Path) -> None:
    config = yaml.safe_load((repo / "config.yaml").read_text())
    videos = pd.read_csv(repo / config["videos"], sep="\t")
    table = bids.bids_recordings(config["bids"], videos, workdir=repo)
    assert len(table) == 12 and set(table["subject"]) == {f"sub-0{s}" for s in range(1, 5)}
    row = table.set_index("recording_id").loc["sub-02_task-movie_run-3"]
    assert row["stimulus"] == "gen03@0;gen04@60" and row["tr"] == 1.0
    assert row["confounds"] == (
        "results/demo/fmriprep/sub-02/func/sub-02_task-movie_run-3_desc-confounds_timeseries.tsv"
    )


def test_paths_stay_relative_and_the_same_once_the_workflow_made_the_derivatives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Snakemake re-runs a job whose set of input files changed: the sheet must name the
    # same files before and after the derivatives exist, and in a copied project.
    monkeypatch.chdir(tmp_path)
    make_bids(Path("ds"), Path("unused"), derivatives=False, events=EVENTS)
    work = {"root": "ds", "derivatives": "results/fmriprep", "space": SPACE}
    before = bids.bids_recordings(work, VIDEOS, workdir=tmp_path)
    make_bids(Path("ds"), Path("results/fmriprep"), events=EVENTS)  # what the jobs make
    after = bids.bids_recordings(work, VIDEOS, workdir=tmp_path)
    pd.testing.assert_frame_equal(before, after)
    assert after.at[0, "events"] == "ds/sub-01/func/sub-01_task-movie_run-1_events.tsv"
    assert not any(Path(p).is_absolute() for p in after[["path", "sidecar", "confounds"]].iloc[0])
