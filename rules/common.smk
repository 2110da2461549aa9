# Config and sample-sheet validation, wildcard constraints, input functions.
import functools
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

# The neurovid library of this checkout runs every job, whatever its software
# environment (this venv, a per-stage conda env from --sdm conda, a SLURM job):
# jobs inherit PYTHONPATH, and envs/*.yaml hold only third-party packages.
# (Set here, not required from the user: so no `envvars:` directive.)
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
PYTHONPATH = [SRC, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
os.environ.update(PYTHONPATH=os.pathsep.join(dict.fromkeys(PYTHONPATH)))

import neurovid.body as body
import neurovid.sheets as sheets
from neurovid.hardware import gpu_setting
from neurovid.imports import code_digest
from neurovid.interpret import interpreted_pcs
from neurovid.partition import partition_parts, partitioned_spaces
from neurovid.scheduler_fix import reserve_single_job_resources

min_version("9.15")
# Snakemake 9.10-9.16 start a lone ready job without reserving its threads and GPU
# (snakemake#3913): keep local runs within --cores and `gpu` (src/neurovid/scheduler_fix.py).
reserve_single_job_resources()


validate(config, "../schemas/config.schema.yaml")

SCHEMAS = Path(workflow.basedir) / "schemas"
VIDEOS = sheets.load_videos(config["videos"], SCHEMAS / "videos.schema.yaml")
# The BIDS door's derived sheet: the runs of config `bids:` as recordings-sheet rows.
BIDS_SHEET = "results/sheets/recordings.tsv"


def recording_sheets():
    """The recordings sheets to read: config `recordings` and, with `bids:`, the sheet the
    BIDS door derives. pybids indexes the dataset in the main process only, which writes
    the sheet (when its content changed) for the user to see; jobs spawned on SLURM or in
    subprocesses re-read the Snakefile and read that sheet (indexed once per invocation).
    """
    paths = [config["recordings"]] if config.get("recordings") else []
    if config.get("bids"):
        if workflow.is_main_process:
            from neurovid import bids

            rows = bids.bids_recordings(config["bids"], VIDEOS, config["videos"])
            bids.write_sheet(rows, BIDS_SHEET)
        paths.append(BIDS_SHEET)
    if not paths:
        raise WorkflowError(
            "config.yaml names no recordings. Fix: set `recordings` to your recordings.tsv "
            "and/or `bids:` to a BIDS dataset with fMRIPrep derivatives."
        )
    return paths


RECORDINGS = sheets.combine_recordings(
    {
        # behavior_video of kind behavior with its behavior_offset_s, behavior tables
        path: body.check_behavior_columns(
            sheets.load_recordings(path, SCHEMAS / "recordings.schema.yaml", VIDEOS),
            VIDEOS,
            path,
        )
        for path in recording_sheets()
    }
)
SUBJECT_RUNS = sheets.subject_runs(RECORDINGS)
# The sheets' rows as plain dicts, for the lookups that input functions and params make
# per job (a pandas .at or boolean mask per call is slow on a 10,000-video sheet).
VIDEO_ROWS = VIDEOS.to_dict("index")
RECORDING_ROWS = RECORDINGS.to_dict("index")
SUBJECT_MODALITY = {
    s: RECORDING_ROWS[runs[0]]["modality"] for s, runs in SUBJECT_RUNS.items()
}
MODELS = config["encoding"]["models"]
# Per model, the per-target parts of its variance partition (unique_<space>..., shared;
# none when not partitioned). Checked here: a model that cannot be partitioned but asks
# for it stops the workflow with a message naming the setting.
PARTITION_PARTS = {
    model: partition_parts(partitioned_spaces(model, spec))
    for model, spec in MODELS.items()
}
# Per model, how many PCs of the SlowFast class logits get a group map and word clouds
# (`interpret_pcs`, 0 = off); a model that cannot be interpreted stops the workflow here.
PC_MODELS = {
    model: interpreted_pcs(model, spec, config["features"].get("slowfast", {}))
    for model, spec in MODELS.items()
}
# Estimators fit by neurovid.deep with checkpoints (rule encode_trained), and those that
# run on CPU only (rule encode_lasso); the others are neurovid's ridge solvers (rule encode).
TRAINED_ESTIMATORS = ("lstm",)
CPU_ESTIMATORS = ("lasso",)


wildcard_constraints:
    video=sheets.ID_PATTERN,
    recording=sheets.ID_PATTERN,
    subject=sheets.ID_PATTERN,
    model=sheets.ID_PATTERN,
    extractor=sheets.ID_PATTERN,


def declare_code(rules):
    """Give the rules that run a script the param `code`, the digest of the library it runs.

    Editing a module then re-runs exactly the jobs whose script reaches it (the `params`
    rerun trigger), wherever the module sits in the import graph; the files come from the
    script's imports (neurovid.imports), never from a hand-written list. A content digest,
    not input files: a copied or freshly checked-out project does not re-run, and the DAG
    carries no per-job library files (bench/dag.py). Snakemake's own `code` trigger sees
    the script file. Called once, after every rule (and every `use rule`) is defined.
    """
    for each in rules:  # (`rule` is a keyword in a .smk file)
        if not each.script:
            continue
        if "code" in each.params.keys():
            raise WorkflowError(
                f"The `code` param of rule {each.name} is derived from its script's imports "
                "(rules/common.smk: declare_code). Fix: rename the rule's own `code` param."
            )
        script = each.basedir.join(each.script).get_path_or_uri(secret_free=True)
        each.set_params(code=code_digest(Path(script).resolve(), Path(SRC)))


def estimator(model):
    return MODELS[model]["estimator"]


def encoding_rule(model):
    """Name of the encoding rule fitting a model.

    `encode_trained` (neurovid.deep, GPU), `encode_lasso` (scikit-learn, CPU only) or
    `encode` (neurovid's ridge solvers, GPU when there is one).
    """
    if estimator(model) in TRAINED_ESTIMATORS:
        return "encode_trained"
    return "encode_lasso" if estimator(model) in CPU_ESTIMATORS else "encode"


def model_choice(rule_name):
    """Regex for the `model` wildcard of an encoding rule: the models that rule fits."""
    names = [m for m in MODELS if encoding_rule(m) == rule_name]
    return "|".join(names) if names else "(?!)"  # (?!) matches nothing


def gpu_request():
    """GPUs a GPU-capable job requests: 1, or 0 with `gpu: false`, or with `gpu: auto` (the
    default) on a machine without a GPU, where reserving one would run the jobs one by one.
    A cluster profile must say `gpu: true` or false: the login node tells nothing."""
    setting = config.get("gpu", "auto")
    if setting == "auto" and profile_names_cpu_partition():
        raise WorkflowError(
            "config gpu is auto, but the profile names a SLURM partition (default-resources: "
            "slurm_partition): whether the nodes have GPUs cannot be seen from here. Fix: keep "
            "`gpu: true` in the profile's `config:` (profiles/slurm/config.yaml) and, when you "
            "pass --config on the command line (it replaces the profile's config:), add "
            "gpu=True slurm_gpu_partition=<your GPU partition> to it (or gpu=False)."
        )
    return 1 if gpu_setting(setting) else 0


def profile_names_cpu_partition():
    """Whether the profile's default-resources name a SLURM partition (a cluster run)."""
    defaults = workflow.resource_settings.default_resources
    return any(
        arg.startswith("slurm_partition=")
        for arg in (defaults.args if defaults else [])
    )


def gpu_resources():
    """The GPU and partition resources of every GPU-capable rule (`**gpu_resources()`).

    `gpu` is gpu_request(). Locally the workstation profile's `resources: gpu=N` caps how
    many run at once; on SLURM the executor turns it into `--gpus`, and `slurm_partition`
    sends the job to the GPU partition the SLURM profile names (`config:
    slurm_gpu_partition`). With `gpu: false` there is no GPU and no partition: the job
    goes where CPU jobs go (default-resources) and runs on CPU. (The workstation
    profile names no partitions.)
    """
    gpus, partition = gpu_request(), gpu_partition()
    return {
        "gpu": gpus,
        **({"slurm_partition": partition} if gpus and partition else {}),
    }


def gpu_partition():
    """The GPU partition the SLURM profile names (`config: slurm_gpu_partition`), else None.

    A profile that names a CPU partition (default-resources `slurm_partition`) must name
    the GPU one too while GPUs are requested: a `--config` on the command line replaces
    the profile's `config:` entries, and GPU jobs would then be sent to the CPU partition.
    """
    partition = config.get("slurm_gpu_partition")
    if partition is None and profile_names_cpu_partition() and gpu_request():
        raise WorkflowError(
            "config slurm_gpu_partition is not set, but the profile names a CPU partition "
            "(default-resources: slurm_partition): GPU jobs would go to the CPU partition. "
            "Fix: keep `config: slurm_gpu_partition` in profiles/slurm/config.yaml and, when "
            "you pass --config on the command line (it replaces the profile's config:), add "
            "slurm_gpu_partition=<your GPU partition> to it (or gpu=False for no GPUs)."
        )
    return partition


def extractor_settings(name):
    """Config section of a learned extractor (the keyword arguments of its library function)."""
    return config["features"].get(name, {})


def stimulus_videos():
    return [v for v, row in VIDEO_ROWS.items() if row["kind"] == "stimulus"]


def feature_targets():
    """Features files of `features.extractors` for every stimulus video of the sheet."""
    return expand(
        "results/features/{extractor}/{video}.h5",
        extractor=config["features"]["extractors"],
        video=stimulus_videos(),
    )


def video_value(video, column):
    """A videos-sheet cell as loaded (NaN when empty), or None when the sheet has no such column."""
    return VIDEO_ROWS[video].get(column)


def recording_value(recording, column):
    """A recordings-sheet cell as loaded (NaN when empty), or None when the sheet has no such column."""
    return RECORDING_ROWS[recording].get(column)


def video_path(wildcards):
    return VIDEO_ROWS[wildcards.video]["path"]


def recording_path(wildcards):
    return RECORDING_ROWS[wildcards.recording]["path"]


def subject_modality(subject):
    return SUBJECT_MODALITY[subject]


def stimulus_timeline(wildcards):
    """[[video_id, onset], ...] of a recording's stimulus timeline (the align / demo params);
    None where the timeline is a table of the NWB file (`nwb:<table>`): ingest stores it in
    the responses file (`stimulus_events`), and align reads it from there."""
    timeline = RECORDING_ROWS[wildcards.recording]["timeline"]
    if timeline is None:
        return None
    return [[e.video_id, e.onset] for e in timeline]


def nwb_params(wildcards):
    """What ingest reads from an NWB recording (neurovid.nwb.ingest_nwb keywords), else None.

    `videos` maps video ids to the sheet's paths (the presentations table names a video by
    id or file name stem): only the videos the table shows when it was read at parse time.
    """
    row = RECORDING_ROWS[wildcards.recording]
    if not str(row["path"]).lower().endswith(".nwb"):
        return None
    table = row["stimulus_table"]
    shown = row["nwb_videos"] if row["nwb_videos"] is not None else list(VIDEO_ROWS)
    return {
        "series": recording_cell(wildcards.recording, "nwb_series"),
        "behavior": recording_cell(wildcards.recording, "nwb_behavior"),
        "stimulus_table": table,
        "video_column": recording_cell(wildcards.recording, "nwb_video_column"),
        "videos": {v: VIDEO_ROWS[v]["path"] for v in shown} if table else {},
    }


def recording_cell(recording, column):
    """A recordings-sheet cell as text, or None when the column is absent or the cell empty."""
    value = recording_value(recording, column)
    return None if value is None or pd.isna(value) else str(value)


def model_body_spaces(model):
    """The body spaces (neurovid.body) among a model's features, in order."""
    return [s for s in MODELS[model]["features"] if body.is_body_space(s)]


@functools.cache
def model_subjects(model):
    """Subjects a model is fit on: those whose modality the model lists and, when its
    features name body spaces, whose runs all give that behavior (neurovid.body); the
    subjects left out are named once, when the DAG is built."""
    spec = MODELS[model]
    runs = {
        s: r
        for s, r in SUBJECT_RUNS.items()
        if subject_modality(s) in set(spec["modalities"])
    }
    fit, left_out = body.subjects_with_body(spec["features"], runs, RECORDING_ROWS)
    spaces = model_body_spaces(model)
    for subject, lacking in left_out.items() if workflow.is_main_process else ():
        print(
            f"neurovid: model {model} is not fit on {subject}: runs {', '.join(lacking)} "
            f"give no behavior for its body spaces ({', '.join(spaces)}; recordings sheet "
            f"columns {body.behavior_columns(spaces)}).",
            file=sys.stderr,
        )
    return fit


def model_subject_pairs():
    """(model, subject) of every encoding model fit, in config then sheet order."""
    return [(model, subject) for model in MODELS for subject in model_subjects(model)]


def fmri_subjects(model):
    return [s for s in model_subjects(model) if subject_modality(s) == "fmri"]


def pc_design_inputs(wildcards):
    """The aligned features of each fMRI subject's first run, one per feature space of the
    model (subject-major): their widths locate the slowfast columns in the weights."""
    return [
        f"results/aligned/{space}/{SUBJECT_RUNS[subject][0]}.h5"
        for subject in fmri_subjects(wildcards.model)
        for space in MODELS[wildcards.model]["features"]
    ]


def timeline_source(recording):
    """Where a recording's stimulus timeline comes from, as error messages name it."""
    row = RECORDING_ROWS[recording]
    events = row.get("events")
    if isinstance(events, str) and events:
        return f"the BIDS events file {events} (columns onset, {bids_stim_column()})"
    if str(row["stimulus"]).startswith(sheets.NWB_STIMULUS):
        return (
            f"the {row['stimulus'][len(sheets.NWB_STIMULUS):]} table of {row['path']}"
        )
    return f"the `stimulus` column of {config['recordings']} (row {recording})"


def bids_stim_column():
    return (config.get("bids") or {}).get("stim_column", "stim_file")


def timeline_videos(recording):
    """Videos of a recording's timeline (align's feature inputs, known when the DAG is built).

    A timeline in an NWB file was read at parse time (h5py, neurovid.nwb); a file the
    workflow makes itself does not exist yet then: all stimulus videos of the sheet.
    """
    row = RECORDING_ROWS[recording]
    if row["timeline"] is None:
        shown = row["nwb_videos"]
        return list(shown) if shown is not None else stimulus_videos()
    return [event.video_id for event in row["timeline"]]


def recording_sheet(recording):
    """The recordings sheet a row comes from, as error messages name it."""
    row = RECORDING_ROWS[recording]
    if config.get("bids") and isinstance(row.get("events"), str) and row["events"]:
        return BIDS_SHEET
    return config.get("recordings") or BIDS_SHEET


def align_features(wildcards):
    """Features files align places on a recording's samples: those of its stimulus
    timeline's videos, or for a body feature space (neurovid.body) the recording's
    behavior video's or its behavior channels' (an error naming the recording and the
    missing column when it has none)."""
    space, recording = wildcards.extractor, wildcards.recording
    if body.is_body_space(space):
        return [
            f"results/features/{space}/{unit}.h5"
            for unit, _ in body_events(space, recording)
        ]
    return expand(
        "results/features/{extractor}/{video}.h5",
        extractor=space,
        video=timeline_videos(recording),
    )


def body_events(space, recording):
    row = RECORDING_ROWS[recording]
    return body.body_timeline(space, recording, row, recording_sheet(recording))


def align_timeline(wildcards):
    """align's events: the stimulus timeline, or a body space's one event."""
    if body.is_body_space(wildcards.extractor):
        return body_events(wildcards.extractor, wildcards.recording)
    return stimulus_timeline(wildcards)


def align_source(wildcards):
    """Where align's events come from, as its error messages name it."""
    if body.is_body_space(wildcards.extractor):
        return body.body_source(
            wildcards.extractor,
            wildcards.recording,
            recording_sheet(wildcards.recording),
        )
    return timeline_source(wildcards.recording)


def behavior_channel_inputs(wildcards):
    """The responses file (samples; NWB channels) and the sheet's `behavior` table."""
    table = recording_cell(wildcards.recording, "behavior")
    return {
        "responses": f"results/neural/{wildcards.recording}.h5",
        **({"table": table} if table else {}),
    }


def behavior_offset(recording):
    """The sheet's behavior_offset_s of a recording, or None."""
    value = recording_value(recording, "behavior_offset_s")
    return None if value is None or pd.isna(value) else float(value)


def used_extractors():
    return sorted({f for m in MODELS.values() for f in m["features"]})


def subject_recordings(wildcards):
    return SUBJECT_RUNS[wildcards.subject]


def encode_threads(wildcards):
    """CPU threads an encode job reserves: the model's `threads`, else `encoding.threads`."""
    return int(
        MODELS[wildcards.model].get("threads", config["encoding"].get("threads", 1))
    )


def compute_precision(device):
    """How a GPU-capable job computes, a param of the cached rules (their outputs differ):
    bf16 autocast where it gets a GPU, fp32 on the CPU (`device: cpu`, or no GPU requested).
    """
    return "bf16-autocast" if gpu_request() and device != "cpu" else "fp32"


def env_pins(env):
    """The package pins of envs/{env}.yaml (its `dependencies`): the `software` param of the
    cached rules (rules/features.smk). Editing a pin then misses the between-workflow cache
    (and re-runs the job: the `params` trigger), whether jobs run in that env or in the venv
    that constraints.txt pins to the same versions (tests/test_envs.py)."""
    text = (Path(workflow.basedir) / "envs" / f"{env}.yaml").read_text()
    return yaml.safe_load(text)["dependencies"]


def behavior_threads():
    """CPU threads of a frame-classifier or action-localization job (config `behavior.threads`)."""
    return int(config["behavior"].get("threads", 1))


def stimulus_keys(wildcards):
    """One key per run of the subject: its parsed stimulus timeline (equal keys = repeats;
    sheets.load_recordings: `stimulus_key`)."""
    return [
        RECORDING_ROWS[run]["stimulus_key"] for run in SUBJECT_RUNS[wildcards.subject]
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
        if subjects and PARTITION_PARTS[model]:
            targets += [
                f"results/figures/{model}/variance_partition.png",
                f"results/figures/{model}/variance_targets.png",
            ]
            if fmri_subjects(model):  # the subjects' mean maps of each part
                targets += [f"results/figures/{model}/variance_maps.png"]
        if len(fmri_subjects(model)) >= 2:
            targets += [
                f"results/stats/{model}/summary.json",
                f"results/figures/{model}/surface.png",
                f"results/figures/{model}/glass_brain.png",
            ]
            if PC_MODELS[model]:
                targets.append(f"results/figures/{model}/pc_maps.png")
    if model_subject_pairs():
        targets.append("results/figures/model_comparison.png")
    targets += behavior_targets()
    targets += retina_targets()
    if sensorium_mice():
        targets.append("results/deep/sensorium/summary.json")
    if config["video"]["frames"]:
        targets += expand("results/video/{video}/frames", video=VIDEOS.index)
    targets += summary_targets()  # rules/summary.smk: the report's front page
    return targets


# ---------------------------------------------------------------- behavior stage


def behavior_videos():
    return [v for v, row in VIDEO_ROWS.items() if row["kind"] == "behavior"]


def sheet_value(video, column):
    """A videos-sheet cell, or None when the column is absent or the cell empty."""
    value = video_value(video, column)
    return None if value is None or pd.isna(value) else value


def sheet_geometry(video):
    """Pixel -> cm scale and arena placement columns of a behavior video (None when empty)."""
    columns = ("arena_cm", "arena_px", "arena_x0_px", "arena_y0_px")
    return {
        c: sheet_value(video, c) for c in (*columns, "reference_cm", "reference_px")
    }


def pose_file(wildcards):
    """The sheet's `pose` file (e.g. DeepLabCut output made elsewhere), else DeepLabCut's here."""
    return sheet_value(wildcards.video, "pose") or f"results/pose/{wildcards.video}.h5"


def pose_options(video):
    """The sheet's `pose_source` (None: detect the format) and CalMS21 `sequence` of a video."""
    return {k: sheet_value(video, k) for k in ("pose_source", "sequence")}


def calms21_annotations(wildcards):
    """The CalMS21/MABe .json a video's annotations come from (rule calms21_annotations)."""
    return sheet_value(wildcards.video, "annotations")


def annotations_of(video):
    """The annotation CSV of a video: the sheet's, or the one made from its CalMS21 .json."""
    value = sheet_value(video, "annotations")
    if value and str(value).lower().endswith(".json"):
        return f"results/behavior/annotations/{video}.csv"
    return value


def local_model(model):
    """A model made by this workflow (results/...) is an input; hub ids and other folders are not."""
    return [model] if str(model).startswith("results/") else []


def classifier_frames():
    frames = config["behavior"]["classifier"]["frames"]
    return frames or "results/behavior/classifier/frames"


def _annotated_inputs(videos):
    return {
        "videos": [video_path(SimpleNamespace(video=v)) for v in videos],
        "annotations": [annotations_of(v) for v in videos],
        "probes": [f"results/video/{v}/probe.json" for v in videos],
    }


def labeled_frames_inputs(wildcards):
    return _annotated_inputs(config["behavior"]["classifier"]["frames_from"])


def action_training_inputs(wildcards):
    videos = config["behavior"]["actions"]["train_videos"]
    return {
        **_annotated_inputs(videos),
        "poses": [pose_file(SimpleNamespace(video=v)) for v in videos],
    }


def held_out_videos():
    """Annotated behavior videos not used to train the action localizer: scored against truth."""
    train = set(config["behavior"]["actions"]["train_videos"])
    return [v for v in behavior_videos() if annotations_of(v) and v not in train]


def evaluation_inputs(wildcards):
    videos = held_out_videos()
    return {
        "segments": [f"results/behavior/{v}.segments.csv" for v in videos],
        "annotations": [annotations_of(v) for v in videos],
        "probes": [f"results/video/{v}/probe.json" for v in videos],
    }


def behavior_figure_inputs(wildcards):
    v = wildcards.video
    inputs = {
        "probe": f"results/video/{v}/probe.json",
        "kinematics": f"results/kinematics/{v}.csv",
        "kinematics_summary": f"results/kinematics/{v}.json",
        "frames": f"results/behavior/{v}.frames.csv",
        "segments": f"results/behavior/{v}.segments.csv",
    }
    if annotations_of(v):
        inputs["annotations"] = annotations_of(v)
    return inputs


def behavior_targets():
    videos = behavior_videos()
    if not videos:
        return []
    targets = expand(
        "results/figures/behavior/{video}/{figure}.png",
        video=videos,
        figure=["ethogram", "trajectory", "speed", "segments"],
    )
    targets.append("results/figures/behavior/confusion.png")
    targets += expand("results/nwb/{video}.nwb", video=videos)
    if held_out_videos():
        targets.append("results/behavior/evaluation.tsv")
    return targets


# ---------------------------------------------------------------- results summary (rules/summary.smk)


def summary_stats_models():
    """Models with group statistics (2+ fMRI subjects), in config order."""
    return [model for model in MODELS if len(fmri_subjects(model)) >= 2]


def summary_inputs(wildcards):
    """scores.h5 of every fit; per model with group statistics its files in the order of
    neurovid.summary.STATS_FILES; the behavior evaluation and the frame classifier when
    the behavior stage ran."""
    inputs = {
        "scores": [
            f"results/encoding/{model}/{subject}/scores.h5"
            for model, subject in model_subject_pairs()
        ],
        "stats": [
            f"results/stats/{model}/{name}"
            for model in summary_stats_models()
            for name in ("summary.json", "t.nii.gz", "fdr_mask.nii.gz", "mean_r.nii.gz")
        ],
    }
    if held_out_videos():
        inputs["evaluation"] = "results/behavior/evaluation.tsv"
    if behavior_videos():
        inputs["classifier"] = "results/behavior/classifier/model"
    return inputs


def summary_targets():
    """The summary, when there is anything to summarize."""
    if model_subject_pairs() or behavior_videos():
        return ["results/summary/summary.tsv"]
    return []


def report_figures():
    """The figures the workflow makes (all targets under results/figures/): the front
    page links them."""
    return [t for t in all_targets() if str(t).startswith("results/figures/")]


# ---------------------------------------------------------------- deep encoders (rules/deep.smk, rules/retina.smk)


def sensorium_settings():
    """Config section deep.sensorium (the ViViT + (q)LoRA mouse encoder); {} when absent."""
    return config.get("deep", {}).get("sensorium", {})


def sensorium_subjects():
    """neurovid subjects of deep.sensorium, checked against recordings.tsv (spikes/calcium only)."""
    subjects = list(sensorium_settings().get("subjects", []))
    for subject in subjects:
        if subject not in SUBJECT_RUNS or subject_modality(subject) == "fmri":
            raise ValueError(
                f"config deep.sensorium.subjects: {subject!r} is not a spikes/calcium subject of "
                "the recordings sheet. Fix: list subjects whose runs are spikes or calcium."
            )
    return subjects


def sensorium_mice():
    """Mouse ids of the Sensorium encoder: its Sensorium folders, then its neurovid subjects."""
    return [*sensorium_settings().get("folders", {}), *sensorium_subjects()]


def sensorium_runs():
    """Per neurovid subject: each run's id, stimulus timeline, responses and video files."""
    for subject in sensorium_subjects():
        for run in SUBJECT_RUNS[subject]:
            if RECORDING_ROWS[run]["timeline"] is None:
                raise ValueError(
                    f"config deep.sensorium.subjects: run {run!r} of {subject!r} has its "
                    "stimulus timeline in its NWB file, which the Sensorium encoder does not "
                    "read yet. Fix: give its `stimulus` as video_id@onset;... in the "
                    "recordings sheet, or leave the subject out of deep.sensorium.subjects."
                )
    return {
        subject: [
            {
                "recording": run,
                "stimulus": ";".join(
                    f"{e.video_id}@{e.onset:g}" for e in RECORDING_ROWS[run]["timeline"]
                ),
                "responses": f"results/neural/{run}.h5",
                "videos": {
                    v: f"results/video/{v}/standard.mp4" for v in timeline_videos(run)
                },
            }
            for run in SUBJECT_RUNS[subject]
        ]
        for subject in sensorium_subjects()
    }


def sensorium_inputs(wildcards):
    """Inputs of train_sensorium: Sensorium tier files, the subjects' responses and videos."""
    runs = [run for s in sensorium_subjects() for run in SUBJECT_RUNS[s]]
    folders = sensorium_settings().get("folders", {}).values()
    return {
        "tiers": [str(Path(f) / "meta" / "trials" / "tiers.npy") for f in folders],
        "responses": expand("results/neural/{recording}.h5", recording=runs),
        "videos": sorted(
            {
                f"results/video/{v}/standard.mp4"
                for r in runs
                for v in timeline_videos(r)
            }
        ),
    }


def retina_config():
    """Config of the Vi-ST retina model (`deep.retina`); {} when the section is absent."""
    return config.get("deep", {}).get("retina", {})


def retina_movies(wildcards):
    """Video ids of a retina experiment, in config order."""
    return list(retina_config()["experiments"][wildcards.experiment])


def retina_features(wildcards):
    extractor = retina_config().get("extractor", "vit")
    return [f"results/features/{extractor}/{v}.h5" for v in retina_movies(wildcards)]


def retina_responses(wildcards):
    """Responses files (trials x time x cells) of the experiment's movies, same order."""
    return list(retina_config()["experiments"][wildcards.experiment].values())


def retina_targets():
    """Every experiment's scores (+ cross-video table when it has two or more movies)."""
    section = retina_config()
    targets = []
    for name, movies in section.get("experiments", {}).items():
        targets.append(f"results/deep/retina/{name}/scores.tsv")
        if section.get("cross_video", True) and len(movies) >= 2:
            targets.append(f"results/deep/retina/{name}/cross_video.tsv")
    return targets


# ---------------------------------------------------------------- pose (rules/pose.smk)


def pose_settings():
    """Config section `pose` (DeepLabCut). Pose runs only when `pose.project` is set."""
    return config.get("pose") or {}


def pose_train_settings():
    """The `pose` settings pose_train uses (a param, so part of its between-workflow cache
    key): inference settings (snapshot, video, batch_size) do not re-train."""
    keys = ("shuffle", "trainingsetindex", "device", "train")
    return {k: v for k, v in pose_settings().items() if k in keys}


def pose_enabled():
    return bool(pose_settings().get("project"))


def pose_training():
    return pose_enabled() and bool((pose_settings().get("train") or {}).get("enabled"))


def pose_source():
    """The user's DeepLabCut project as its config.yaml (a folder names its config.yaml:
    the between-workflow cache hashes input files, and a folder cannot be hashed);
    [] while pose is off."""
    project = pose_settings().get("project")
    if not project:
        return []
    return str(Path(project) / "config.yaml") if Path(project).is_dir() else project


def pose_labels():
    """The project's labelled frames (CollectedData_*.h5): editing labels re-trains."""
    if not pose_enabled():
        return []
    project = Path(pose_settings()["project"])
    folder = project if project.is_dir() else project.parent
    return sorted(str(p) for p in folder.glob("labeled-data/*/CollectedData_*.h5"))


def pose_model():
    """Model input of `pose`. With training on, pose_train's trained folder; else the project."""
    return "results/pose/model/project" if pose_training() else pose_source()


def pose_video(wildcards):
    """Video `pose` analyses: the sheet's original (default) or the standardized one (pose.video)."""
    if pose_settings().get("video", "original") == "original":
        return video_path(wildcards)
    return f"results/video/{wildcards.video}/standard.mp4"
