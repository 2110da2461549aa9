"""NWB out: pose (ndx-pose) and kinematics of a behavior video, inspector-clean, and
movement reads back the same pose."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_pose_formats import FPS, SCALE, movement_dataset, write_calms21

from neurovid.behavior.kinematics import compute_kinematics, write_kinematics
from neurovid.behavior.nwb_out import EPOCH, write_pose_nwb
from neurovid.behavior.pose_io import load_pose_dataset
from neurovid.errors import InputError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def blocking_issues(path: Path) -> list:
    from nwbinspector import Importance, inspect_nwbfile

    issues = list(inspect_nwbfile(nwbfile_path=str(path)))
    return [i for i in issues if i.importance in (Importance.CRITICAL, Importance.ERROR)]


def dlc_inputs(folder: Path) -> tuple[Path, Path, Path]:
    from movement.io import save_poses

    save_poses.to_dlc_file(movement_dataset(), folder / "pose.h5")
    pose = folder / "pose_mouse.h5"
    table, summary = compute_kinematics(pose, FPS, **SCALE)
    kin_csv = folder / "kin.csv"
    write_kinematics(table, summary, kin_csv, folder / "kin.json", {})
    video = folder / "data" / "v1.mp4"
    video.parent.mkdir()
    video.write_bytes(b"")  # stands for the video: only its path goes into the file
    return pose, kin_csv, video


def test_nwb_out_single_animal(tmp_path: Path) -> None:
    import pynwb
    from movement.io import load_poses

    pose, kin_csv, video = dlc_inputs(tmp_path)
    out = tmp_path / "results" / "nwb" / "v1.nwb"
    record = {"step": "pose_nwb", "versions": {"neurovid": "0.1.0"}}
    write_pose_nwb(
        out, pose, kin_csv, fps=FPS, video_id="v1", video=video, subject_id="m7",
        provenance=record,
    )  # fmt: skip
    assert out.is_file() and [p.name for p in out.parent.iterdir()] == ["v1.nwb"]
    assert blocking_issues(out) == []
    # movement reads back the same pose: values, body parts; individual via the skeleton.
    source = load_pose_dataset(pose, FPS)
    back = load_poses.from_nwb_file(out)
    parts = [str(k) for k in source.keypoints.values]
    assert sorted(str(k) for k in back.keypoints.values) == sorted(parts)
    back = back.sel(keypoints=parts)  # movement lists the series by name
    np.testing.assert_array_equal(
        back.position.transpose("time", "space", "keypoints", "individuals").values,
        source.position.values,
    )
    np.testing.assert_array_equal(
        back.confidence.transpose("time", "keypoints", "individuals").values,
        source.confidence.values,
    )
    np.testing.assert_allclose(back.time.values, source.time.values)
    assert back.attrs["source_software"] == "DeepLabCut"
    again = load_pose_dataset(out, FPS)  # skeleton order, individual from the subject
    assert [str(k) for k in again.keypoints.values] == parts
    assert [str(i) for i in again.individuals.values] == ["m7"]
    np.testing.assert_array_equal(again.position.values, source.position.values)
    with pynwb.NWBHDF5IO(out, mode="r") as io:
        nwb = io.read()
        assert nwb.session_start_time == EPOCH  # the stand-in video has no creation_time
        assert json.loads(nwb.notes) == record
        assert nwb.subject.subject_id == "m7"
        module = nwb.processing["behavior"]
        estimation = module["PoseEstimation"]
        assert estimation.source_video.external_file[:].tolist() == ["../../data/v1.mp4"]
        individual = str(source.individuals.values[0])  # DLC single-animal: individual_0
        assert module["Skeletons"][f"{individual}_skeleton"].nodes[:].tolist() == parts
        kin = module["kinematics"]
        table = pd.read_csv(kin_csv)
        np.testing.assert_allclose(kin["speed"].data[:], table["speed_cm_per_s"], equal_nan=True)
        np.testing.assert_allclose(kin["position"].data[:], table[["x_cm", "y_cm"]].to_numpy())
        assert kin["acceleration"].unit == "cm/s^2" and kin["position"].unit == "cm"
        assert kin["speed"].rate == FPS
        identifier = nwb.identifier
    # Same inputs -> same identifier.
    write_pose_nwb(tmp_path / "again.nwb", pose, kin_csv, fps=FPS, video_id="v1", video=video)
    with pynwb.NWBHDF5IO(tmp_path / "again.nwb", mode="r") as io:
        assert io.read().identifier == identifier


def test_nwb_out_two_animals_calms21(tmp_path: Path) -> None:
    path = tmp_path / "calms21.json"
    write_calms21(path, {"task1/test/mouse009_task1_annotator1": 120})
    source = load_pose_dataset(path, FPS)
    kin_csv = tmp_path / "kin.csv"
    table, summary = compute_kinematics(path, FPS, reference_cm=8.0, reference_px=40.0)
    write_kinematics(table, summary, kin_csv, tmp_path / "kin.json", {})
    out = tmp_path / "two.nwb"
    write_pose_nwb(out, path, kin_csv, fps=FPS, video_id="s9", pose_source="calms21")
    assert blocking_issues(out) == []
    back = load_pose_dataset(out, FPS)
    assert [str(i) for i in back.individuals.values] == ["resident", "intruder"]
    assert back.attrs["source_software"] == "CalMS21"
    np.testing.assert_array_equal(back.position.values, source.position.values)
    from movement.io import load_poses

    intruder = load_poses.from_nwb_file(out, pose_estimation_key="PoseEstimation_intruder")
    intruder = intruder.sel(keypoints=list(source.keypoints.values)).isel(individuals=0)
    assert intruder.attrs["source_software"] == "CalMS21"
    np.testing.assert_array_equal(
        intruder.position.values, source.position.sel(individuals="intruder").values
    )


def test_nwb_out_bad_kinematics_leaves_no_file(tmp_path: Path) -> None:
    pose, kin_csv, video = dlc_inputs(tmp_path)
    short = tmp_path / "short.csv"
    pd.read_csv(kin_csv).iloc[:10].to_csv(short, index=False)
    out = tmp_path / "nwb" / "v1.nwb"
    with pytest.raises(InputError) as err:
        write_pose_nwb(out, pose, short, fps=FPS, video_id="v1", video=video)
    assert str(err.value).startswith(f"{short} [kinematics]: the kinematics table has 10 rows")
    assert "Fix: rerun the kinematics rule" in str(err.value)
    assert not out.exists()


def test_nwb_out_subject_from_the_sheet(tmp_path: Path) -> None:
    import pynwb

    pose, kin_csv, video = dlc_inputs(tmp_path)
    out = tmp_path / "v1.nwb"
    subject = {"species": "Mus musculus", "sex": "F", "age": "P90D/P120D"}
    write_pose_nwb(out, pose, kin_csv, fps=FPS, video_id="v1", video=video, subject=subject)
    with pynwb.NWBHDF5IO(out, mode="r") as io:
        got = io.read().subject
        assert (got.subject_id, got.species, got.sex, got.age) == ("v1", *subject.values())
    sheet = tmp_path / "videos.tsv"
    with pytest.raises(InputError) as err:
        write_pose_nwb(tmp_path / "bad.nwb", pose, kin_csv, fps=FPS, video_id="v1",
                       subject={"age": "90 days"}, sheet=sheet)  # fmt: skip
    assert str(err.value).startswith(f"{sheet} [age]: age '90 days' is not an ISO 8601 duration.")
    assert "Fix: write it as P90D" in str(err.value)
    assert not (tmp_path / "bad.nwb").exists()
