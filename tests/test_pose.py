"""DeepLabCut pose: project checks, the pose reader, and a real train + analyze run.

The checks and the reader run here, in the main env (pandas 3, no DeepLabCut).
The real run needs DeepLabCut, which lives in its own env (pandas<3): the pose_train
and pose rule scripts run from here as Snakemake runs them without conda and hand
themselves to that interpreter ($NEUROVID_POSE_PYTHON, else .venv-pose/bin/python of
the repository), on the shared open-field project; the results are checked here.
"""

from __future__ import annotations

import json
import logging
import resource
import shutil
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import SHARED_DATA, namedlist, run_script

from neurovid.errors import InputError
from neurovid.pose import (
    check_project,
    list_snapshots,
    output_to_log,
    pose_python,
    prepare_training_project,
    project_config_of,
    read_dlc_pose,
    select_labelled_frames,
)

REPO = Path(__file__).resolve().parents[1]
OPENFIELD = SHARED_DATA / "dlc-openfield"
BODYPARTS = ["snout", "leftear", "rightear", "tailbase"]
PLACEHOLDER = "WILL BE AUTOMATICALLY UPDATED BY DEMO CODE"
MODEL_DIR = "dlc-models-pytorch/iteration-0/openfieldOct30-trainset95shuffle1/train"
needs_data = pytest.mark.skipif(not OPENFIELD.is_dir(), reason=f"no test data at {OPENFIELD}")


def rewrite_project_config(config_path: Path) -> None:
    """Point project_path and video_sets at the copy (SOURCE.md: they are placeholders)."""
    project = config_path.parent
    text = config_path.read_text()
    text = text.replace(f"project_path: {PLACEHOLDER}", f"project_path: {project}")
    text = text.replace(f"  {PLACEHOLDER}:", f"  {project / 'videos' / 'm4s1.mp4'}:")
    config_path.write_text(text)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """config.yaml of a copy of the open-field project (labels, no trained model)."""
    if not OPENFIELD.is_dir():
        pytest.skip(f"no test data at {OPENFIELD}")
    dest = tmp_path / "openfield"
    shutil.copytree(OPENFIELD, dest)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)  # the shared copy is read-only
    rewrite_project_config(dest / "config.yaml")
    return dest / "config.yaml"


def cut_video(source: Path, dest: Path, n_frames: int) -> Path:
    """The first ``n_frames`` of a video, re-encoded with PyAV (H.264)."""
    with av.open(str(source)) as src, av.open(str(dest), "w") as out:
        stream = src.streams.video[0]
        rate = stream.average_rate or Fraction(30)
        encoder = out.add_stream("libx264", rate=rate)
        encoder.width, encoder.height, encoder.pix_fmt = stream.width, stream.height, "yuv420p"
        for index, frame in enumerate(src.decode(stream)):
            if index == n_frames:
                break
            out.mux(encoder.encode(frame.reformat(format="yuv420p")))
        out.mux(encoder.encode())
    return dest


def fake_snapshots(config_path: Path, names: list[str]) -> Path:
    train = config_path.parent / MODEL_DIR
    train.mkdir(parents=True)
    for name in names:
        (train / name).write_bytes(b"")
    return train


# --- project checks (no DeepLabCut needed) ---------------------------------------------


def test_a_missing_project_names_the_field_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "no-project" / "config.yaml"
    with pytest.raises(InputError) as err:
        check_project(missing, shuffle=1)
    message = str(err.value)
    assert str(missing) in message and "[pose.project]" in message
    assert "does not exist" in message and "create_new_project" in message


def test_a_project_without_a_trained_snapshot_says_how_to_train(project: Path) -> None:
    with pytest.raises(InputError) as err:
        check_project(project, shuffle=1)
    message = str(err.value)
    assert "shuffle 1 has no trained snapshot" in message
    assert "openfieldOct30-trainset95shuffle1/train does not exist" in message
    assert "pose.project" in message and "pose_train" in message
    # an empty train folder is no better
    fake_snapshots(project, ["pytorch_config.yaml"])
    with pytest.raises(InputError, match="holds no snapshot"):
        check_project(project, shuffle=1)
    with pytest.raises(InputError, match="shuffle 2 has no trained snapshot"):
        check_project(project, shuffle=2)


def test_a_moved_project_is_rejected_with_the_path_to_set(tmp_path: Path) -> None:
    config = tmp_path / "moved" / "config.yaml"
    config.parent.mkdir()
    text = (OPENFIELD / "config.yaml").read_text() if OPENFIELD.is_dir() else ""
    if not text:
        pytest.skip(f"no test data at {OPENFIELD}")
    config.write_text(text.replace(f"project_path: {PLACEHOLDER}", "project_path: /elsewhere"))
    with pytest.raises(InputError) as err:
        check_project(config)
    assert "project_path is /elsewhere" in str(err.value)
    assert f"set `project_path: {config.parent.resolve()}`" in str(err.value)


def test_snapshots_are_chosen_as_deeplabcut_orders_them(project: Path) -> None:
    names = ["snapshot-010.pt", "snapshot-best-005.pt", "snapshot-001.pt", "train.txt"]
    train = fake_snapshots(project, names)
    ordered = ["snapshot-001.pt", "snapshot-010.pt", "snapshot-best-005.pt"]  # best last
    assert [p.name for p in list_snapshots(train)] == ordered
    assert check_project(project).name == "snapshot-best-005.pt"  # snapshotindex: -1
    assert check_project(project, snapshot=0).name == "snapshot-001.pt"
    assert check_project(project, snapshot="-2").name == "snapshot-010.pt"
    assert check_project(project, snapshot="last").name == "snapshot-010.pt"
    assert check_project(project, snapshot="best").name == "snapshot-best-005.pt"
    assert check_project(project, snapshot="snapshot-001").name == "snapshot-001.pt"
    with pytest.raises(InputError) as err:
        check_project(project, snapshot=3)
    message = str(err.value)
    assert "[pose.snapshot]" in message and "index 3 is out of range for 3 snapshots" in message
    assert "snapshot-001.pt, snapshot-010.pt, snapshot-best-005.pt" in message
    with pytest.raises(InputError, match="there is no snapshot snapshot-020.pt"):
        check_project(project, snapshot="snapshot-020")


def test_a_training_copy_points_at_itself_and_links_the_labels(
    project: Path, tmp_path: Path
) -> None:
    copy = prepare_training_project(project, tmp_path / "results" / "model")
    config = yaml.safe_load(copy.read_text())
    assert config["project_path"] == str(copy.parent)
    assert config["bodyparts"] == BODYPARTS and config["TrainingFraction"] == [0.95]
    labels = copy.parent / "labeled-data"
    assert labels.is_symlink() and labels.resolve() == (project.parent / "labeled-data").resolve()
    with pytest.raises(InputError, match="shuffle 1 has no trained snapshot"):
        check_project(copy)
    # the pose rule's model input: pose_train's marker names the copy, else the config itself
    marker = tmp_path / "trained.json"
    marker.write_text(json.dumps({"config": str(copy)}))
    assert project_config_of(marker) == copy and project_config_of(project) == project


def test_labelled_frames_are_subsampled_keeping_the_training_fraction() -> None:
    train, test = select_labelled_frames(116, 0.95, max_frames=20)
    assert (len(train), len(test)) == (19, 1)
    assert not set(train) & set(test) and min(train) == 0 and max(train) == 115
    assert round(len(train) / (len(train) + len(test)), 2) == 0.95
    assert select_labelled_frames(116, 0.95, max_frames=20) == (train, test)  # deterministic
    train, test = select_labelled_frames(10, 0.8)
    assert sorted(train + test) == list(range(10)) and len(test) == 2
    with pytest.raises(InputError, match=r"\[pose.train.max_frames\]"):
        select_labelled_frames(116, 0.95, max_frames=1)


def test_without_a_deeplabcut_env_the_error_says_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    import neurovid.pose as pose_module

    if importlib.util.find_spec("deeplabcut") is not None:
        pytest.skip("DeepLabCut is importable here: it runs in this interpreter")
    monkeypatch.setattr(pose_module, "CHECKOUT", tmp_path)  # no .venv-pose there
    monkeypatch.setenv("NEUROVID_POSE_PYTHON", str(tmp_path / "missing" / "python"))
    with pytest.raises(InputError) as err:
        pose_python()
    message = str(err.value)
    assert "DeepLabCut is not installed in this environment" in message
    assert "--sdm conda" in message and ".venv-pose" in message
    assert "NEUROVID_POSE_PYTHON" in message and "constraints-pose.txt" in message
    python = tmp_path / "pose-env" / "python"
    python.parent.mkdir()
    python.touch()
    monkeypatch.setenv("NEUROVID_POSE_PYTHON", str(python))
    assert pose_python() == python


# --- the pose reader -------------------------------------------------------------------


def dlc_table(scorer: str, bodyparts: list[str], n_frames: int) -> pd.DataFrame:
    columns = pd.MultiIndex.from_product(
        [[scorer], bodyparts, ["x", "y", "likelihood"]], names=["scorer", "bodyparts", "coords"]
    )
    values = np.arange(n_frames * len(columns), dtype=float).reshape(n_frames, len(columns))
    values[:, 2::3] = 0.5
    return pd.DataFrame(values, columns=columns)


@pytest.mark.parametrize("suffix", [".h5", ".csv"])
def test_the_reader_returns_frames_by_bodyparts_by_xy_likelihood(
    tmp_path: Path, suffix: str
) -> None:
    table = dlc_table("DLC_test", BODYPARTS, 5)
    path = tmp_path / f"pose{suffix}"
    if suffix == ".h5":
        table.to_hdf(path, key="df_with_missing", format="table", mode="w")
    else:
        table.to_csv(path)
    pose, bodyparts, scorer = read_dlc_pose(path, BODYPARTS)
    assert pose.shape == (5, 4, 3) and bodyparts == BODYPARTS and scorer == "DLC_test"
    assert pose[1, 2].tolist() == [18.0, 19.0, 0.5]  # frame 1, rightear: columns 6, 7, 8
    assert np.all(pose[..., 2] == 0.5)


@needs_data
def test_the_reader_reads_labelled_data_with_likelihood_one() -> None:
    labels = OPENFIELD / "labeled-data" / "m4s1" / "CollectedData_Pranav.csv"
    pose, bodyparts, scorer = read_dlc_pose(labels, BODYPARTS)
    assert pose.shape == (116, 4, 3) and scorer == "Pranav"
    assert pose[0, 0].tolist() == [21.521, 265.428, 1.0]  # img0000.png, snout
    from_h5, _, _ = read_dlc_pose(labels.with_suffix(".h5"))
    np.testing.assert_allclose(from_h5, pose, equal_nan=True)


def test_unexpected_bodyparts_are_named(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    dlc_table("DLC_other", ["snout", "leftear", "tailtip"], 3).to_csv(path)
    with pytest.raises(InputError) as err:
        read_dlc_pose(path, expected_bodyparts=BODYPARTS)
    message = str(err.value)
    assert str(path) in message and "[pose.project (bodyparts)]" in message
    assert "missing rightear, tailbase" in message and "unexpected tailtip" in message


def test_a_file_that_is_not_dlc_output_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    pd.DataFrame({"x": [1.0], "y": [2.0]}).to_csv(path, index=False)
    with pytest.raises(InputError, match="not a DeepLabCut pose file"):
        read_dlc_pose(path)


def test_deeplabcut_output_reaches_the_rule_log_and_logging_is_restored(tmp_path: Path) -> None:
    log_file = tmp_path / "rule.log"
    handler = logging.FileHandler(log_file, mode="w")
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [handler]
    try:
        with output_to_log(logging.getLogger("neurovid.test")):
            print("Starting to analyze video.mp4")
            for done in range(3):  # a progress bar: redraws, one kept per 10 s
                sys.stderr.write(f"\r{done}/3 frames")
                sys.stderr.flush()
            sys.stderr.write("\n")
            # what DeepLabCut's training does to logging: replaces the root handlers
            # and adds a console handler on (redirected) stderr
            logging.basicConfig(filename=tmp_path / "train.txt", force=True, level=logging.INFO)
            root.addHandler(logging.StreamHandler())
            logging.getLogger("deeplabcut").info("Epoch 1/1")
        assert root.handlers == [handler]
        logging.getLogger("neurovid.test").warning("after")
    finally:
        root.handlers[:] = saved
        handler.close()
    lines = log_file.read_text().splitlines()
    assert lines == [
        "Starting to analyze video.mp4",
        "0/3 frames",
        "2/3 frames",
        "Epoch 1/1",
        "after",
    ]


# --- real DeepLabCut run ---------------------------------------------------------------


def job(rule: str, *, input, output, params, log: Path):  # noqa: A002 (snakemake's names)
    """The ``snakemake`` object a rule script gets (snakemake.script.Snakemake, picklable)."""
    from snakemake.script import Snakemake

    return Snakemake(
        namedlist(**input),
        namedlist(**output),
        namedlist(**params),
        namedlist(),
        2,
        namedlist(),
        namedlist([str(log)]),
        {},
        rule,
        None,
    )


@needs_data
def test_train_from_scratch_and_analyze_real_video(project: Path, tmp_path: Path) -> None:
    """cspnext_s from scratch, 1 epoch on 20 labelled frames; 100 frames of m3v1mp4.mp4.

    The rule scripts run here as Snakemake runs them without conda, so they hand
    themselves to the DeepLabCut interpreter (neurovid.pose.run_in_pose_env).
    """
    try:
        python = pose_python()
    except InputError as err:
        pytest.skip(f"no DeepLabCut env: {err}")
    video = cut_video(OPENFIELD / "videos" / "m3v1mp4.mp4", tmp_path / "m3v1_100.mp4", 100)
    results = tmp_path / "results"
    trained = results / "pose" / "model" / "project"
    marker = results / "pose" / "model" / "trained.json"
    h5_path, csv_path = results / "pose" / "m3v1.h5", results / "pose" / "m3v1.csv"
    train_log, pose_log = (
        results / "logs" / "pose" / "train.log",
        results / "logs" / "pose" / "m3v1.log",
    )
    train_log.parent.mkdir(parents=True)
    settings = {
        "shuffle": 1,
        "trainingsetindex": 0,
        "snapshot": None,
        "batch_size": 4,
        "device": "cpu",
        "train": {
            "enabled": True,
            "net_type": "cspnext_s",
            "from_scratch": True,
            "epochs": 1,
            "max_frames": 20,
            "batch_size": 4,
        },
    }
    start = time.perf_counter()
    run_script(
        str(REPO / "scripts" / "pose_train.py"),
        {
            "snakemake": job(
                "pose_train",
                input={"project": str(project)},
                output={"project": str(trained), "marker": str(marker)},
                params={"settings": settings, "seed": 0},
                log=train_log,
            )
        },
    )
    run_script(
        str(REPO / "scripts" / "pose.py"),
        {
            "snakemake": job(
                "pose",
                input={"video": str(video), "model": str(marker)},
                output={"h5": str(h5_path), "csv": str(csv_path)},
                params={"settings": settings},
                log=pose_log,
            )
        },
    )
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    where = "in this interpreter" if python is None else f"in {python}"
    print(f"DeepLabCut train + analyze {where}: {seconds:.1f} s, peak child RSS {peak_mb:.0f} MB")

    # the trained copy and its marker; the user's project was not written to
    trained_with = json.loads(marker.read_text())
    assert trained_with["snapshot"].endswith(f"{MODEL_DIR}/snapshot-001.pt")
    assert Path(trained_with["snapshot"]).is_file()
    assert trained_with["provenance"]["params"]["from_scratch"] is True
    assert not (project.parent / "dlc-models-pytorch").exists()
    train_text = train_log.read_text()
    assert "training on 19 labelled frames, testing on 1" in train_text
    assert "initialised cspnext_s from scratch" in train_text and "Epoch 1/1" in train_text

    # DeepLabCut's own format: 4 body parts x (x, y, likelihood), one row per frame
    table = pd.read_csv(csv_path, header=[0, 1, 2], index_col=0)
    assert table.shape == (100, 12)
    assert list(table.columns.get_level_values("bodyparts")[::3]) == BODYPARTS
    assert list(table.columns.get_level_values("coords")[:3]) == ["x", "y", "likelihood"]
    pose, bodyparts, scorer = read_dlc_pose(h5_path, BODYPARTS)
    assert pose.shape == (100, 4, 3) and bodyparts == BODYPARTS
    assert scorer == "DLC_CspnextS_openfieldOct30shuffle1_snapshot_1"
    np.testing.assert_allclose(pose.reshape(100, 12), table.to_numpy(), rtol=1e-6)
    assert np.isfinite(pose).all() and ((pose[..., 2] >= 0) & (pose[..., 2] <= 1)).all()
    with h5py.File(h5_path, "r") as h5:
        record = json.loads(h5.attrs["neurovid_provenance"])
    assert record["step"] == "pose" and record["versions"]["deeplabcut"] == "3.0.2"
    assert record["inputs"]["snapshot"]["path"] == trained_with["snapshot"]
    # no temporary DeepLabCut folder left behind
    assert sorted(p.name for p in (results / "pose").iterdir()) == ["m3v1.csv", "m3v1.h5", "model"]
    pose_text = pose_log.read_text()
    assert "Starting to analyze" in pose_text and "100 frames" in pose_text
