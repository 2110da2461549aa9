"""DeepLabCut 3 (PyTorch engine) pose estimation: check a project, train it, analyze videos.

DeepLabCut lives in its own environment (``envs/pose.yaml``, the ``pose`` extra): DLC
3.0.2 needs pandas<3 and filelock<3.16, the other stages run pandas 3. So ``deeplabcut``
and ``torch`` are imported inside the functions that run them, and the checks
(:func:`check_project`, :func:`select_labelled_frames`) and the reader
(:func:`read_dlc_pose`) need only numpy, pandas and PyYAML: they work in every env,
on pandas 2 and 3. Without conda, Snakemake runs every job in its own interpreter;
the pose scripts then hand themselves to the DeepLabCut one (:func:`run_in_pose_env`).

A DLC project is its ``config.yaml`` (``pose.project``). A trained shuffle keeps its
snapshots in ``dlc-models-pytorch/iteration-<i>/<Task><date>-trainset<pct>shuffle<n>/train/``
as ``snapshot-<epoch>.pt`` (and ``snapshot-best-<epoch>.pt``); :func:`check_project`
finds them with DeepLabCut's own naming and ordering rules, without importing it.

A trained model (``pose_train``, :func:`store_trained_project`) is one folder that names no
path of the workflow it was trained in: ``project_path: .`` and paths relative to the folder,
and a ``trained.json`` marker. Snakemake's between-workflow cache can then hand it to any
workflow, as a symlink into the shared cache. DeepLabCut edits a project's files when it
uses one (it rewrites ``project_path`` in ``config.yaml``), so analysis never runs on a
project in place: :func:`private_project` makes a working copy (the config files copied,
the snapshots symlinked) that DeepLabCut may edit.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import json
import logging
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from neurovid.errors import InputError
from neurovid.io import PathLike, file_digest, to_json, write_json

log = logging.getLogger(__name__)

# Config fields named in error messages (config.yaml `pose:` section).
PROJECT_FIELD = "pose.project"
SHUFFLE_FIELD = "pose.shuffle"
SNAPSHOT_FIELD = "pose.snapshot"
TRAIN_FIELD = "pose.train"
BODYPARTS_FIELD = "pose.project (bodyparts)"

TRAIN_FIX = (
    "train the shuffle first (config `pose.train.enabled: true` runs the pose_train rule, "
    "or deeplabcut.train_network), or point `pose.project` to a trained DeepLabCut project."
)
# DeepLabCut's PyTorch model folder and snapshot names (deeplabcut.utils.auxiliaryfunctions
# get_model_folder, deeplabcut.pose_estimation_pytorch.data.snapshots list_snapshots).
MODEL_FOLDER = "dlc-models-pytorch"
SNAPSHOT_PATTERN = re.compile(r"^snapshot(-best)?-(\d+)\.pt$")
# A from-scratch initialisation saved beside the snapshots (not matched by SNAPSHOT_PATTERN).
SCRATCH_INIT = "scratch-init.pt"
DETECTOR_SCRATCH_INIT = "scratch-init-detector.pt"
# The marker pose_train writes into its trained project folder (store_trained_project).
TRAINED_MARKER = "trained.json"
# project_path of a relocatable project (a trained model as pose_train stores it): the
# folder of its config.yaml, wherever that folder is.
HERE = "."
# Keys of DeepLabCut's YAML files whose value is a path inside the project: config.yaml
# project_path; pytorch_config.yaml metadata.project_path / pose_config_path; pose_cfg.yaml
# dataset. pose_train stores them relative (HERE), a working copy points them at itself.
PATH_KEYS = ("project_path", "pose_config_path", "dataset")
# Keys of config.yaml that locating a shuffle's model needs.
REQUIRED_KEYS = ("Task", "date", "iteration", "TrainingFraction", "bodyparts", "project_path")
# The DeepLabCut interpreter when the running one has no deeplabcut (pose_python).
POSE_PYTHON_VARIABLE = "NEUROVID_POSE_PYTHON"
CHECKOUT = Path(__file__).resolve().parents[2]


def pose_python() -> Path | None:
    """The interpreter DeepLabCut runs in: None for this one, when it can import deeplabcut.

    Otherwise ``$NEUROVID_POSE_PYTHON``, else the checkout's ``.venv-pose/bin/python``
    (the ``pose`` extra, README); InputError when there is neither.
    """
    if importlib.util.find_spec("deeplabcut") is not None:
        return None
    candidates = [os.environ.get(POSE_PYTHON_VARIABLE), CHECKOUT / ".venv-pose" / "bin" / "python"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise InputError(
        sys.executable,
        "DeepLabCut is not installed in this environment (it needs pandas<3, so it has "
        "its own: envs/pose.yaml, the `pose` extra).",
        "run Snakemake with --sdm conda, or create .venv-pose in the checkout "
        '(python3 -m venv .venv-pose && .venv-pose/bin/pip install -e ".[pose]" '
        f"-c constraints-pose.txt), or set {POSE_PYTHON_VARIABLE} to a python that has it.",
        field=PROJECT_FIELD,
    )


def run_in_pose_env(smk: Any, script: PathLike) -> bool:
    """Run a rule script in the DeepLabCut interpreter when this one cannot import it.

    Without conda, every job runs in the interpreter of Snakemake (the main env,
    pandas 3, no DeepLabCut). Then the script's ``snakemake`` object is pickled (as
    Snakemake's own script preamble does) and the same script runs in
    :func:`pose_python`, with this checkout's ``src`` first on its path. Returns True
    when it ran there (the caller does nothing more), False when DeepLabCut is here.
    """
    python = pose_python()
    if python is None:
        return False
    with tempfile.TemporaryDirectory(prefix="neurovid-pose-") as tmp:
        job = Path(tmp) / "snakemake.pickle"
        job.write_bytes(pickle.dumps(smk))
        code = (
            "import pickle, runpy, sys; "
            "smk = pickle.loads(open(sys.argv[1], 'rb').read()); "
            "runpy.run_path(sys.argv[2], init_globals={'snakemake': smk}, run_name='__main__')"
        )
        paths = [
            str(CHECKOUT / "src"),
            *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)),
        ]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}
        done = subprocess.run(
            [str(python), "-c", code, str(job), str(script)], env=env, check=False
        )
    if done.returncode != 0:
        raise RuntimeError(
            f"{Path(script).name} failed in the DeepLabCut env ({python}, exit status "
            f"{done.returncode}); its log says why."
        )
    return True


def load_project(config_path: PathLike) -> dict[str, Any]:
    """Read a DeepLabCut project's ``config.yaml``, checking what locating its models needs.

    ``config_path`` may also be the project folder (its ``config.yaml`` is used).
    DeepLabCut finds everything through the file's ``project_path``, so a moved
    project whose ``project_path`` still names the old folder is rejected here.
    ``project_path: .`` (a trained model as pose_train stores it) is the config's folder.
    """
    path = Path(config_path)
    if path.is_dir():
        path = path / "config.yaml"
    if not path.is_file():
        raise InputError(
            path,
            "the DeepLabCut project config does not exist.",
            "set `pose.project` to the config.yaml of a DeepLabCut project "
            "(deeplabcut.create_new_project makes one; label frames, then train it).",
            field=PROJECT_FIELD,
        )
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise InputError(path, f"not a readable YAML file ({err}).", field=PROJECT_FIELD) from None
    if not isinstance(config, dict):
        raise InputError(path, "not a DeepLabCut project config.", field=PROJECT_FIELD)
    missing = [key for key in REQUIRED_KEYS if config.get(key) in (None, "", [])]
    if missing:
        raise InputError(
            path,
            f"not a DeepLabCut project config: missing {', '.join(missing)}.",
            "point `pose.project` to the config.yaml that deeplabcut.create_new_project wrote.",
            field=PROJECT_FIELD,
        )
    if str(config["project_path"]) == HERE:
        config["project_path"] = str(path.parent)
        config["config_path"] = str(path)
        return config
    declared = Path(str(config["project_path"])).expanduser()
    if not declared.is_dir() or declared.resolve() != path.parent.resolve():
        raise InputError(
            path,
            f"its project_path is {declared}, but the project is in {path.parent.resolve()} "
            "(a moved or copied project); DeepLabCut locates labels and models through it.",
            f"set `project_path: {path.parent.resolve()}` in {path.name}.",
            field=PROJECT_FIELD,
        )
    config["config_path"] = str(path)
    return config


def project_config_of(model_input: PathLike) -> Path:
    """The project config.yaml a pose rule's ``model`` input stands for.

    With training on, the input is pose_train's trained project folder (its marker,
    ``trained.json``, names the config); otherwise the project's config.yaml itself.
    """
    path = Path(model_input)
    if not path.is_dir():
        return path
    marker = path / TRAINED_MARKER
    if marker.is_file():
        return path / json.loads(marker.read_text())["config"]
    return path / "config.yaml"


def model_folder(config: Mapping[str, Any], shuffle: int, trainingsetindex: int = 0) -> Path:
    """The folder of a shuffle's PyTorch model, named as DeepLabCut names it."""
    fractions = list(config["TrainingFraction"])
    if not 0 <= trainingsetindex < len(fractions):
        raise InputError(
            config.get("config_path"),
            f"trainingsetindex {trainingsetindex} is out of range: TrainingFraction is {fractions}.",
            "use an index into the project's TrainingFraction list.",
            field="pose.trainingsetindex",
        )
    fraction = float(fractions[trainingsetindex])
    name = f"{config['Task']}{config['date']}-trainset{int(fraction * 100)}shuffle{shuffle}"
    return Path(config["project_path"]) / MODEL_FOLDER / f"iteration-{config['iteration']}" / name


def list_snapshots(train_dir: PathLike) -> list[Path]:
    """Pose snapshots of a train folder in DeepLabCut's order: by epoch, the best one last."""
    folder = Path(train_dir)
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        match = SNAPSHOT_PATTERN.match(entry.name)
        if match:
            found.append((match.group(1) is not None, int(match.group(2)), entry))
    return [entry for _, _, entry in sorted(found)]


def check_project(
    config_path: PathLike,
    shuffle: int = 1,
    snapshot: int | str | None = None,
    trainingsetindex: int = 0,
) -> Path:
    """The snapshot file ``analyze_video`` will use; InputError when there is none.

    ``snapshot``: ``None`` takes the project's ``snapshotindex`` (DeepLabCut's default,
    -1 = the last one), an int indexes the snapshots as DeepLabCut orders them,
    ``"best"`` is the best one, ``"last"`` the highest epoch, and a name such as
    ``"snapshot-050"`` or ``"snapshot-050.pt"`` picks that file.
    """
    config = load_project(config_path)
    config_file = config["config_path"]
    train_dir = model_folder(config, shuffle, trainingsetindex) / "train"
    snapshots = list_snapshots(train_dir)
    if not snapshots:
        where = "does not exist" if not train_dir.is_dir() else "holds no snapshot-*.pt"
        raise InputError(
            config_file,
            f"shuffle {shuffle} has no trained snapshot: {train_dir} {where}.",
            TRAIN_FIX,
            field=f"{PROJECT_FIELD} / {SHUFFLE_FIELD}",
        )
    if snapshot is None:
        snapshot = config.get("snapshotindex", -1)
        if snapshot == "all":  # DeepLabCut analyses with the last one in that case
            snapshot = -1
    names = [p.name for p in snapshots]
    if isinstance(snapshot, str) and re.fullmatch(r"-?\d+", snapshot.strip()):
        snapshot = int(snapshot)
    if isinstance(snapshot, bool) or not isinstance(snapshot, int | str):
        raise InputError(
            config_file, f"snapshot {snapshot!r} is not an index or a name.", field=SNAPSHOT_FIELD
        )
    if isinstance(snapshot, int):
        if -len(snapshots) <= snapshot < len(snapshots):
            return snapshots[snapshot]
        problem = f"snapshot index {snapshot} is out of range for {len(snapshots)} snapshots"
    elif snapshot.lower() == "best":
        best = [p for p in snapshots if p.name.startswith("snapshot-best-")]
        if best:
            return best[-1]
        problem = "there is no best snapshot (snapshot-best-*.pt)"
    elif snapshot.lower() == "last":
        return max(snapshots, key=lambda p: int(SNAPSHOT_PATTERN.match(p.name).group(2)))
    else:
        wanted = snapshot if snapshot.endswith(".pt") else f"{snapshot}.pt"
        if wanted in names:
            return snapshots[names.index(wanted)]
        problem = f"there is no snapshot {wanted}"
    raise InputError(
        config_file,
        f"{problem} in {train_dir} (found: {', '.join(names)}).",
        "set `pose.snapshot` to one of them, an index (-1 = last), best, last, or null "
        "(the project's snapshotindex).",
        field=SNAPSHOT_FIELD,
    )


def _snapshot_index(snapshot_path: Path) -> int:
    """The index DeepLabCut's ``snapshot_index`` argument needs for a snapshot file."""
    return list_snapshots(snapshot_path.parent).index(snapshot_path)


class _LogLines(io.TextIOBase):
    """A text stream that writes each printed line to log handlers, as INFO records.

    It hands records to the handlers directly (not through a logger), so a library
    that logs to a console handler on this stream cannot loop back into it. Progress
    bars redraw one line with carriage returns; of those, one every
    ``progress_interval`` seconds is kept, so a long video does not flood the log.
    """

    def __init__(
        self, handlers: Sequence[logging.Handler], name: str, progress_interval: float = 10.0
    ) -> None:
        self.handlers = list(handlers)
        self.name = name
        self.progress_interval = progress_interval
        self._pending = ""
        self._last_progress = float("-inf")

    def writable(self) -> bool:
        return True

    def _emit(self, line: str) -> None:
        record = logging.LogRecord(self.name, logging.INFO, __file__, 0, "%s", (line,), None)
        for handler in self.handlers:
            if record.levelno >= handler.level:
                handler.handle(record)

    def write(self, text: str) -> int:
        self._pending += text
        while match := re.search(r"[\r\n]", self._pending):
            line, self._pending = self._pending[: match.start()], self._pending[match.end() :]
            line = line.strip()
            if not line:
                continue
            if match.group() == "\n":
                self._emit(line)
            elif time.monotonic() - self._last_progress >= self.progress_interval:
                self._last_progress = time.monotonic()
                self._emit(line)
        return len(text)

    def flush(self) -> None:
        """Keep a partial line: progress bars flush after every redraw."""

    def finish(self) -> None:
        """Write what is left of the last line."""
        if self._pending.strip():
            self._emit(self._pending.strip())
        self._pending = ""


class _Forward(logging.Handler):
    """Root handler standing in for the script's handlers while DeepLabCut runs.

    DeepLabCut's training calls ``logging.basicConfig(force=True)``, which closes the
    root handlers (a closed FileHandler in mode "w" would truncate the rule log when
    reopened); this stand-in survives that and forwards records to the real ones.
    """

    def __init__(self, handlers: Sequence[logging.Handler]) -> None:
        super().__init__()
        self.handlers = list(handlers)

    def emit(self, record: logging.LogRecord) -> None:
        for handler in self.handlers:
            if record.levelno >= handler.level:
                handler.handle(record)

    def close(self) -> None:  # the real handlers stay open
        logging.Handler.close(self)


@contextlib.contextmanager
def output_to_log(logger: logging.Logger) -> Iterator[None]:
    """Send what DeepLabCut prints and logs (stdout, tqdm on stderr) to the rule's log.

    The script's handlers (``neurovid.logs.script_logger``: the rule's log file) are
    put back on the root logger afterwards, whatever DeepLabCut did to logging.
    """
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    stream = _LogLines(saved, f"{logger.name}.deeplabcut")
    root.handlers[:] = [_Forward(saved)]
    try:
        with contextlib.redirect_stdout(stream), contextlib.redirect_stderr(stream):
            yield
    finally:
        stream.finish()
        for handler in root.handlers[:]:
            if handler not in saved:
                root.removeHandler(handler)
                handler.close()
        root.handlers[:] = saved
        root.setLevel(level)


def project_bodyparts(config: Mapping[str, Any]) -> list[str]:
    """Body parts a project's pose files have (multi-animal: the multi-animal and unique ones)."""
    if config.get("multianimalproject"):
        return list(config.get("multianimalbodyparts") or []) + list(
            config.get("uniquebodyparts") or []
        )
    return list(config["bodyparts"])


_PATH_LINE = re.compile(
    rf"^(?P<lead>[ \t]*(?:{'|'.join(PATH_KEYS)}):[ \t]*)(?P<quote>['\"]?)"
    r"(?P<value>[^'\"\n]*?)(?P=quote)[ \t]*$",
    re.MULTILINE,
)


def rebase_paths(text: str, old_roots: str | Sequence[str], new_root: str) -> str:
    """A DeepLabCut YAML file's text with its project paths moved to another root.

    Only the values of :data:`PATH_KEYS` that are one of ``old_roots`` or lie under it
    change (``old/x`` -> ``new_root/x``, the first root that fits); the rest of the file,
    comments and order included, is kept as DeepLabCut wrote it. ``HERE`` (``.``) as the
    new root makes the paths relative to the project folder.
    """
    roots = [old_roots] if isinstance(old_roots, str) else list(old_roots)

    def rebase(match: re.Match[str]) -> str:
        value = match["value"]
        for root in roots:
            stripped = root.rstrip("/") or "/"
            if value in (root, stripped):
                moved = new_root
            elif value.startswith(f"{stripped}/"):
                moved = new_root.rstrip("/") + value[len(stripped) :]
            else:
                continue
            return f"{match['lead']}{match['quote']}{moved}{match['quote']}"
        return match.group(0)

    return _PATH_LINE.sub(rebase, text)


def private_project(
    config_path: PathLike, dest: PathLike, shuffle: int = 1, trainingsetindex: int = 0
) -> Path:
    """A working copy of a project's shuffle in ``dest`` that DeepLabCut may write to.

    DeepLabCut edits the project it is given (``read_config`` rewrites ``project_path``
    in config.yaml when the folder moved; training and some analyses update the model's
    YAML). A trained model served from the between-workflow cache is a symlink into a
    folder other workflows share, and a user's project is not the workflow's to edit, so
    the pose rule analyses a copy: ``config.yaml`` and the shuffle's YAML files are copied
    with their project paths pointing at ``dest``, the model folder's other small files
    (logs, learning stats) and the training sets' ``metadata.yaml`` copied, and its
    snapshots (``*.pt``: the heavy part) symlinked to the originals, which DeepLabCut only
    reads. Labels and videos are not needed for analysis and are left out.
    Returns the copy's config.yaml.
    """
    config = load_project(config_path)
    source = Path(config["config_path"])
    root = Path(config["project_path"])
    dest = Path(dest).resolve()
    models = model_folder(config, shuffle, trainingsetindex)
    text = source.read_text()
    declared = str(yaml.safe_load(text)["project_path"])  # as written: HERE or a path
    roots = list(dict.fromkeys([declared, str(root), str(root.resolve())]))
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "config.yaml"
    target.write_text(rebase_paths(text, roots, str(dest)))
    for folder, _, files in os.walk(models, followlinks=True):
        copy_folder = dest / Path(folder).relative_to(root)
        copy_folder.mkdir(parents=True, exist_ok=True)
        for name in sorted(files):
            original = Path(folder) / name
            if original.suffix == ".pt":
                (copy_folder / name).symlink_to(original.resolve())
            elif original.suffix in (".yaml", ".yml"):
                (copy_folder / name).write_text(
                    rebase_paths(original.read_text(), roots, str(dest))
                )
            else:
                shutil.copyfile(original, copy_folder / name)
    # The shuffles' metadata (which engine trained which shuffle), else DeepLabCut warns
    # and guesses the engine from the model folders.
    datasets = root / "training-datasets" / f"iteration-{config['iteration']}"
    for metadata in sorted(datasets.glob("*/metadata.yaml")):
        copy = dest / metadata.relative_to(root)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(metadata, copy)
    copied = load_project(target)  # checks that project_path names the copy
    if Path(copied["project_path"]).resolve() != dest:
        raise RuntimeError(f"{target}: project_path was not rewritten to {dest}")
    return target


def analyze_video(
    config_path: PathLike,
    video: PathLike,
    out_h5: PathLike,
    *,
    shuffle: int = 1,
    snapshot: int | str | None = None,
    trainingsetindex: int = 0,
    batch_size: int | None = None,
    device: str = "auto",
    threads: int | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Run ``deeplabcut.analyze_videos`` on one video; write ``out_h5`` and its ``.csv``.

    DeepLabCut silently skips a video that already has an output in its destination
    folder, so it always writes into a fresh temporary folder beside ``out_h5``; its
    ``.h5`` and ``.csv`` (DLC's own format) are then renamed onto the requested names,
    so a rerun really re-analyses and a failure leaves no partial output.
    DeepLabCut runs on a working copy of the project in that folder
    (:func:`private_project`), so the project itself (a trained model in the shared
    cache, or the user's) is never written to.
    ``provenance`` is stored as the ``neurovid_provenance`` attribute of the HDF5 file
    (pandas and movement ignore it). ``device``: auto | cpu | cuda; ``threads``: torch's
    CPU threads (the rule's). Returns the paths of the ``.h5`` and ``.csv`` written.
    """
    snapshot_path = check_project(config_path, shuffle, snapshot, trainingsetindex)
    config = load_project(config_path)
    video = Path(video)
    if not video.is_file():
        raise InputError(video, "the video to analyze does not exist.", field="videos.path")
    out_h5 = Path(out_h5)
    out_csv = out_h5.with_suffix(".csv")
    out_h5.parent.mkdir(parents=True, exist_ok=True)

    import deeplabcut
    import torch

    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix=f".{out_h5.stem}.dlc-", dir=out_h5.parent) as work:
        working_copy = private_project(
            config["config_path"], Path(work) / "project", shuffle, trainingsetindex
        )
        tmp = Path(work) / "out"
        tmp.mkdir()
        log.info("analyzing %s with %s (a working copy in %s)", video, snapshot_path, work)
        deeplabcut.analyze_videos(
            str(working_copy),
            [str(video)],
            shuffle=shuffle,
            trainingsetindex=trainingsetindex,
            destfolder=str(tmp),
            save_as_csv=True,
            snapshot_index=_snapshot_index(snapshot_path),
            batch_size=batch_size,
            device=device,
        )
        written = sorted(Path(tmp).glob("*.h5"))
        if len(written) != 1:
            raise RuntimeError(
                f"{video}: expected one .h5 from deeplabcut.analyze_videos in {tmp}, "
                f"got {[p.name for p in written]}"
            )
        h5_file = written[0]
        csv_file = h5_file.with_suffix(".csv")
        if provenance is not None:
            import h5py

            with h5py.File(h5_file, "a") as h5:
                h5.attrs["neurovid_provenance"] = to_json(provenance)
        os.replace(csv_file, out_csv)
        os.replace(h5_file, out_h5)
    return out_h5, out_csv


def select_labelled_frames(
    n_labelled: int, train_fraction: float, max_frames: int | None = None
) -> tuple[list[int], list[int]]:
    """Train and test rows of the labelled frames, at most ``max_frames`` in all.

    Frames are taken evenly spaced over the labelled set (labels of neighbouring
    frames are near duplicates), every ``1 / (1 - train_fraction)``-th of them for
    testing, and at least one of each. Deterministic.
    """
    if n_labelled < 2:
        raise InputError(
            None,
            f"{n_labelled} labelled frame(s); training needs at least 2 (one to test).",
            "label more frames (deeplabcut.label_frames).",
            field=TRAIN_FIELD,
        )
    if not 0 < train_fraction < 1:
        raise InputError(
            None,
            f"TrainingFraction {train_fraction} is not between 0 and 1.",
            field=PROJECT_FIELD,
        )
    total = n_labelled if max_frames is None else min(n_labelled, int(max_frames))
    if total < 2:
        raise InputError(
            None,
            f"max_frames {max_frames} leaves fewer than 2 frames.",
            "set `pose.train.max_frames` to at least 2 (or null for all labelled frames).",
            field=f"{TRAIN_FIELD}.max_frames",
        )
    picked = np.unique(np.round(np.linspace(0, n_labelled - 1, total)).astype(int))
    n_test = min(len(picked) - 1, max(1, round(len(picked) * (1 - train_fraction))))
    test_positions = set(np.round(np.linspace(0, len(picked) - 1, n_test + 2)[1:-1]).astype(int))
    train = [int(i) for k, i in enumerate(picked) if k not in test_positions]
    test = [int(i) for k, i in enumerate(picked) if k in test_positions]
    return train, test


def prepare_training_project(config_path: PathLike, dest: PathLike) -> Path:
    """A trainable copy of a project in ``dest``: config.yaml and a link to its labels.

    Training writes ``training-datasets/`` and ``dlc-models-pytorch/`` into the project;
    training a copy under ``results/`` leaves the user's project untouched and lets the
    workflow track the model. ``labeled-data`` is symlinked, not copied (training reads
    it; :func:`store_trained_project` removes the link afterwards).
    Returns the copy's config.yaml.
    """
    config = load_project(config_path)
    source = Path(config["config_path"]).parent
    labels = source / "labeled-data"
    if not labels.is_dir():
        raise InputError(
            source,
            "the project has no labeled-data folder to train from.",
            "label frames first (deeplabcut.extract_frames, deeplabcut.label_frames).",
            field=PROJECT_FIELD,
        )
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    link = dest / "labeled-data"
    if link.is_symlink() or link.exists():
        link.unlink() if link.is_symlink() else shutil.rmtree(link)
    link.symlink_to(labels.resolve(), target_is_directory=True)
    copied = {key: value for key, value in config.items() if key != "config_path"}
    copied["project_path"] = str(dest)
    target = dest / "config.yaml"
    target.write_text(yaml.safe_dump(copied, sort_keys=False))
    return target


def store_trained_project(
    folder: PathLike,
    snapshot: PathLike,
    *,
    shuffle: int,
    trainingsetindex: int,
    provenance: Mapping[str, Any],
) -> dict[str, Any]:
    """Make a freshly trained copy (:func:`prepare_training_project`) one relocatable folder.

    The folder is what pose_train outputs and Snakemake's between-workflow cache stores,
    so nothing in it may depend on where it was trained: ``project_path`` and DeepLabCut's
    other project paths become relative (``.``, :func:`rebase_paths`; the training log
    ``train.txt`` too), and the ``labeled-data`` link (an absolute link into the user's
    project: the cache would also chmod its target) and the from-scratch initial weights
    are removed; ``training-datasets/`` (the frames and split trained on) stays. Writes
    the marker ``trained.json`` (config, snapshot relative to the folder, shuffle,
    trainingsetindex, snapshot digest, provenance) and returns it.
    """
    folder = Path(folder)
    root = str(folder.resolve())
    snapshot = Path(snapshot).resolve()
    labels = folder / "labeled-data"
    if labels.is_symlink():
        labels.unlink()
    for init in (SCRATCH_INIT, DETECTOR_SCRATCH_INIT):
        (snapshot.parent / init).unlink(missing_ok=True)
    for parent, _, files in os.walk(folder):
        for name in files:
            path = Path(parent) / name
            if path.suffix in (".yaml", ".yml"):
                path.write_text(rebase_paths(path.read_text(), [root, str(folder)], HERE))
            elif path.name == "train.txt":
                path.write_text(path.read_text().replace(root, HERE))
    marker = {
        "config": "config.yaml",
        "snapshot": str(snapshot.relative_to(root)),
        "snapshot_digest": file_digest(snapshot),
        "shuffle": shuffle,
        "trainingsetindex": trainingsetindex,
        "provenance": dict(provenance),
    }
    write_json(folder / TRAINED_MARKER, marker)
    return marker


def train_from_labels(
    config_path: PathLike,
    *,
    shuffle: int = 1,
    trainingsetindex: int = 0,
    net_type: str = "resnet_50",
    epochs: int = 200,
    from_scratch: bool = False,
    max_frames: int | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    seed: int = 0,
    dataloader_workers: int = 0,
    threads: int | None = None,
) -> Path:
    """``create_training_dataset`` + ``train_network`` for one shuffle; the last snapshot.

    ``from_scratch``: offline, DeepLabCut downloads ImageNet backbone weights even with
    ``pretrained: false``. Building the model with ``PoseModel.build(cfg["model"],
    pretrained_backbone=False)``, saving its state dict and passing that file as
    ``snapshot_path`` starts from random weights without a download (top-down models:
    the detector too). Otherwise DeepLabCut's normal pretrained start is used (needs the
    weights in the hub cache or a network). ``max_frames`` trains on at most that many
    labelled frames (:func:`select_labelled_frames`), keeping the project's training
    fraction. Earlier snapshots of the shuffle are removed so the new training is the
    one analysed. ``threads``: torch's CPU threads (the rule's).
    """
    config = load_project(config_path)
    config_file = config["config_path"]
    fraction = float(config["TrainingFraction"][trainingsetindex])

    import deeplabcut
    import torch
    from deeplabcut.generate_training_dataset import trainingsetmanipulation as trainingsets
    from deeplabcut.utils.auxiliaryfunctions import get_training_set_folder

    if threads:
        torch.set_num_threads(threads)
    split: dict[str, Any] = {}
    if max_frames is not None:
        dlc_config = {k: v for k, v in config.items() if k != "config_path"}
        folder = Path(config["project_path"]) / get_training_set_folder(dlc_config)
        folder.mkdir(parents=True, exist_ok=True)
        labelled = trainingsets.merge_annotateddatasets(dlc_config, folder)
        if labelled is None or labelled.empty:
            raise InputError(
                Path(config["project_path"]) / "labeled-data",
                "no labelled frames (CollectedData_<scorer>.h5) for the videos in video_sets.",
                "label frames first, and check that video_sets names the labelled videos.",
                field=PROJECT_FIELD,
            )
        train, test = select_labelled_frames(len(labelled), fraction, max_frames)
        log.info("training on %d labelled frames, testing on %d", len(train), len(test))
        # DeepLabCut derives the training fraction from the list lengths; -1 pads them
        # so the fraction (and the model folder's name) stays the project's.
        padded = trainingsets.pad_train_test_indices(train, test, round(fraction, 2))
        train, test = padded if padded is not None else (train, test)
        split = {"trainIndices": [list(map(int, train))], "testIndices": [list(map(int, test))]}
    deeplabcut.create_training_dataset(
        config_file, Shuffles=[shuffle], net_type=net_type, userfeedback=False, **split
    )
    train_dir = model_folder(config, shuffle, trainingsetindex) / "train"
    for old in list_snapshots(train_dir):
        log.info("removing the earlier snapshot %s", old)
        old.unlink()
    model_config = yaml.safe_load((train_dir / "pytorch_config.yaml").read_text())

    init: dict[str, str] = {}
    if from_scratch:
        from deeplabcut.pose_estimation_pytorch.models import DETECTORS, PoseModel

        torch.manual_seed(seed)
        model = PoseModel.build(model_config["model"], pretrained_backbone=False)
        torch.save({"model": model.state_dict()}, train_dir / SCRATCH_INIT)
        init["snapshot_path"] = str(train_dir / SCRATCH_INIT)
        if model_config.get("detector"):
            detector = DETECTORS.build(model_config["detector"]["model"], pretrained=False)
            torch.save({"model": detector.state_dict()}, train_dir / DETECTOR_SCRATCH_INIT)
            init["detector_path"] = str(train_dir / DETECTOR_SCRATCH_INIT)
        log.info("initialised %s from scratch (no pretrained weights)", model_config["net_type"])
    deeplabcut.train_network(
        config_file,
        shuffle=shuffle,
        trainingsetindex=trainingsetindex,
        epochs=epochs,
        save_epochs=epochs,
        batch_size=batch_size,
        device=device,
        pytorch_cfg_updates={
            "train_settings.seed": seed,
            "train_settings.dataloader_workers": dataloader_workers,
        },
        **init,
    )
    return check_project(config_file, shuffle, "last", trainingsetindex)


def _csv_layout(path: Path) -> tuple[int, int]:
    """(header rows, index columns) of a DeepLabCut CSV: rows up to ``coords``."""
    with open(path, newline="") as fh:
        rows = [row for _, row in zip(range(6), csv.reader(fh), strict=False)]
    names = [row[0] if row else "" for row in rows]
    if "coords" not in names or not rows or rows[0][:1] != ["scorer"]:
        raise InputError(
            path,
            "not a DeepLabCut pose file: the header rows scorer, bodyparts, coords are missing.",
            "use the .h5/.csv that deeplabcut.analyze_videos wrote.",
        )
    first = rows[0]
    n_index = next((k for k in range(1, len(first)) if first[k] != ""), 1)
    return names.index("coords") + 1, n_index


def read_dlc_table(path: PathLike) -> pd.DataFrame:
    """A DeepLabCut ``.h5`` or ``.csv`` as DLC's DataFrame (column levels scorer, [individuals,] bodyparts, coords)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "the pose file does not exist.")
    if path.suffix == ".csv":
        n_header, n_index = _csv_layout(path)
        table = pd.read_csv(path, header=list(range(n_header)), index_col=list(range(n_index)))
    elif path.suffix in (".h5", ".hdf5"):
        try:
            table = pd.read_hdf(path)
        except (KeyError, ValueError, TypeError, OSError) as err:
            raise InputError(path, f"not a DeepLabCut pose file ({err}).") from None
    else:
        raise InputError(path, "a pose file must be DeepLabCut's .h5 or .csv.")
    if not isinstance(table.columns, pd.MultiIndex) or not {"bodyparts", "coords"} <= set(
        table.columns.names
    ):
        raise InputError(
            path,
            f"not a DeepLabCut pose file: column levels are {list(table.columns.names)}.",
            "use the .h5/.csv that deeplabcut.analyze_videos wrote.",
        )
    return table


def read_dlc_pose(
    path: PathLike, expected_bodyparts: Sequence[str] | None = None
) -> tuple[np.ndarray, list[str], str]:
    """Pose array [T, K, 3] (x, y, likelihood), body part names and scorer of a DLC file.

    Works on ``.h5`` and ``.csv`` from DeepLabCut, with pandas 2 and 3. Multi-animal
    files give one keypoint per (individual, body part), named ``individual/bodypart``.
    Labelled-data files (no likelihood) get likelihood 1 where a point is labelled.
    ``expected_bodyparts`` (e.g. the project's ``bodyparts``): InputError naming the
    missing and unexpected ones when the file's body parts differ.
    """
    path = Path(path)
    table = read_dlc_table(path)
    columns = table.columns
    scorers = list(dict.fromkeys(columns.get_level_values("scorer")))
    bodyparts = list(dict.fromkeys(columns.get_level_values("bodyparts")))
    if expected_bodyparts is not None:
        missing = [b for b in expected_bodyparts if b not in bodyparts]
        extra = [b for b in bodyparts if b not in expected_bodyparts]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing)}")
            if extra:
                parts.append(f"unexpected {', '.join(extra)}")
            raise InputError(
                path,
                f"body parts differ from the project's ({', '.join(expected_bodyparts)}): "
                f"{'; '.join(parts)}.",
                "analyse the video with the project named in `pose.project`, or set that "
                "project's bodyparts to the ones this file has.",
                field=BODYPARTS_FIELD,
            )
    multi = "individuals" in columns.names
    individuals = list(dict.fromkeys(columns.get_level_values("individuals"))) if multi else [None]
    keys, names = [], []
    for individual in individuals:
        for bodypart in bodyparts:
            keys.append((individual, bodypart))
            names.append(f"{individual}/{bodypart}" if multi else bodypart)
    flat = table.xs(scorers[0], axis=1, level="scorer")
    pose = np.full((len(table), len(keys), 3), np.nan)
    for k, (individual, bodypart) in enumerate(keys):
        for c, coord in enumerate(("x", "y", "likelihood")):
            column = (individual, bodypart, coord) if multi else (bodypart, coord)
            if column in flat.columns:
                pose[:, k, c] = flat[column].to_numpy(dtype=float)
            elif coord == "likelihood":
                pose[:, k, c] = np.where(np.isfinite(pose[:, k, 0]), 1.0, np.nan)
    return pose, names, scorers[0]
