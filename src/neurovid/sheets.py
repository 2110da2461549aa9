"""Sample sheets: load, validate against the JSON schemas, and explain every problem.

``videos.tsv`` and ``recordings.tsv`` are validated row by row with
``snakemake.utils.validate``; on top of the schema this module checks what a
schema cannot: unique IDs, that files outside ``results/`` exist, and that
every stimulus a recording names is a known video with sensible onsets.

Relative paths in a sheet are relative to the directory Snakemake runs in.
Paths are only ever read: every output name is built from validated IDs, so
nothing a sheet says can make a rule write outside ``results/``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from neurovid.errors import InputError

ID_PATTERN = r"[A-Za-z0-9_-]+"
_ID_RE = re.compile(rf"^{ID_PATTERN}$")
RESULTS_DIR = "results"

VIDEO_NUMERIC = (
    "fps",
    "arena_cm",
    "arena_px",
    "arena_x0_px",
    "arena_y0_px",
    "reference_cm",
    "reference_px",
)
# Optional file columns of videos.tsv (checked like `path` when filled in).
VIDEO_FILES = ("pose", "annotations")
RECORDING_NUMERIC = ("tr", "sampling_rate", "behavior_offset_s")
#: `stimulus` of a recording whose timeline is a TimeIntervals table of its NWB file
NWB_STIMULUS = "nwb:"


@dataclass(frozen=True)
class StimulusEvent:
    """One video in a recording's timeline: which video, starting when (seconds)."""

    video_id: str
    onset: float


def _read_tsv(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(
            path, f"the {what} sheet does not exist.", f"set `{what}` in config.yaml to a TSV file."
        )
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment=None)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(
            path,
            f"cannot be parsed as a tab-separated table ({err}).",
            "save it as TSV with a header row.",
        ) from err
    table.columns = [c.strip() for c in table.columns]
    # Empty cells are "not given" (optional columns); surrounding whitespace is never meaningful.
    table = table.apply(lambda col: col.str.strip())
    return table.replace("", pd.NA)


def _to_numbers(
    table: pd.DataFrame, columns: tuple[str, ...], path: Path, id_column: str
) -> pd.DataFrame:
    for column in columns:
        if column not in table:
            continue
        numbers = pd.to_numeric(table[column], errors="coerce")
        bad = table[column].notna() & numbers.isna()
        if bad.any():
            row = int(bad.idxmax())
            raise InputError(
                path,
                f"row {row + 2} ({id_column}={table.at[row, id_column]!r}): {table.at[row, column]!r} is not a number.",
                f"write a number in column `{column}` or leave it empty.",
                field=column,
            )
        table[column] = numbers.astype(float)
    return table


def _validate(table: pd.DataFrame, schema: Path, path: Path, id_column: str) -> pd.DataFrame:
    """Row-wise JSON-schema validation through snakemake, with a message naming row and column."""
    from jsonschema.exceptions import ValidationError
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    missing = [c for c in _required_columns(schema) if c not in table.columns]
    if missing:
        raise InputError(
            path,
            f"required column(s) {', '.join(missing)} missing (found: {', '.join(table.columns)}).",
            f"add the column(s); see {schema.name} for what each means.",
        )
    try:
        validate(table, str(schema.resolve()))
    except WorkflowError as err:
        # snakemake formats its arguments to text; the schema error is the exception context.
        cause = err.__context__ if isinstance(err.__context__, ValidationError) else None
        match = re.search(r"row (\d+)", str(err))
        if cause is None or match is None:
            raise
        row = int(match.group(1))
        column = cause.path[0] if cause.path else None
        value = table.at[row, column] if column in table else None
        row_id = table.at[row, id_column] if id_column in table else "?"
        if column and cause.validator == "pattern":
            problem = f"{value!r} may only contain letters, digits, '_' and '-'"
            fix = "rename it (IDs name output files, so no spaces, slashes or dots)."
        elif column and cause.validator == "enum":
            problem = f"{value!r} is not one of {', '.join(map(str, cause.validator_value))}"
            fix = f"use one of the allowed values in column `{column}`."
        else:
            problem = cause.message
            fix = f"see {schema.name} for the allowed values."
        raise InputError(
            path, f"row {row + 2} ({id_column}={row_id!r}): {problem}.", fix, field=column
        ) from None
    return table


def _required_columns(schema: Path) -> list[str]:
    import yaml

    return list(yaml.safe_load(schema.read_text()).get("required", []))


def _check_unique(table: pd.DataFrame, path: Path, id_column: str) -> None:
    counts = table[id_column].value_counts()
    duplicated = counts[counts > 1]
    if len(duplicated):
        name = duplicated.index[0]
        rows = [str(i + 2) for i in table.index[table[id_column] == name]]
        raise InputError(
            path,
            f"{id_column} {name!r} appears {duplicated.iloc[0]} times (rows {', '.join(rows)}).",
            f"give every row its own {id_column}.",
            field=id_column,
        )


def _check_paths(
    table: pd.DataFrame, path: Path, id_column: str, workdir: Path, columns: tuple[str, ...] = ()
) -> None:
    for column in ("path", *[c for c in columns if c in table.columns]):
        for row, (row_id, file) in enumerate(zip(table[id_column], table[column], strict=True)):
            if column != "path" and (pd.isna(file) or not str(file).strip()):
                continue  # optional column left empty
            file_path = Path(file)
            if not file_path.is_absolute():
                parts = Path(*file_path.parts).parts
                if parts and parts[0] == RESULTS_DIR:
                    continue  # produced by a rule of this workflow (e.g. the demo)
                file_path = workdir / file_path
            if not file_path.exists():
                raise InputError(
                    path,
                    f"row {row + 2} ({id_column}={row_id!r}): file {file!r} does not exist"
                    f" (looked for {file_path}).",
                    "correct the path (relative paths are relative to the directory snakemake runs in) or remove the row.",
                    field=column,
                )


def load_videos(path: str | Path, schema: str | Path, workdir: str | Path = ".") -> pd.DataFrame:
    """Read and validate ``videos.tsv``; returns a table indexed by ``video_id``."""
    path, schema, workdir = Path(path), Path(schema), Path(workdir)
    table = _read_tsv(path, "videos")
    table = _to_numbers(table, VIDEO_NUMERIC, path, "video_id")
    table = _validate(table, schema, path, "video_id")
    _check_unique(table, path, "video_id")
    _check_paths(table, path, "video_id", workdir, VIDEO_FILES)
    return table.set_index("video_id", drop=False)


def parse_stimulus(
    text: str, known_videos: set[str] | None = None, where: str = "stimulus"
) -> list[StimulusEvent]:
    """Parse ``vid`` or ``vid@onset;vid@onset`` into events with onsets in seconds.

    Onsets must be non-negative and strictly increasing; every video must be
    known when ``known_videos`` is given. ``where`` prefixes error messages.
    """
    events: list[StimulusEvent] = []
    for item in (part.strip() for part in text.split(";")):
        if not item:
            continue
        video_id, _, onset_text = item.partition("@")
        video_id = video_id.strip()
        if not _ID_RE.match(video_id):
            raise ValueError(
                f"{where}: {video_id!r} is not a valid video_id (letters, digits, '_' and '-')"
            )
        try:
            onset = float(onset_text) if onset_text.strip() else 0.0
        except ValueError:
            raise ValueError(
                f"{where}: onset {onset_text!r} of {video_id!r} is not a number of seconds"
            ) from None
        if onset < 0:
            raise ValueError(f"{where}: onset of {video_id!r} is negative ({onset} s)")
        if events and onset <= events[-1].onset:
            raise ValueError(
                f"{where}: onsets must increase; {video_id!r}@{onset} comes after {events[-1].video_id!r}@{events[-1].onset}"
            )
        if known_videos is not None and video_id not in known_videos:
            raise ValueError(f"{where}: video {video_id!r} is not in videos.tsv")
        events.append(StimulusEvent(video_id, onset))
    if not events:
        raise ValueError(f"{where}: names no video")
    return events


def load_recordings(
    path: str | Path, schema: str | Path, videos: pd.DataFrame, workdir: str | Path = "."
) -> pd.DataFrame:
    """Read and validate ``recordings.tsv``; returns a table indexed by ``recording_id``.

    Adds a ``timeline`` column holding the parsed list of :class:`StimulusEvent`.
    """
    path, schema, workdir = Path(path), Path(schema), Path(workdir)
    table = _read_tsv(path, "recordings")
    table = _to_numbers(table, RECORDING_NUMERIC, path, "recording_id")
    table = _validate(table, schema, path, "recording_id")
    _check_unique(table, path, "recording_id")
    _check_paths(table, path, "recording_id", workdir)
    known = set(videos["video_id"])
    timelines, keys, nwb_tables, nwb_videos = [], [], [], []
    for row, (rec, text) in enumerate(zip(table["recording_id"], table["stimulus"], strict=True)):
        if text.startswith(NWB_STIMULUS):
            record = table.iloc[row].to_dict()
            name, shown, key = _nwb_timeline(path, row, record, videos, workdir)
            timelines.append(None)
            keys.append(key)
            nwb_tables.append(name)
            nwb_videos.append(shown)
            continue
        try:
            timelines.append(parse_stimulus(text, known, where=f"row {row + 2} ({rec!r})"))
        except ValueError as err:
            raise InputError(
                path,
                f"{err}.",
                "write `video_id` or `video_id@onset;video_id@onset` with increasing onsets in seconds, using ids from videos.tsv, or `nwb:<table>` for an NWB recording.",
                field="stimulus",
            ) from None
        keys.append(";".join(f"{e.video_id}@{e.onset:g}" for e in timelines[-1]))
        nwb_tables.append(None)
        nwb_videos.append(None)
    # `timeline` is None where the stimulus timeline is in an NWB file (`stimulus_table`):
    # ingest reads it into the responses file. `nwb_videos`: the videos that table shows,
    # None while the file does not exist yet. `stimulus_key`: equal keys = repeats.
    table["timeline"] = timelines
    table["stimulus_key"] = keys
    table["stimulus_table"] = nwb_tables
    table["nwb_videos"] = nwb_videos
    _check_one_modality(table, path)
    return table.set_index("recording_id", drop=False)


def _check_one_modality(table: pd.DataFrame, path: Path | str) -> None:
    for subject, rows in table.groupby("subject"):
        modalities = sorted(set(rows["modality"]))
        if len(modalities) > 1:
            raise InputError(
                path,
                f"subject {subject!r} has recordings of several modalities ({', '.join(modalities)}); a subject's runs are fit together.",
                f"give each modality its own subject id (e.g. {subject}-{modalities[0]}).",
                field="subject",
            )


def combine_recordings(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The rows of several loaded recordings sheets (e.g. recordings.tsv and the sheet the
    BIDS door derived, by path), checked together: unique ids, one modality per subject."""
    if len(tables) == 1:
        return next(iter(tables.values()))
    where = " + ".join(tables)
    table = pd.concat(list(tables.values()), ignore_index=True, sort=False)
    counts = table["recording_id"].value_counts()
    if (counts > 1).any():
        raise InputError(
            where,
            f"recording_id {counts.index[0]!r} appears in more than one sheet.",
            "give every run its own recording_id (leave BIDS runs out of recordings.tsv).",
            field="recording_id",
        )
    _check_one_modality(table, where)
    return table.set_index("recording_id", drop=False)


def _nwb_timeline(
    path: Path, row: int, record: dict, videos: pd.DataFrame, workdir: Path
) -> tuple[str, list[str] | None, str]:
    """A ``nwb:<table>`` stimulus: (table, videos it shows or None, stimulus key).

    The table is read with h5py when the file exists (fast, cached per file);
    a file a rule of this workflow makes (under ``results/``) is read by ingest.
    """
    from neurovid import nwb_table as nwb

    rec = record["recording_id"]
    name = nwb.stimulus_table(record["stimulus"]) or ""
    file = str(record["path"])
    where = f"row {row + 2} ({rec!r})"
    if not name:
        raise InputError(
            path,
            f"{where}: `nwb:` names no table.",
            "write `nwb:<name of the TimeIntervals table of presentations>`, e.g. nwb:presentations.",
            field="stimulus",
        )
    if not nwb.is_nwb(file) or record["modality"] not in ("spikes", "calcium"):
        raise InputError(
            path,
            f"{where}: the stimulus {record['stimulus']!r} is read from an NWB file, but the row is a {record['modality']} recording in {file!r}.",
            "use `nwb:<table>` only with a spikes or calcium recording whose `path` is an .nwb file.",
            field="stimulus",
        )
    file_path = Path(file) if Path(file).is_absolute() else workdir / file
    made_here = not Path(file).is_absolute() and Path(file).parts[:1] == (RESULTS_DIR,)
    if made_here or not file_path.is_file():
        # Made by the workflow itself (e.g. the demo): not read here even once it exists,
        # so align's inputs (every stimulus video) and the run's stimulus key (resolved
        # from the ingested events: neural.repeat_keys) stay the same from one invocation
        # to the next and nothing re-runs for it.
        return name, None, f"nwb:{rec}"
    column = record.get("nwb_video_column")
    column = column if isinstance(column, str) and column.strip() else nwb.DEFAULT_VIDEO_COLUMN
    video_paths = dict(zip(videos["video_id"], videos["path"], strict=True))
    rows = nwb.presentation_videos(file_path, name, video_paths, column.strip())
    # Repeats: the same videos at the same times relative to the first presentation.
    first = rows[0][1]
    key = "nwb:" + ";".join(f"{v}@{start - first:g}" for v, start, _ in rows)
    return name, list(dict.fromkeys(v for v, _, _ in rows)), key


def subject_runs(recordings: pd.DataFrame) -> dict[str, list[str]]:
    """Recording ids of each subject, in sheet order (the runs of leave-one-run-out CV)."""
    return {
        str(s): list(rows["recording_id"]) for s, rows in recordings.groupby("subject", sort=True)
    }
