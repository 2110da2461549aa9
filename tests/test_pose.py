"""DeepLabCut pose: project checks, the pose reader, and real train + analyze runs.

The checks and the reader run here, in the main env (pandas 3, no DeepLabCut).
The real run needs DeepLabCut, which lives in its own env (pandas<3): two copies of the
workflow (two labs' projects) train and analyse the shared open-field project with one
between-workflow cache ($SNAKEMAKE_OUTPUT_CACHE, README "Sharing features and models
between projects"); Snakemake runs the pose_train and pose scripts without conda, and
they hand themselves to the DeepLabCut interpreter ($NEUROVID_POSE_PYTHON, here the
repository's .venv-pose/bin/python). The first lab trains, the second takes the trained
model from the cache; the results are checked here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import SHARED_DATA

from neurovid.errors import InputError
from neurovid.pose import (
    TRAINED_MARKER,
    check_project,
    list_snapshots,
    output_to_log,
    pose_python,
    prepare_training_project,
    private_project,
    project_config_of,
    read_dlc_pose,
    rebase_paths,
    select_labelled_frames,
    store_trained_project,
)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from _workflow import copy_workflow  # noqa: E402

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


def copy_project(dest: Path) -> Path:
    """config.yaml of a copy of the open-field project (labels, no trained model)."""
    shutil.copytree(OPENFIELD, dest)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)  # the shared copy is read-only
    rewrite_project_config(dest / "config.yaml")
    return dest / "config.yaml"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    if not OPENFIELD.is_dir():
        pytest.skip(f"no test data at {OPENFIELD}")
    return copy_project(tmp_path / "openfield")


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
    # the pose rule's model input: pose_train's folder (its marker names the config), else
    # the project's config itself
    (copy.parent / TRAINED_MARKER).write_text(json.dumps({"config": "config.yaml"}))
    assert project_config_of(copy.parent) == copy and project_config_of(project) == project


def fake_training(project: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A training copy as DeepLabCut leaves it: absolute paths of where it was trained."""
    copy = prepare_training_project(project, tmp_path / "results" / ".project.tmp-1")
    root = copy.parent
    train = fake_snapshots(copy, ["scratch-init.pt", "snapshot-001.pt"])
    (train / "snapshot-001.pt").write_bytes(b"weights")
    (train / "pytorch_config.yaml").write_text(
        f"net_type: cspnext_s\nmetadata:\n  project_path: {root}\n"
        f"  pose_config_path: {train / 'pytorch_config.yaml'}\n"
        "  bodyparts:\n  - snout\nweight_init:\n  dataset: superanimal_quadruped\n"
    )
    (train / "train.txt").write_text(f"metadata: project_path=PosixPath('{root}')\n")
    (train.parent / "test").mkdir()
    (train.parent / "test" / "pose_cfg.yaml").write_text(f"dataset: {root}\nnum_joints: 4\n")
    return copy, train


def test_a_trained_model_is_stored_without_a_path_of_its_workflow(
    project: Path, tmp_path: Path
) -> None:
    copy, train = fake_training(project, tmp_path)
    root = copy.parent
    marker = store_trained_project(
        root,
        train / "snapshot-001.pt",
        shuffle=1,
        trainingsetindex=0,
        provenance={"step": "pose_train"},
    )
    assert marker == json.loads((root / TRAINED_MARKER).read_text())
    assert (
        marker["config"] == "config.yaml" and marker["snapshot"] == f"{MODEL_DIR}/snapshot-001.pt"
    )
    assert marker["snapshot_digest"] == "sha256:" + hashlib.sha256(b"weights").hexdigest()
    assert yaml.safe_load(copy.read_text())["project_path"] == "."
    model = yaml.safe_load((train / "pytorch_config.yaml").read_text())
    assert model["metadata"]["project_path"] == "."
    assert model["metadata"]["pose_config_path"] == f"./{MODEL_DIR}/pytorch_config.yaml"
    assert model["weight_init"]["dataset"] == "superanimal_quadruped"  # not a path: kept
    assert (train.parent / "test" / "pose_cfg.yaml").read_text().startswith("dataset: .\n")
    assert (train / "train.txt").read_text() == "metadata: project_path=PosixPath('.')\n"
    for path in root.rglob("*"):  # no path of the training folder is left
        if path.is_file():
            assert str(root).encode() not in path.read_bytes(), path
    # the link into the user's labels and the initial weights are gone
    assert not (root / "labeled-data").exists() and not (root / "labeled-data").is_symlink()
    assert [p.name for p in list_snapshots(train)] == ["snapshot-001.pt"]
    assert not (train / "scratch-init.pt").exists()
    # `project_path: .` is the folder the config is in, wherever it is
    moved = tmp_path / "elsewhere" / "project"
    shutil.copytree(root, moved)
    assert check_project(moved / "config.yaml") == moved / MODEL_DIR / "snapshot-001.pt"


def test_analysis_runs_on_a_private_copy_of_the_model(project: Path, tmp_path: Path) -> None:
    copy, train = fake_training(project, tmp_path)
    trained = copy.parent
    store_trained_project(
        trained, train / "snapshot-001.pt", shuffle=1, trainingsetindex=0, provenance={}
    )
    stored = {p: p.read_bytes() for p in trained.rglob("*") if p.is_file()}
    work = private_project(trained / "config.yaml", tmp_path / "work" / "project")
    root = work.parent
    assert yaml.safe_load(work.read_text())["project_path"] == str(root)
    model = yaml.safe_load((root / MODEL_DIR / "pytorch_config.yaml").read_text())
    assert model["metadata"]["project_path"] == str(root)
    assert model["metadata"]["pose_config_path"] == str(root / MODEL_DIR / "pytorch_config.yaml")
    # the snapshot is a link to the stored one, the small files are copies
    snapshot = root / MODEL_DIR / "snapshot-001.pt"
    assert snapshot.is_symlink() and snapshot.resolve() == (train / "snapshot-001.pt").resolve()
    for name in ("pytorch_config.yaml", "train.txt"):
        assert not (root / MODEL_DIR / name).is_symlink()
    assert check_project(work).name == "snapshot-001.pt"
    # what DeepLabCut writes into its copy does not reach the stored model
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.write_text("edited by DeepLabCut")
    assert {p: p.read_bytes() for p in trained.rglob("*") if p.is_file()} == stored
    # a user's own project (absolute project_path) gets a copy too; its labels stay out
    user_copy = private_project(project, tmp_path / "work2")
    assert not (user_copy.parent / "labeled-data").exists()
    assert yaml.safe_load(user_copy.read_text())["project_path"] == str(user_copy.parent)


def test_only_project_paths_are_rebased() -> None:
    text = (
        "project_path: /old\nvideo_sets:\n  /old/videos/a.mp4:\n    crop: 0, 1, 0, 1\n"
        "metadata:\n  pose_config_path: '/old/dlc/pytorch_config.yaml'\n"
        "dataset: /older/thing\n"
    )
    assert rebase_paths(text, "/old", ".") == (
        "project_path: .\nvideo_sets:\n  /old/videos/a.mp4:\n    crop: 0, 1, 0, 1\n"
        "metadata:\n  pose_config_path: './dlc/pytorch_config.yaml'\n"
        "dataset: /older/thing\n"
    )
    assert rebase_paths("dataset: .\n", [".", "/x"], "/new/") == "dataset: /new/\n"
    assert rebase_paths("dataset: ./a\n", ".", "/new") == "dataset: /new/a\n"


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


N_FRAMES = 30
# cspnext_s from scratch (no download), 1 epoch on 5 labelled frames (4 train, 1 test).
TINY_TRAINING = {
    "enabled": True,
    "net_type": "cspnext_s",
    "from_scratch": True,
    "epochs": 1,
    "max_frames": 5,
    "batch_size": 4,
}
TRAINED = "results/pose/model/project"


def pose_workflow(dest: Path, project: Path, video: Path) -> Path:
    """A copy of the workflow whose one behavior video is tracked with a trained ``project``."""
    work = copy_workflow(dest)
    (work / "data").mkdir()
    shutil.copyfile(video, work / "data" / "m3v1.mp4")
    (work / "data" / "rec.tsv").write_text(
        "time\tn0\n" + "".join(f"{(i + 0.5) / 10}\t{i % 3}\n" for i in range(20))
    )
    (work / "videos.tsv").write_text("video_id\tpath\tkind\nm3v1\tdata/m3v1.mp4\tbehavior\n")
    (work / "recordings.tsv").write_text(
        "recording_id\tsubject\tmodality\tpath\tstimulus\tsampling_rate\n"
        "r1\ts1\tspikes\tdata/rec.tsv\tm3v1\t10\n"
    )
    config = yaml.safe_load((work / "config.yaml").read_text())
    config.update(videos="videos.tsv", recordings="recordings.tsv", bids=None)
    config["pose"].update(
        project=str(project), batch_size=4, device="cpu", train=dict(TINY_TRAINING)
    )
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return work


def tree_bytes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (links followed), by relative path."""
    found = {}
    for parent, _, files in os.walk(folder, followlinks=True):
        for name in files:
            path = Path(parent) / name
            found[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def run_snakemake(work: Path, env: dict[str, str], *targets: str) -> tuple[str, float]:
    """Snakemake with the workstation profile and the cache on; its log and wall time."""
    start = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "--profile", "profiles/workstation"]
        + ["--cores", "2", *targets, "--cache"],  # `--cache` last: it takes rule names
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    return log, time.perf_counter() - start


@pytest.fixture(scope="module")
def dlc_workflows(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Two labs' workflows, one shared cache: the first trains, then the second runs.

    The cache's files are read before and after the second lab's run.
    """
    if not OPENFIELD.is_dir():
        pytest.skip(f"no test data at {OPENFIELD}")
    try:
        python = pose_python()
    except InputError as err:
        pytest.skip(f"no DeepLabCut env: {err}")
    root = tmp_path_factory.mktemp("dlc")
    project = copy_project(root / "openfield")
    video = cut_video(OPENFIELD / "videos" / "m3v1mp4.mp4", root / "m3v1.mp4", N_FRAMES)
    cache = root / "cache"
    cache.mkdir()
    first = pose_workflow(root / "lab-a", project, video)
    second = pose_workflow(root / "lab-b", project, video)
    env = {
        **os.environ,
        "SNAKEMAKE_OUTPUT_CACHE": str(cache),
        # the copies have no .venv-pose of their own
        "NEUROVID_POSE_PYTHON": str(python or sys.executable),
    }
    log_a, seconds_a = run_snakemake(first, env, "results/pose/m3v1.h5")
    cached_before = tree_bytes(cache)
    log_b, seconds_b = run_snakemake(second, env, "results/pose/m3v1.h5")
    print(
        f"DeepLabCut via Snakemake: train + analyze {seconds_a:.1f} s, "
        f"from the cache + analyze {seconds_b:.1f} s"
    )
    return SimpleNamespace(
        project=project,
        cache=cache,
        first=first,
        second=second,
        log_a=log_a,
        log_b=log_b,
        cached_before=cached_before,
        cached_after=tree_bytes(cache),
    )


def test_train_from_scratch_and_analyze_real_video(dlc_workflows: SimpleNamespace) -> None:
    """The first lab: pose_train trains and stores its folder in the cache, pose analyses."""
    first, project = dlc_workflows.first, dlc_workflows.project
    results = first / "results"
    assert f"Moving output file {TRAINED} to cache." in dlc_workflows.log_a
    trained = first / TRAINED
    entry = trained.resolve()
    assert trained.is_symlink() and entry.parent == dlc_workflows.cache.resolve()

    # the trained folder: relative paths, a marker, nothing of this workflow
    marker = json.loads((trained / TRAINED_MARKER).read_text())
    assert (
        marker["config"] == "config.yaml" and marker["snapshot"] == f"{MODEL_DIR}/snapshot-001.pt"
    )
    snapshot = trained / marker["snapshot"]
    assert (
        marker["snapshot_digest"] == "sha256:" + hashlib.sha256(snapshot.read_bytes()).hexdigest()
    )
    assert marker["provenance"]["params"]["from_scratch"] is True
    assert marker["provenance"]["inputs"]["project"]["path"] == str(project)
    assert yaml.safe_load((trained / "config.yaml").read_text())["project_path"] == "."
    for name in tree_bytes(entry):
        assert str(first).encode() not in (entry / name).read_bytes(), name
    assert sorted(p.name for p in entry.iterdir()) == [
        ".snakemake_timestamp",
        "config.yaml",
        "dlc-models-pytorch",
        TRAINED_MARKER,
        "training-datasets",
    ]
    assert not (project.parent / "dlc-models-pytorch").exists()  # the user's project: untouched
    assert not (project.parent / "training-datasets").exists()
    train_text = (results / "logs" / "pose" / "train.log").read_text()
    assert "training on 4 labelled frames, testing on 1" in train_text
    assert "initialised cspnext_s from scratch" in train_text and "Epoch 1/1" in train_text

    # DeepLabCut's own format: 4 body parts x (x, y, likelihood), one row per frame
    csv_path, h5_path = results / "pose" / "m3v1.csv", results / "pose" / "m3v1.h5"
    table = pd.read_csv(csv_path, header=[0, 1, 2], index_col=0)
    assert table.shape == (N_FRAMES, 12)
    assert list(table.columns.get_level_values("bodyparts")[::3]) == BODYPARTS
    assert list(table.columns.get_level_values("coords")[:3]) == ["x", "y", "likelihood"]
    pose, bodyparts, scorer = read_dlc_pose(h5_path, BODYPARTS)
    assert pose.shape == (N_FRAMES, 4, 3) and bodyparts == BODYPARTS
    assert scorer == "DLC_CspnextS_openfieldOct30shuffle1_snapshot_1"
    np.testing.assert_allclose(pose.reshape(N_FRAMES, 12), table.to_numpy(), rtol=1e-6)
    assert np.isfinite(pose).all() and ((pose[..., 2] >= 0) & (pose[..., 2] <= 1)).all()
    with h5py.File(h5_path, "r") as h5:
        record = json.loads(h5.attrs["neurovid_provenance"])
    assert record["step"] == "pose" and record["versions"]["deeplabcut"] == "3.0.2"
    assert record["inputs"]["snapshot"] == {
        "path": f"{TRAINED}/{marker['snapshot']}",
        "digest": marker["snapshot_digest"],
    }
    # no temporary folder (DeepLabCut's output, the working copy, the training) left behind
    assert sorted(p.name for p in (results / "pose").iterdir()) == ["m3v1.csv", "m3v1.h5", "model"]
    assert [p.name for p in (results / "pose" / "model").iterdir()] == ["project"]
    pose_text = (results / "logs" / "pose" / "m3v1.log").read_text()
    assert "Starting to analyze" in pose_text and "a working copy in" in pose_text
    assert f"{N_FRAMES} frames, scorer" in pose_text


def test_a_second_workflow_takes_the_trained_model_from_the_cache(
    dlc_workflows: SimpleNamespace,
) -> None:
    """The second lab: pose_train is served from the cache, pose gives the same output,
    and nothing was written into the cache."""
    first, second, log_b = dlc_workflows.first, dlc_workflows.second, dlc_workflows.log_b
    assert "to cache." not in log_b  # nothing trained, nothing stored
    for entry in ("config.yaml", "dlc-models-pytorch", TRAINED_MARKER, "training-datasets"):
        assert f"Symlinking output file {TRAINED}/{entry} from cache." in log_b
        assert (second / TRAINED / entry).resolve() == (first / TRAINED / entry).resolve()
    assert len(list(dlc_workflows.cache.iterdir())) == 1
    # the job did not run: Snakemake only touched its log
    assert (second / "results" / "logs" / "pose" / "train.log").read_text() == ""
    assert "a working copy in" in (second / "results/logs/pose/m3v1.log").read_text()

    # the same pose: table, bytes of the CSV, provenance
    outputs = [workflow / "results" / "pose" for workflow in (first, second)]
    assert (outputs[0] / "m3v1.csv").read_bytes() == (outputs[1] / "m3v1.csv").read_bytes()
    pd.testing.assert_frame_equal(
        pd.read_hdf(outputs[0] / "m3v1.h5"), pd.read_hdf(outputs[1] / "m3v1.h5")
    )
    records = []
    for folder in outputs:
        with h5py.File(folder / "m3v1.h5", "r") as h5:
            records.append(h5.attrs["neurovid_provenance"])
    assert records[0] == records[1]

    # the cached model: byte-identical before and after the second lab analysed with it
    before, after = dlc_workflows.cached_before, dlc_workflows.cached_after
    assert after == before and len(before) >= 10
    (entry,) = dlc_workflows.cache.iterdir()
    assert yaml.safe_load((entry / "config.yaml").read_text())["project_path"] == "."
