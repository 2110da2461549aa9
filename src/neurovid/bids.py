"""The BIDS + fMRIPrep front door: a BIDS dataset becomes rows of the recordings sheet.

A lab's fMRI arrives as a raw BIDS dataset (``sub-*/[ses-*/]func/*_events.tsv``,
sidecars) preprocessed by fMRIPrep (``derivatives/fmriprep``:
``*_space-<space>_desc-preproc_bold.nii.gz`` + ``.json``,
``*_desc-confounds_timeseries.tsv``). :func:`bids_recordings` indexes both with
pybids once and returns one recordings-sheet row per functional run that has
events, in the sheet route's own columns, so nothing downstream forks:

==============  =============================================================
recording_id    the run's BIDS name up to the suffix (``sub-01_task-movie_run-1``)
subject         ``sub-<label>`` (a subject's runs are fit together)
modality        ``fmri``
path            fMRIPrep's preprocessed BOLD in ``space``
stimulus        ``video@onset;...`` from the events' ``stim_file`` column (seconds
                from the start of the first volume, the BIDS definition)
tr              ``RepetitionTime`` of the raw sidecars (BIDS inheritance), when set
sidecar         the preprocessed BOLD's JSON sidecar (its ``RepetitionTime`` wins)
confounds       fMRIPrep's confounds table of the run
events          the raw events file (named by errors)
==============  =============================================================

A video named by ``stim_file`` is the videos-sheet row whose ``video_id`` or file
name (with or without extension) equals the file name in the events (BIDS
``stimuli/`` paths included). Event rows with an empty ``stim_file`` (fixation,
responses) are not stimuli and are skipped. Derivative files that do not exist
yet are expected under fMRIPrep's names only where this workflow makes them
(under ``results/``, e.g. the demo); elsewhere a missing file is an error naming
the run.

pybids runs in the workflow's main process only (imported there, so the ingest job,
which reads a sidecar's TR with :func:`repetition_time`, does not need it); jobs (SLURM, subprocesses)
read the sheet that process wrote (rules/common.smk), so the dataset is indexed
once per invocation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from neurovid.errors import InputError
from neurovid.sheets import RESULTS_DIR

#: BIDS entities that name a run, in BIDS filename order (the recording id keeps them).
RUN_ENTITIES = ("subject", "session", "task", "acquisition", "direction", "run", "echo")
_PREFIX = {
    "subject": "sub",
    "session": "ses",
    "task": "task",
    "acquisition": "acq",
    "direction": "dir",
    "run": "run",
    "echo": "echo",
}
#: Filters of the ``bids:`` config passed to pybids queries.
FILTERS = ("subject", "session", "task", "run")
SHEET_COLUMNS = (
    "recording_id",
    "subject",
    "modality",
    "path",
    "stimulus",
    "tr",
    "sidecar",
    "confounds",
    "events",
)


def _layout(root: Path, what: str, derivative: bool = False) -> Any:
    """A pybids layout of ``root`` (no validation, no metadata index: fast)."""
    from bids import BIDSLayout, BIDSLayoutIndexer

    if not (root / "dataset_description.json").is_file():
        raise InputError(
            root,
            f"is not a BIDS {what}: it has no dataset_description.json.",
            f"set `bids: {'derivatives' if derivative else 'root'}` in config.yaml to the "
            f"{'fMRIPrep output folder' if derivative else 'dataset folder'} (the one holding "
            "dataset_description.json).",
        )
    return BIDSLayout(
        root,
        validate=False,
        is_derivative=derivative,
        derivatives=False,
        indexer=BIDSLayoutIndexer(validate=False, index_metadata=False),
    )


def _filters(settings: Mapping[str, Any]) -> dict[str, Any]:
    """pybids query filters from the config (None = all; a value or a list)."""
    out = {}
    for key in FILTERS:
        value = settings.get(key)
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        out[key] = [str(v) for v in values]
    return out


def run_name(entities: Mapping[str, Any]) -> str:
    """``sub-01_ses-1_task-movie_run-1``: the run's entities in BIDS order."""
    parts = []
    for key in RUN_ENTITIES:
        value = entities.get(key)
        if value is not None and str(value) != "":
            parts.append(f"{_PREFIX[key]}-{value}")  # pybids keeps a run's zero padding
    return "_".join(parts)


def _func_dir(root: Path, entities: Mapping[str, Any]) -> Path:
    folder = root / f"sub-{entities['subject']}"
    if entities.get("session"):
        folder = folder / f"ses-{entities['session']}"
    return folder / "func"


def _fmriprep_names(deriv: Path, entities: Mapping[str, Any], space: str) -> dict[str, Path]:
    """fMRIPrep's file names of a run (what a derivatives folder made by a job will hold)."""
    stem = _func_dir(deriv, entities) / run_name(entities)
    return {
        "path": Path(f"{stem}_space-{space}_desc-preproc_bold.nii.gz"),
        "sidecar": Path(f"{stem}_space-{space}_desc-preproc_bold.json"),
        "confounds": Path(f"{stem}_desc-confounds_timeseries.tsv"),
    }


def _derivative_index(layout: Any, space: str) -> dict[str, dict[str, Path]]:
    """Run name -> its preprocessed BOLD (``path``), ``sidecar`` and ``confounds`` in a
    pybids derivatives index (three queries in all, not three per run: bench/bids_dag.py)."""
    queries = {
        "path": {"suffix": "bold", "desc": "preproc", "space": space, "extension": ".nii.gz"},
        "sidecar": {"suffix": "bold", "desc": "preproc", "space": space, "extension": ".json"},
        "confounds": {"suffix": "timeseries", "desc": "confounds", "extension": ".tsv"},
    }
    from bids.layout import parse_file_entities

    index: dict[str, dict[str, Path]] = {}
    for key, query in queries.items():
        for found in map(Path, layout.get(datatype="func", return_type="filename", **query)):
            name = run_name(parse_file_entities(str(found)))
            files = index.setdefault(name, {})
            if key in files:
                raise InputError(
                    found.parent,
                    f"run {name} has several {key} files for space {space} ({files[key].name}, "
                    f"{found.name}).",
                    "keep one per run (e.g. one resolution) or filter the runs in `bids:`.",
                    field="space",
                )
            files[key] = found
    return index


def _made_here(path: Path, workdir: Path) -> bool:
    """Whether a relative path lies under results/ (a job of this workflow makes it)."""
    try:
        relative = path.relative_to(workdir) if path.is_absolute() else path
    except ValueError:
        return False
    return bool(relative.parts) and relative.parts[0] == RESULTS_DIR


def raw_repetition_time(root: Path, entities: Mapping[str, Any], cache: dict) -> float | None:
    """``RepetitionTime`` of the run's raw ``*_bold.json`` sidecars (BIDS inheritance:
    dataset, subject, session and run level, the deepest wins), or None."""
    name = run_name(entities)
    task = f"task-{entities['task']}" if entities.get("task") else ""
    candidates = [
        root / f"{task}_bold.json",
        root / f"sub-{entities['subject']}" / f"sub-{entities['subject']}_{task}_bold.json",
    ]
    candidates.append(_func_dir(root, entities) / f"{name}_bold.json")
    value = None
    for candidate in candidates:
        if candidate not in cache:
            cache[candidate] = json.loads(candidate.read_text()) if candidate.is_file() else {}
        value = cache[candidate].get("RepetitionTime", value)
    return None if value is None else float(value)


def _video_lookup(videos: pd.DataFrame) -> dict[str, str]:
    """Names a ``stim_file`` may use for a video -> its video_id (id, file name, stem)."""
    lookup: dict[str, str] = {}
    for video_id, path in zip(videos["video_id"], videos["path"], strict=True):
        name = Path(str(path)).name
        for key in (name, Path(name).stem, Path(name).name.split(".")[0]):
            lookup.setdefault(key, video_id)
    for video_id in videos["video_id"]:
        lookup[video_id] = video_id  # an id wins over another video's file name
    return lookup


def events_timeline(
    path: Path, lookup: Mapping[str, str], stim_column: str, videos_sheet: str
) -> str:
    """The run's ``video@onset;...`` stimulus text from its BIDS events file."""
    table = pd.read_csv(path, sep="\t", na_values=["n/a", ""], keep_default_na=False)
    for column in ("onset", stim_column):
        if column not in table.columns:
            raise InputError(
                path,
                f"has no `{column}` column (columns: {', '.join(map(str, table.columns))}).",
                "add it (BIDS events: onset, duration, and the stimulus file in "
                f"`{stim_column}`), or set `bids: stim_column` to the column naming the video.",
                field=column,
            )
    items = []
    for row, (onset, stim) in enumerate(zip(table["onset"], table[stim_column], strict=True)):
        if pd.isna(stim) or not str(stim).strip():
            continue  # not a stimulus (fixation, a response, ...)
        name = Path(str(stim).strip()).name
        video_id = lookup.get(name) or lookup.get(Path(name).stem)
        if video_id is None:
            raise InputError(
                path,
                f"row {row + 2}: {stim_column} {stim!r} is not in the videos sheet {videos_sheet}.",
                f"add a row for it to {videos_sheet} (video_id = its file name without the "
                f"extension, path = the video), or correct `{stim_column}` in the events file.",
                field=stim_column,
            )
        items.append(f"{video_id}@{float(onset):g}")
    if not items:
        raise InputError(
            path,
            f"names no stimulus video (column `{stim_column}` is empty in every row).",
            "fill in the video shown at each onset, or leave this run out with the `bids:` "
            "filters (task, run, session, subject).",
            field=stim_column,
        )
    return ";".join(items)


def bids_recordings(
    settings: Mapping[str, Any],
    videos: pd.DataFrame,
    videos_sheet: str = "videos.tsv",
    workdir: str | Path = ".",
) -> pd.DataFrame:
    """One recordings-sheet row per functional run of a BIDS + fMRIPrep dataset.

    Args:
        settings: the ``bids:`` config (root, derivatives, space, stim_column and the
            subject / session / task / run filters).
        videos: the videos sheet (stim_file -> video_id).
        videos_sheet: its path, named in errors.
        workdir: the directory snakemake runs in (relative paths).

    Raises:
        InputError: no dataset there, a run without its fMRIPrep files, a stimulus
            file not in the videos sheet, no run matching the filters.
    """
    from bids.layout import parse_file_entities

    workdir = Path(workdir)
    root = Path(settings["root"])
    deriv = Path(settings["derivatives"])
    space, stim_column = str(settings["space"]), str(settings.get("stim_column", "stim_file"))
    raw = _layout(root, "dataset")
    derivatives = _layout(deriv, "derivatives folder", True) if deriv.exists() else None
    if derivatives is None and not _made_here(deriv, workdir):
        raise InputError(
            deriv,
            "the fMRIPrep derivatives folder does not exist.",
            "set `bids: derivatives` to the folder fMRIPrep wrote (it holds sub-*/func/"
            "*_desc-preproc_bold.nii.gz).",
            field="derivatives",
        )
    derived = _derivative_index(derivatives, space) if derivatives is not None else {}
    filters = _filters(settings)
    events = raw.get(
        suffix="events", extension=".tsv", datatype="func", return_type="filename", **filters
    )
    if not events:
        raise InputError(
            root,
            f"has no functional runs with events matching {filters or 'any'}.",
            "check `bids: root` and the filters (subject, session, task, run); each run "
            "needs a sub-*/func/*_events.tsv naming the video shown (column stim_file).",
        )
    lookup, tr_cache, rows = _video_lookup(videos), {}, []
    for event_file in sorted(map(Path, events)):
        entities = parse_file_entities(str(event_file))
        name = run_name(entities)
        files = {k: derived.get(name, {}).get(k) for k in ("path", "sidecar", "confounds")}
        expected = _fmriprep_names(deriv, entities, space)
        for key, found in files.items():
            if found is None and _made_here(expected[key], workdir):
                files[key] = expected[key]
        if files["path"] is None:
            raise InputError(
                deriv,
                f"has no preprocessed BOLD of run {name} in space {space} (looked for "
                f"{expected['path'].name} and variants).",
                "run fMRIPrep on it with this output space, set `bids: space` to a space "
                "fMRIPrep wrote, or leave the run out with the `bids:` filters.",
                field="space",
            )
        rows.append(
            {
                "recording_id": name,
                "subject": f"sub-{entities['subject']}",
                "modality": "fmri",
                "path": relative_to(files["path"], workdir),
                "stimulus": events_timeline(event_file, lookup, stim_column, videos_sheet),
                "tr": raw_repetition_time(root, entities, tr_cache),
                "sidecar": None
                if files["sidecar"] is None
                else relative_to(files["sidecar"], workdir),
                "confounds": None
                if files["confounds"] is None
                else relative_to(files["confounds"], workdir),
                "events": relative_to(event_file, workdir),
            }
        )
    return pd.DataFrame(rows, columns=list(SHEET_COLUMNS))


def relative_to(path: str | Path, workdir: Path) -> str:
    """``path`` relative to ``workdir`` when under it (how sheets name files). pybids
    returns absolute paths: kept as they are, a copied or moved project would re-run
    every job of its runs (Snakemake compares the set of input files), and the first
    invocation (derivatives made by the workflow, named relative) would differ from
    the next."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(workdir.resolve()))
    except ValueError:
        return str(path)


def write_sheet(table: pd.DataFrame, path: str | Path) -> bool:
    """Write the derived sheet (TSV) atomically when its content changed; returns whether
    it was written (an unchanged sheet keeps its modification time)."""
    from neurovid.io import atomic_path

    path = Path(path)
    text = table.to_csv(sep="\t", index=False, na_rep="")
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return True


def repetition_time(sidecar: str | Path, raw_tr: float | None, recording: str) -> float:
    """A BIDS run's TR: ``RepetitionTime`` of fMRIPrep's sidecar, else of the raw dataset's
    sidecars (``raw_tr``, the derived sheet's `tr`).

    Raises:
        InputError: neither gives a positive RepetitionTime (names the sidecar and fix).
    """
    sidecar = Path(sidecar)
    try:
        value = json.loads(sidecar.read_text()).get("RepetitionTime")
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(
            sidecar, f"cannot be read as JSON ({err}).", "rewrite it as a JSON object."
        ) from None
    value = raw_tr if value is None else value
    if value is None or not float(value) > 0:
        raise InputError(
            sidecar,
            f"run {recording} has no RepetitionTime (seconds) in this sidecar nor in the raw "
            "dataset's *_bold.json sidecars.",
            "add RepetitionTime to the raw dataset's task-<task>_bold.json (BIDS requires "
            "it) or to this sidecar.",
            field="RepetitionTime",
        )
    return float(value)
