"""Sample-sheet validation: every problem gets a message naming file, row, field and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from neurovid.errors import InputError
from neurovid.sheets import StimulusEvent, load_recordings, load_videos, parse_stimulus


def write(path: Path, rows: list[list[str]]) -> Path:
    path.write_text("\n".join("\t".join(r) for r in rows) + "\n")
    return path


@pytest.fixture
def video_file(tmp_path: Path) -> Path:
    f = tmp_path / "clip.mp4"
    f.write_bytes(b"not checked here")
    return f


def videos_sheet(tmp_path: Path, rows: list[list[str]]) -> Path:
    return write(tmp_path / "videos.tsv", [["video_id", "path", "kind"], *rows])


def test_demo_sheets_load(repo: Path, schemas: Path) -> None:
    videos = load_videos(repo / "demo/videos.tsv", schemas / "videos.schema.yaml", workdir=repo)
    recordings = load_recordings(
        repo / "demo/recordings.tsv", schemas / "recordings.schema.yaml", videos, workdir=repo
    )
    assert list(videos.index) == [
        "bigbuckbunny",
        "bikes",
        "gen01",
        "gen02",
        "gen03",
        "gen04",
        "openfield-1",
        "openfield-2",
    ]
    assert set(videos.loc[videos["kind"] == "behavior", "pose"]) == {
        "results/demo/behavior/openfield-1.pose.h5",
        "results/demo/behavior/openfield-2.pose.h5",
    }
    # The fMRI comes through the BIDS door (tests/test_bids.py); mouse-1 through NWB.
    assert len(recordings) == 8  # mouse-*_run-4 repeat run-3 (noise ceiling)
    assert recordings.at["mouse-2_run-1", "timeline"] == [
        StimulusEvent("bigbuckbunny", 0.0),
        StimulusEvent("gen01", 6.0),
    ]
    assert recordings.at["mouse-1_run-1", "timeline"] is None
    assert recordings.at["mouse-1_run-1", "stimulus_table"] == "presentations"
    assert recordings.at["mouse-2_run-1", "modality"] == "calcium"
    assert recordings.at["mouse-2_run-1", "sampling_rate"] == 10.0


def test_duplicate_ids(tmp_path: Path, schemas: Path, video_file: Path) -> None:
    sheet = videos_sheet(
        tmp_path,
        [
            ["a", str(video_file), "stimulus"],
            ["b", str(video_file), "stimulus"],
            ["a", str(video_file), "behavior"],
        ],
    )
    with pytest.raises(InputError) as err:
        load_videos(sheet, schemas / "videos.schema.yaml")
    assert str(sheet) in str(err.value)
    assert "video_id 'a' appears 2 times (rows 2, 4)" in str(err.value)
    assert "Fix: give every row its own video_id" in str(err.value)


@pytest.mark.parametrize("bad_id", ["../escape", "has space", "a/b", "dot.ted"])
def test_ids_cannot_leave_results(
    tmp_path: Path, schemas: Path, video_file: Path, bad_id: str
) -> None:
    sheet = videos_sheet(
        tmp_path, [["ok", str(video_file), "stimulus"], [bad_id, str(video_file), "stimulus"]]
    )
    with pytest.raises(InputError) as err:
        load_videos(sheet, schemas / "videos.schema.yaml")
    message = str(err.value)
    assert (
        f"row 3 (video_id={bad_id!r}): {bad_id!r} may only contain letters, digits, '_' and '-'"
        in message
    )
    assert "[video_id]" in message and "no spaces, slashes or dots" in message


def test_missing_path(tmp_path: Path, schemas: Path) -> None:
    sheet = videos_sheet(tmp_path, [["v1", "nowhere/clip.mp4", "stimulus"]])
    with pytest.raises(InputError) as err:
        load_videos(sheet, schemas / "videos.schema.yaml", workdir=tmp_path)
    assert "row 2 (video_id='v1'): file 'nowhere/clip.mp4' does not exist" in str(err.value)
    assert "[path]" in str(err.value)


def test_paths_under_results_are_left_to_the_workflow(tmp_path: Path, schemas: Path) -> None:
    sheet = videos_sheet(tmp_path, [["v1", "results/demo/stimuli/v1.mp4", "stimulus"]])
    assert (
        load_videos(sheet, schemas / "videos.schema.yaml", workdir=tmp_path).at["v1", "path"]
        == "results/demo/stimuli/v1.mp4"
    )


def test_missing_column_and_bad_enum_and_number(
    tmp_path: Path, schemas: Path, video_file: Path
) -> None:
    sheet = write(tmp_path / "v.tsv", [["video_id", "path"], ["a", str(video_file)]])
    with pytest.raises(InputError, match=r"required column\(s\) kind missing"):
        load_videos(sheet, schemas / "videos.schema.yaml")
    sheet = videos_sheet(
        tmp_path, [["a", str(video_file), "stimulus"], ["b", str(video_file), "movie"]]
    )
    with pytest.raises(
        InputError, match=r"row 3 \(video_id='b'\): 'movie' is not one of stimulus, behavior"
    ):
        load_videos(sheet, schemas / "videos.schema.yaml")
    sheet = write(
        tmp_path / "v.tsv",
        [["video_id", "path", "kind", "fps"], ["a", str(video_file), "stimulus", "fast"]],
    )
    with pytest.raises(InputError, match=r"row 2 \(video_id='a'\): 'fast' is not a number"):
        load_videos(sheet, schemas / "videos.schema.yaml")


def recordings_sheet(tmp_path: Path, rows: list[list[str]]) -> Path:
    return write(
        tmp_path / "recordings.tsv",
        [["recording_id", "subject", "modality", "path", "stimulus"], *rows],
    )


@pytest.fixture
def videos(tmp_path: Path, schemas: Path, video_file: Path):
    sheet = videos_sheet(
        tmp_path, [["a", str(video_file), "stimulus"], ["b", str(video_file), "stimulus"]]
    )
    return load_videos(sheet, schemas / "videos.schema.yaml")


def test_unknown_modality(tmp_path: Path, schemas: Path, videos, video_file: Path) -> None:
    sheet = recordings_sheet(tmp_path, [["r1", "s1", "eeg", str(video_file), "a"]])
    with pytest.raises(InputError) as err:
        load_recordings(sheet, schemas / "recordings.schema.yaml", videos)
    assert "row 2 (recording_id='r1'): 'eeg' is not one of fmri, spikes, calcium." in str(err.value)
    assert "[modality]" in str(err.value)


def test_stimulus_problems(tmp_path: Path, schemas: Path, videos, video_file: Path) -> None:
    for stimulus, expected in [
        ("a@0;zzz@5", "video 'zzz' is not in videos.tsv"),
        ("a@10;b@5", "onsets must increase"),
        ("a@-1", "onset of 'a' is negative"),
        ("a@soon", "onset 'soon' of 'a' is not a number of seconds"),
    ]:
        sheet = recordings_sheet(tmp_path, [["r1", "s1", "fmri", str(video_file), stimulus]])
        with pytest.raises(InputError) as err:
            load_recordings(sheet, schemas / "recordings.schema.yaml", videos)
        assert expected in str(err.value) and "[stimulus]" in str(err.value)


def test_subject_with_two_modalities(
    tmp_path: Path, schemas: Path, videos, video_file: Path
) -> None:
    sheet = recordings_sheet(
        tmp_path,
        [["r1", "s1", "fmri", str(video_file), "a"], ["r2", "s1", "spikes", str(video_file), "b"]],
    )
    with pytest.raises(InputError, match="subject 's1' has recordings of several modalities"):
        load_recordings(sheet, schemas / "recordings.schema.yaml", videos)


def test_parse_stimulus() -> None:
    assert parse_stimulus("v1") == [StimulusEvent("v1", 0.0)]
    assert parse_stimulus(" v1@0 ; v2@12.5 ;") == [
        StimulusEvent("v1", 0.0),
        StimulusEvent("v2", 12.5),
    ]
    with pytest.raises(ValueError, match="names no video"):
        parse_stimulus(" ; ")


def test_missing_annotations_file_is_named_with_its_column(
    tmp_path: Path, schemas: Path, video_file: Path
) -> None:
    clip = video_file
    sheet = write(
        tmp_path / "behavior.tsv",
        [
            ["video_id", "path", "kind", "annotations", "pose"],
            ["b1", str(clip), "behavior", "labels/b1.csv", ""],
        ],
    )
    with pytest.raises(InputError) as err:
        load_videos(sheet, schemas / "videos.schema.yaml", workdir=tmp_path)
    assert "row 2 (video_id='b1'): file 'labels/b1.csv' does not exist" in str(err.value)
    assert "[annotations]" in str(err.value)
