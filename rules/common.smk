# Config and sample-sheet validation, wildcard constraints, input functions.
import os
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

# The neurovid library of this checkout runs every job, whatever its software
# environment (this venv, a per-stage conda env from --sdm conda, a SLURM job):
# jobs inherit PYTHONPATH, and envs/*.yaml hold only third-party packages.
# (Set here, not required from the user: so no `envvars:` directive.)
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
PYTHONPATH = [SRC, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
os.environ.update(PYTHONPATH=os.pathsep.join(dict.fromkeys(PYTHONPATH)))

import neurovid.sheets as sheets

min_version("9.15")


validate(config, "../schemas/config.schema.yaml")

SCHEMAS = Path(workflow.basedir) / "schemas"
VIDEOS = sheets.load_videos(config["videos"], SCHEMAS / "videos.schema.yaml")
RECORDINGS = sheets.load_recordings(
    config["recordings"], SCHEMAS / "recordings.schema.yaml", VIDEOS
)
SUBJECT_RUNS = sheets.subject_runs(RECORDINGS)
MODELS = config["encoding"]["models"]


wildcard_constraints:
    video=sheets.ID_PATTERN,
    recording=sheets.ID_PATTERN,
    subject=sheets.ID_PATTERN,
    model=sheets.ID_PATTERN,
    extractor=sheets.ID_PATTERN,


def lib(*modules):
    """Library modules a step runs, declared as inputs so that editing them re-runs the step."""
    # Relative to the working directory where possible, so that a moved or copied
    # project does not see "changed input files" and re-run everything.
    src = Path(os.path.relpath(Path(workflow.basedir) / "src" / "neurovid"))
    return [str(src / f"{name}.py") for name in ("io", *modules)]


def gpu_request():
    """GPUs a GPU-capable job requests (the `gpu` resource): 1, or 0 with `gpu: false` in the config.

    GPU-capable rules declare `resources: gpu=gpu_request()`. Locally the
    workstation profile's `resources: gpu=N` caps how many run at once; on SLURM
    the executor turns it into `--gpus`. Without a GPU the same code runs on CPU.
    """
    return 1 if config.get("gpu", True) else 0


def extractor_settings(name):
    """Config section of a learned extractor (the keyword arguments of its library function)."""
    return config["features"].get(name, {})


def feature_targets():
    """Features files of `features.extractors` for every video of the sheet."""
    return expand(
        "results/features/{extractor}/{video}.h5",
        extractor=config["features"]["extractors"],
        video=VIDEOS.index,
    )


def video_path(wildcards):
    return VIDEOS.at[wildcards.video, "path"]


def recording_path(wildcards):
    return RECORDINGS.at[wildcards.recording, "path"]


def subject_modality(subject):
    return RECORDINGS.loc[RECORDINGS["subject"] == subject, "modality"].iloc[0]


def model_subjects(model):
    """Subjects a model is fit on: those whose modality the model lists."""
    wanted = set(MODELS[model]["modalities"])
    return [s for s in SUBJECT_RUNS if subject_modality(s) in wanted]


def fmri_subjects(model):
    return [s for s in model_subjects(model) if subject_modality(s) == "fmri"]


def timeline_videos(recording):
    return [event.video_id for event in RECORDINGS.at[recording, "timeline"]]


def used_extractors():
    return sorted({f for m in MODELS.values() for f in m["features"]})


def subject_recordings(wildcards):
    return SUBJECT_RUNS[wildcards.subject]


def stimulus_keys(wildcards):
    """One key per run of the subject: its parsed stimulus timeline (equal keys = repeats)."""
    return [
        ";".join(f"{e.video_id}@{e.onset:g}" for e in RECORDINGS.at[run, "timeline"])
        for run in SUBJECT_RUNS[wildcards.subject]
    ]


def demo_features(wildcards):
    return [
        ancient(f"results/features/motion_energy/{video}.h5")
        for video in timeline_videos(wildcards.recording)
    ]


def demo_subject_features(wildcards):
    first_run = SUBJECT_RUNS[wildcards.subject][0]
    video = timeline_videos(first_run)[0]
    return ancient(f"results/features/motion_energy/{video}.h5")


def all_targets():
    targets = feature_targets()
    for model in MODELS:
        subjects = model_subjects(model)
        targets += expand(
            "results/encoding/{model}/{subject}/scores.h5",
            model=model,
            subject=subjects,
        )
        if subjects:
            targets += [f"results/figures/{model}/score_hist.png"]
            targets += expand(
                "results/figures/{model}/traces/{subject}.png",
                model=model,
                subject=subjects,
            )
        if len(fmri_subjects(model)) >= 2:
            targets += [
                f"results/stats/{model}/summary.json",
                f"results/figures/{model}/surface.png",
                f"results/figures/{model}/glass_brain.png",
            ]
    if config["video"]["frames"]:
        targets += expand("results/video/{video}/frames", video=VIDEOS.index)
    return targets
