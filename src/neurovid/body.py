"""The body as a feature space: what the animal does while it watches, on the recording's clock.

Mouse visual cortex answers to running, whisking and face movements as much as to
the picture (Stringer et al. 2019), so an encoding model can name *body* feature
spaces beside the stimulus ones (``features: [motion_energy, behavior_channels]``);
banded ridge and variance partitioning (:mod:`neurovid.partition`) then say how
much each explains. The body spaces (:data:`BODY_SPACES`, a fixed set):

``kinematics``
    Speed, acceleration (magnitude and tangential) and position (x, y in cm) of
    the behavior video's tracked animal (``results/kinematics/{video}.csv``, rule
    ``kinematics``) as a features file ``results/features/kinematics/{video}.h5``
    on the behavior video's clock (:func:`kinematics_features`; times = frame
    centres).
``motion_svd``
    Facemap's motion SVD of the behavior video (rule ``motion_svd``).
``behavior_channels``
    The recording's own behavior channels (running speed, pupil, ...): the NWB
    series of the sheet's ``nwb_behavior`` (ingested into the responses file) or
    the sheet's ``behavior`` table (:func:`table_channels`), as
    ``results/features/behavior_channels/{recording}.h5`` on the recording's
    samples (:func:`behavior_channels`).

Clocks. The recordings sheet relates the behavior clock to the recording's:
``behavior_video`` (a videos-sheet video of kind ``behavior``, filmed during the
recording) and ``behavior_offset_s``, the recording-clock time of the behavior
video's first frame (the start of its display interval; negative when filming
started before the recording). A scientist must say it: a behavior video without
an offset is an error (:func:`check_behavior_columns`). The video spaces are then
aligned by the one alignment function, :func:`neurovid.align.timeline_features`,
as a timeline with one event, the behavior video at onset ``behavior_offset_s``
(:func:`body_timeline`), with ``require_cover``: the video must span every
response sample (a stimulus timeline's zeros where no video plays would claim
the animal sat still). ``behavior_channels`` go through the same function with one
event at onset 0 (they are on the recording's samples already: the result is the
channels themselves).

The ``behavior`` table (TSV, or CSV by its ``.csv`` ending) has one time column
and one column per channel. ``time``: seconds on the recording's clock (0 = start
of the first sample's window, as stimulus onsets). ``behavior_time``: seconds on
the behavior clock, whose 0 is the behavior video's first frame (the camera and
the treadmill logged by one rig); the row's ``behavior_offset_s`` moves it to the
recording's clock, and without it the table cannot be placed (an error naming
the table, the field and the fix). Each sample gets the mean of the values in its
window (:func:`neurovid.nwb.window_means`, as the NWB door does).

Gaps (documented fill, :func:`fill_gaps`): samples without a value (NaN: lost
tracking, a series that starts after the recording or stops before it) are
linearly interpolated in time between the nearest valid samples and hold the
first / last valid value at the ends; the count filled per column is stored in
the features file's ``filled`` attr and logged. A column with no valid value at
all is an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neurovid.errors import InputError
from neurovid.io import FeatureSet, PathLike, ResponseSet

#: Feature spaces of the body (the others are properties of the stimulus video).
BODY_SPACES = ("kinematics", "motion_svd", "behavior_channels")
#: Body spaces computed per behavior video, aligned at the sheet's `behavior_offset_s`.
VIDEO_SPACES = ("kinematics", "motion_svd")
#: The body space of the recording's own behavior channels.
CHANNELS = "behavior_channels"
#: Columns of results/kinematics/{video}.csv that make the `kinematics` space.
KINEMATICS_COLUMNS = (
    "speed_cm_per_s",
    "acceleration_cm_per_s2",
    "tangential_acceleration_cm_per_s2",
    "x_cm",
    "y_cm",
)
#: Time columns of a `behavior` table: on the recording's clock, or on the behavior clock.
RECORDING_TIME = "time"
BEHAVIOR_TIME = "behavior_time"
# Recordings-sheet columns.
VIDEO_COLUMN = "behavior_video"
OFFSET_COLUMN = "behavior_offset_s"
TABLE_COLUMN = "behavior"
NWB_COLUMN = "nwb_behavior"
# Files a rule of this workflow makes (as neurovid.sheets.RESULTS_DIR; not imported from
# there: the rules' scripts import this module, and neurovid.sheets needs the schema tools).
RESULTS_DIR = "results"


def is_body_space(space: str) -> bool:
    """Whether a feature space is a body space (aligned from the recording's behavior)."""
    return space in BODY_SPACES


def _cell(row: Mapping[str, Any], column: str) -> Any:
    """A sheet cell, or None when the column is absent or the cell empty."""
    value = row.get(column)
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, str) and not value.strip():
        return None
    return value


# ---------------------------------------------------------------- the recordings sheet


def check_behavior_columns(
    table: pd.DataFrame, videos: pd.DataFrame, sheet: PathLike, workdir: PathLike = "."
) -> pd.DataFrame:
    """Check a loaded recordings sheet's behavior columns; returns it with
    ``behavior_offset_s`` as numbers.

    ``behavior_video`` must be a videos-sheet video of kind ``behavior`` and comes
    with ``behavior_offset_s``; a ``behavior`` table must exist (unless a rule of the
    workflow makes it, under ``results/``); a row gives its channels in one place
    (``nwb_behavior`` or ``behavior``).
    """
    table = table.copy()
    if OFFSET_COLUMN in table:
        numbers = pd.to_numeric(table[OFFSET_COLUMN], errors="coerce")
        bad = table[OFFSET_COLUMN].notna() & numbers.isna()
        if bad.any():
            rec = bad.idxmax()
            raise InputError(
                sheet,
                f"row {rec!r}: {table.at[rec, OFFSET_COLUMN]!r} is not a number of seconds.",
                "write the recording-clock time of the behavior video's first frame in seconds (negative when filming started first), or leave it empty.",
                field=OFFSET_COLUMN,
            )
        table[OFFSET_COLUMN] = numbers.astype(float)
    for rec, row in table.to_dict("index").items():
        video = _cell(row, VIDEO_COLUMN)
        if video is not None:
            if video not in videos.index:
                raise InputError(
                    sheet,
                    f"row {rec!r}: behavior_video {video!r} is not a video_id of the videos sheet.",
                    "name the behavior video filmed during this recording by its video_id in videos.tsv (kind behavior), or leave the cell empty.",
                    field=VIDEO_COLUMN,
                )
            kind = videos.at[video, "kind"]
            if kind != "behavior":
                raise InputError(
                    sheet,
                    f"row {rec!r}: behavior_video {video!r} is a {kind} video in the videos sheet, not a behavior video.",
                    f"name a video of kind behavior (the camera filming the animal), or set kind behavior for {video!r} in videos.tsv.",
                    field=VIDEO_COLUMN,
                )
            if _cell(row, OFFSET_COLUMN) is None:
                raise InputError(
                    sheet,
                    f"row {rec!r}: behavior_video {video!r} is given without behavior_offset_s, so its frames cannot be placed on the recording's clock.",
                    "write in behavior_offset_s the recording-clock time (s) of the behavior video's first frame, e.g. -2.5 when filming started 2.5 s before the first sample.",
                    field=OFFSET_COLUMN,
                )
        file = _cell(row, TABLE_COLUMN)
        if file is not None:
            if _cell(row, NWB_COLUMN) is not None:
                raise InputError(
                    sheet,
                    f"row {rec!r}: behavior channels are given twice, as the NWB series {row[NWB_COLUMN]!r} and the table {file!r}.",
                    "keep one of the columns nwb_behavior and behavior for this row.",
                    field=TABLE_COLUMN,
                )
            path = Path(str(file))
            made_here = not path.is_absolute() and path.parts[:1] == (RESULTS_DIR,)
            if (
                not made_here
                and not (path if path.is_absolute() else Path(workdir) / path).is_file()
            ):
                raise InputError(
                    sheet,
                    f"row {rec!r}: behavior table {str(file)!r} does not exist.",
                    "correct the path (relative paths are relative to the directory snakemake runs in) or leave the cell empty.",
                    field=TABLE_COLUMN,
                )
    return table


def body_timeline(
    space: str, recording: str, row: Mapping[str, Any], sheet: PathLike
) -> list[list[Any]]:
    """The one-event timeline ``[[unit, onset]]`` a body space of a recording is aligned with.

    ``unit`` names the features file (``results/features/{space}/{unit}.h5``): the
    behavior video for the video spaces (onset ``behavior_offset_s``), the recording
    itself for ``behavior_channels`` (onset 0). Raises an InputError naming the
    recording and the missing column when the row has no such behavior.
    """
    if space in VIDEO_SPACES:
        video = _cell(row, VIDEO_COLUMN)
        if video is None:
            raise InputError(
                sheet,
                f"recording {recording!r} has no behavior_video, but an encoding model fit on it uses the body feature space {space!r}.",
                f"fill behavior_video (a videos.tsv video_id of kind behavior) and behavior_offset_s for {recording!r}, or leave {space} out of the `features` of the models fit on its subject.",
                field=VIDEO_COLUMN,
            )
        return [[str(video), float(row[OFFSET_COLUMN])]]
    if space == CHANNELS:
        if _cell(row, NWB_COLUMN) is None and _cell(row, TABLE_COLUMN) is None:
            raise InputError(
                sheet,
                f"recording {recording!r} has no behavior channels (columns nwb_behavior and behavior are empty), but an encoding model fit on it uses the body feature space {space!r}.",
                f"name its NWB behavior series in nwb_behavior or a table of channels in behavior for {recording!r}, or leave {space} out of the `features` of the models fit on its subject.",
                field=TABLE_COLUMN,
            )
        return [[recording, 0.0]]
    raise ValueError(f"{space!r} is not a body feature space ({', '.join(BODY_SPACES)})")


def gives_space(row: Mapping[str, Any], space: str) -> bool:
    """Whether a recordings-sheet row gives the behavior a body space is made from."""
    if space in VIDEO_SPACES:
        return _cell(row, VIDEO_COLUMN) is not None
    return _cell(row, NWB_COLUMN) is not None or _cell(row, TABLE_COLUMN) is not None


def behavior_columns(spaces: Sequence[str]) -> str:
    """The recordings-sheet columns that give the body spaces among ``spaces``, in words."""
    columns = []
    if any(space in VIDEO_SPACES for space in spaces):
        columns.append(f"{VIDEO_COLUMN} + {OFFSET_COLUMN}")
    if CHANNELS in spaces:
        columns.append(f"{NWB_COLUMN} or {TABLE_COLUMN}")
    return "; ".join(columns)


def subjects_with_body(
    spaces: Sequence[str],
    subject_runs: Mapping[str, Sequence[str]],
    rows: Mapping[str, Mapping[str, Any]],
) -> tuple[list[str], dict[str, list[str]]]:
    """(subjects a model can be fit on, {subject left out: its runs lacking the behavior}).

    A model with body spaces in ``spaces`` is fit on the subjects whose every run gives
    each of them (a lab films some animals or sessions, not all); the others are left
    out, with the runs that lack it, for the caller to name (asked for explicitly, such
    a fit stops with :func:`body_timeline`'s error).
    """
    body = [space for space in spaces if is_body_space(space)]
    fit: list[str] = []
    left_out: dict[str, list[str]] = {}
    for subject, runs in subject_runs.items():
        lacking = [run for run in runs if not all(gives_space(rows[run], s) for s in body)]
        if lacking:
            left_out[subject] = lacking
        else:
            fit.append(subject)
    return fit, left_out


def timeline_field(space: str) -> str:
    """The sheet column the events of a space's timeline come from (align's error messages)."""
    return OFFSET_COLUMN if is_body_space(space) else "stimulus"


def body_source(space: str, recording: str, sheet: PathLike) -> str:
    """Where a body space's timeline comes from, as align's error messages name it."""
    if space == CHANNELS:
        return f"the behavior channels of {recording!r} (already on its clock)"
    return f"the behavior_offset_s column of {sheet} (row {recording})"


# ---------------------------------------------------------------- feature files


def fill_gaps(
    values: np.ndarray, times: np.ndarray, names: Sequence[str], where: PathLike, field: str
) -> tuple[np.ndarray, dict[str, int]]:
    """Fill NaN rows of each column: linear in time between valid rows, the nearest valid
    value at the ends. Returns the filled float64 array and the count filled per column.

    Raises an InputError naming ``where`` and ``field`` when a column has no valid value.
    """
    values = np.array(values, dtype=np.float64)
    filled: dict[str, int] = {}
    for c, name in enumerate(names):
        ok = np.isfinite(values[:, c])
        if not ok.any():
            raise InputError(
                where,
                f"channel {name!r} has no valid value (all {len(ok)} samples are missing).",
                "check that the channel was recorded during this recording (and its clock), or leave it out.",
                field=field,
            )
        filled[str(name)] = int((~ok).sum())
        if not ok.all():
            values[~ok, c] = np.interp(times[~ok], times[ok], values[ok, c])
    return values, filled


def kinematics_features(table: pd.DataFrame, fps: float, where: PathLike) -> FeatureSet:
    """The ``kinematics`` space of one behavior video from its kinematics table.

    ``table``: results/kinematics/{video}.csv (one row per frame, ``time_s`` = frame
    start on the video's clock); rows become frame centres (``time_s + 0.5 / fps``);
    duration = frames / fps. Gaps are filled (:func:`fill_gaps`).
    """
    missing = [c for c in ("time_s", *KINEMATICS_COLUMNS) if c not in table.columns]
    if missing:
        raise InputError(
            where,
            f"column(s) {', '.join(missing)} missing (found: {', '.join(map(str, table.columns))}).",
            "re-run the kinematics rule for this video (results/kinematics/ is made by neurovid).",
        )
    if len(table) < 2:
        raise InputError(where, f"has {len(table)} frame(s); a feature space needs two or more.")
    times = table["time_s"].to_numpy(dtype=np.float64) + 0.5 / fps
    values, filled = fill_gaps(
        table[list(KINEMATICS_COLUMNS)].to_numpy(dtype=np.float64),
        times,
        KINEMATICS_COLUMNS,
        where,
        "kinematics",
    )
    attrs = _space_attrs("kinematics", list(KINEMATICS_COLUMNS), filled, fps, len(table))
    return FeatureSet(values.astype(np.float32), times, attrs)


def _space_attrs(
    extractor: str, columns: list[str], filled: dict[str, int], rate: float, n_rows: int
) -> dict[str, Any]:
    """The features-file attrs of a body space computed here (no model weights)."""
    return {
        "extractor": extractor,
        "columns": columns,
        "filled": filled,
        "fps": float(rate),
        "duration": n_rows / float(rate),
        "model_id": "",
        "revision": "",
        "layer": "",
        "dtype": "float32",
    }


def table_channels(
    path: PathLike,
    sample_times: np.ndarray,
    rate: float,
    offset: float | None,
    *,
    recording: str,
    sheet: PathLike,
) -> tuple[np.ndarray, list[str]]:
    """A ``behavior`` table's channels on the response samples: ([T, C] window means, names).

    The table's ``time`` is on the recording's clock; its ``behavior_time`` on the
    behavior clock, moved by ``offset`` (the sheet's ``behavior_offset_s``; required).
    Samples outside the table's time span are NaN (filled later, :func:`fill_gaps`).
    """
    from neurovid.nwb import window_means

    sep = "," if str(path).lower().endswith(".csv") else "\t"
    try:
        frame = pd.read_csv(path, sep=sep)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise InputError(
            path, f"cannot be read as a table ({err}).", "save it as TSV with a header row."
        ) from err
    frame.columns = [str(c).strip() for c in frame.columns]
    clocks = [c for c in (RECORDING_TIME, BEHAVIOR_TIME) if c in frame.columns]
    if len(clocks) != 1:
        raise InputError(
            path,
            f"has {'both time columns' if clocks else 'no time column'} (columns: {', '.join(frame.columns)}).",
            f"give exactly one of `{RECORDING_TIME}` (s on the recording's clock, 0 = start of its first sample) and `{BEHAVIOR_TIME}` (s on the behavior clock, 0 = the behavior video's first frame, with behavior_offset_s in the recordings sheet).",
            field=RECORDING_TIME,
        )
    times = pd.to_numeric(frame[clocks[0]], errors="coerce").to_numpy(dtype=np.float64)
    if clocks[0] == BEHAVIOR_TIME:
        if offset is None or not np.isfinite(offset):
            raise InputError(
                path,
                f"its times ({BEHAVIOR_TIME}) are on the behavior clock, but recording {recording!r} has no behavior_offset_s in {sheet}, so they cannot be placed on the recording's clock.",
                f"write in behavior_offset_s of {recording!r} the recording-clock time (s) of the behavior clock's 0 (the behavior video's first frame), or convert the table's times to the recording's clock and name the column `{RECORDING_TIME}`.",
                field=OFFSET_COLUMN,
            )
        times = times + float(offset)
    names = [c for c in frame.columns if c != clocks[0]]
    if not names:
        raise InputError(
            path, "has no channel columns besides its time.", "add one column per channel."
        )
    if not np.isfinite(times).all() or (len(times) > 1 and not np.all(np.diff(times) > 0)):
        raise InputError(
            path,
            f"`{clocks[0]}` must be numbers that increase row by row.",
            "sort the rows by time and fill every time cell.",
            field=clocks[0],
        )
    values = frame[names].apply(pd.to_numeric, errors="coerce")
    bad = frame[names].notna() & values.isna()
    if bad.any().any():
        column = bad.any().idxmax()
        raise InputError(
            path,
            f"column {column!r} holds values that are not numbers (e.g. {frame.loc[bad[column], column].iloc[0]!r}).",
            "write numbers only (leave a cell empty where the channel is missing).",
            field=str(column),
        )
    means = window_means(times, values.to_numpy(dtype=np.float64), sample_times, rate)
    return means, names


def behavior_channels(
    responses: ResponseSet,
    responses_path: PathLike,
    table: PathLike | None = None,
    offset: float | None = None,
    *,
    recording: str,
    sheet: PathLike,
) -> FeatureSet:
    """The ``behavior_channels`` space of a recording: its NWB channels (the responses
    file's ``behavior``) or its ``behavior`` table, gaps filled, on the response samples.

    ``times`` are the samples' centres from the start of the first sample's window, so
    aligning with one event at onset 0 gives the channels back unchanged.
    """
    rate = responses.sampling_rate
    if table is not None:
        values, names = table_channels(
            table, responses.times, rate, offset, recording=recording, sheet=sheet
        )
        where, field = table, TABLE_COLUMN
    elif responses.behavior is not None and responses.behavior.shape[1] > 0:
        values, names = responses.behavior, [str(n) for n in responses.behavior_names]
        where, field = responses_path, NWB_COLUMN
    else:
        raise InputError(
            responses_path,
            f"recording {recording!r} has no behavior channels (no `behavior` in its responses file, no behavior table).",
            f"name its NWB behavior series in nwb_behavior, or a channels table in behavior, in {sheet}.",
            field=NWB_COLUMN,
        )
    start = responses.times[0] - 0.5 / rate
    times = np.asarray(responses.times, dtype=np.float64) - start
    filled_values, filled = fill_gaps(values, times, names, where, field)
    attrs = {"recording": recording, **_space_attrs(CHANNELS, names, filled, rate, len(times))}
    return FeatureSet(filled_values.astype(np.float32), times, attrs)
