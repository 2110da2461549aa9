"""Presentations tables of NWB files, read with h5py: the stimulus timeline before any job runs.

A recording whose ``stimulus`` is ``nwb:<table>`` has its timeline in a
``TimeIntervals`` table of its NWB file (``start_time``, ``stop_time`` and a
column naming the video). The workflow must know which videos' features the
``align`` job needs when it builds the DAG, for hundreds of files:
:func:`presentation_videos` reads just the table's columns with h5py (cached
per file; ~1 ms a file against ~100 ms for opening it with pynwb, plus pynwb's
~1 s import). :func:`check_presentations` is the one check of a table's rows,
also used by :mod:`neurovid.nwb` when ingest reads the table with pynwb.

Light on purpose (h5py and numpy only): :mod:`neurovid.sheets` imports it, and
with it every rule script that reads the sheets' types.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from neurovid.errors import InputError

NWB_SUFFIX = ".nwb"
STIMULUS_PREFIX = "nwb:"
DEFAULT_VIDEO_COLUMN = "video_id"
_SHEET = "recordings.tsv"


def is_nwb(path: str | os.PathLike) -> bool:
    """Whether a recording file is read through this door (``.nwb``)."""
    return str(path).lower().endswith(NWB_SUFFIX)


def stimulus_table(text: Any) -> str | None:
    """The table name of a ``nwb:<table>`` stimulus cell, else None."""
    if not isinstance(text, str) or not text.strip().startswith(STIMULUS_PREFIX):
        return None
    return text.strip()[len(STIMULUS_PREFIX) :].strip()


# --------------------------------------------------------------------- stimulus table


def _video_lookup(videos: Mapping[str, Any]) -> dict[str, str]:
    """Names a presentations table may use -> video_id: ids first, then unambiguous stems."""
    lookup: dict[str, str] = {}
    stems: dict[str, list[str]] = {}
    for video_id, path in videos.items():
        if path is not None and str(path) not in ("", "nan"):
            stems.setdefault(Path(str(path)).stem, []).append(str(video_id))
    for stem, ids in stems.items():
        if len(ids) == 1:
            lookup[stem] = ids[0]
    lookup.update({str(v): str(v) for v in videos})
    return lookup


def check_presentations(
    path: str | os.PathLike,
    table: str,
    column: str,
    starts: np.ndarray,
    stops: np.ndarray,
    values: Sequence[Any],
    videos: Mapping[str, Any],
) -> list[tuple[str, float, float]]:
    """A presentations table's rows as ``(video_id, start, stop)``, in time order.

    Args:
        path, table, column: named in errors.
        starts, stops: ``start_time`` / ``stop_time`` (s, NWB clock).
        values: the video column.
        videos: the videos sheet's ``video_id -> path``; a value is a video_id or
            the file name stem of one video's path.

    Raises:
        InputError: stop before start, a video the sheet does not have, no rows.
    """
    starts = np.asarray(starts, dtype=np.float64)
    stops = np.asarray(stops, dtype=np.float64)
    where = f"{table}"
    if len(starts) == 0:
        raise InputError(
            path,
            f"the TimeIntervals table {table!r} has no rows.",
            "name a table listing the presentations, or use `video_id@onset` in the `stimulus` column.",
            field=where,
        )
    bad = ~(stops >= starts)
    if bad.any():
        row = int(np.argmax(bad))
        raise InputError(
            path,
            f"row {row} of the TimeIntervals table {table!r} ends before it starts (start_time {starts[row]:g} s, stop_time {stops[row]:g} s).",
            "correct start_time / stop_time of that row in the NWB file (stop_time >= start_time).",
            field=f"{table}.stop_time",
        )
    lookup = _video_lookup(videos)
    ids = []
    for row, value in enumerate(values):
        text = value.decode() if isinstance(value, bytes) else str(value)
        if text not in lookup:
            raise InputError(
                path,
                f"row {row} of the TimeIntervals table {table!r} shows video {text!r} (column `{column}`), which is neither a video_id of the videos sheet nor the file name stem of one of its paths.",
                f"add the video to videos.tsv (video_id {text!r}, or a path whose file name is {text}.<ext>), or name the right column with `nwb_video_column` in {_SHEET}.",
                field=f"{table}.{column}",
            )
        ids.append(lookup[text])
    order = np.argsort(starts, kind="stable")
    return [(ids[i], float(starts[i]), float(stops[i])) for i in order]


def _h5_tables(h5: h5py.File) -> Iterator[tuple[str, h5py.Group]]:
    """(path, group) of every TimeIntervals-like table in ``intervals`` and processing modules."""
    for top in ("intervals",):
        if top in h5:
            for name, group in h5[top].items():
                yield f"{top}/{name}", group
    if "processing" in h5:
        for module, mgroup in h5["processing"].items():
            for name, group in mgroup.items():
                if isinstance(group, h5py.Group) and "start_time" in group:
                    yield f"processing/{module}/{name}", group


@functools.cache
def _read_table_h5(
    path: str, table: str, column: str, _mtime_ns: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    with h5py.File(path, "r") as h5:
        found = {p: g for p, g in _h5_tables(h5) if p.split("/")[-1] == table or p == table}
        if len(found) != 1:
            have = sorted(p for p, _ in _h5_tables(h5))
            problem = (
                f"has no TimeIntervals table {table!r}"
                if not found
                else f"has several tables named {table!r} ({', '.join(sorted(found))})"
            )
            raise InputError(
                path,
                f"{problem}; its tables: {', '.join(have) or 'none'}.",
                f"write `nwb:<table>` with one of these in the `stimulus` column of {_SHEET} (a path such as `processing/behavior/{table}` picks one).",
                field="stimulus",
            )
        group = next(iter(found.values()))
        for name in ("start_time", "stop_time", column):
            if name not in group:
                raise InputError(
                    path,
                    f"the TimeIntervals table {table!r} has no column `{name}` (columns: {', '.join(sorted(k for k in group if not k.endswith('_index')))}).",
                    f"set `nwb_video_column` in {_SHEET} to the column naming the video."
                    if name == column
                    else "write the presentations with start_time and stop_time.",
                    field=f"{table}.{name}",
                )
        if f"{column}_index" in group:
            raise InputError(
                path,
                f"column `{column}` of the TimeIntervals table {table!r} is ragged (several values per row).",
                f"name a column with one video per row in `nwb_video_column` of {_SHEET}.",
                field=f"{table}.{column}",
            )
        dataset = group[column]
        if h5py.check_string_dtype(dataset.dtype) is not None:
            values = list(dataset.asstr()[...])
        else:
            values = [number_text(v) for v in dataset[...]]
        return group["start_time"][...], group["stop_time"][...], values


def number_text(value: Any) -> str:
    """A numeric video column value as text (``3.0`` -> ``"3"``)."""
    value = np.asarray(value).item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def presentation_videos(
    path: str | os.PathLike,
    table: str,
    videos: Mapping[str, Any],
    column: str = DEFAULT_VIDEO_COLUMN,
) -> list[tuple[str, float, float]]:
    """``(video_id, start, stop)`` of a presentations table, read with h5py (fast, cached).

    For planning the workflow before any job runs (pynwb is slower to open a
    file than h5py by an order of magnitude; the cache keeps one read per file
    and modification time per process). Same checks as :func:`check_presentations`.
    """
    path = str(path)
    try:
        starts, stops, values = _read_table_h5(path, table, column, os.stat(path).st_mtime_ns)
    except OSError as err:
        raise InputError(
            path,
            f"cannot be read as an NWB (HDF5) file ({err}).",
            f"give an NWB 2 HDF5 file in the `path` column of {_SHEET}.",
        ) from err
    return check_presentations(path, table, column, starts, stops, values, videos)
