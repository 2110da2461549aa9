"""NWB front door: spikes, calcium, behavior and the stimulus timeline from NWB files (DANDI).

A recordings-sheet row whose ``path`` is an ``.nwb`` file (modality ``spikes`` or
``calcium``) is read here into the same :class:`neurovid.neural.Recording` as the
table route, so nothing downstream forks. Optional sheet columns say what to read:

``nwb_series`` (calcium)
    The ``RoiResponseSeries`` to read, by name or by the tail of its path in the
    file (``RoiResponseSeries``, ``DfOverF/RoiResponseSeries``,
    ``processing/ophys/Fluorescence/RoiResponseSeries``); searched in the
    processing modules and ``acquisition``. May be left empty when the file has
    exactly one. One column per ROI, named by the ROI's id in its
    PlaneSegmentation.
``nwb_behavior``
    Comma list of behavior time series (a ``TimeSeries`` or a container such as
    ``BehavioralTimeSeries`` / ``PupilTracking``, every series inside it), found
    the same way; they become the responses file's ``behavior`` [T, C]
    channels (``behavior_names``): the mean of the values whose timestamps lie
    in each sample's window, linear interpolation at the window centre where
    the series is sparser than the samples, NaN outside the series' time span.
``nwb_video_column``
    The column of the presentations table naming the video (default
    ``video_id``); values are videos-sheet ``video_id`` s or the file name stems
    of the sheet's ``path`` s.

Spikes come from the ``Units`` table (``spike_times``, one column per unit id,
numeric order), binned at the row's ``sampling_rate`` (required) by
:func:`neurovid.neural.bin_spikes`, the binning of the spike-times tables.

Clock: NWB times are seconds on the file's clock. Time 0 of the recording is
its first sample: the first frame timestamp (or ``starting_time``) of the
calcium series; for spikes the earliest start of the Units' ``obs_intervals``
when the table has them, else the file clock's 0 (``timestamps_reference_time``).
A spikes recording ends at the latest ``obs_intervals`` stop, else at the end
of the bin holding the last spike. Response sample ``i`` covers
``[i / rate, (i + 1) / rate)`` after time 0, as in every neurovid recording.

Stimulus timeline: ``stimulus`` = ``nwb:<table>`` names a ``TimeIntervals``
table (in ``intervals`` or a processing module) with ``start_time``,
``stop_time`` and the video column; onsets = ``start_time`` - time 0. Ingest
stores them as the responses file's ``stimulus_events`` attr, which ``align``
uses. To plan the DAG, :func:`presentation_videos` reads just the table's
columns with h5py (cached per file), without pynwb.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neurovid.errors import InputError
from neurovid.neural import RATE_TOLERANCE, Recording, _unit_order, bin_spikes, sheet_number
from neurovid.nwb_table import (
    DEFAULT_VIDEO_COLUMN,
    STIMULUS_PREFIX,
    check_presentations,
    is_nwb,
    number_text,
    presentation_videos,
    stimulus_table,
)

__all__ = [
    "DEFAULT_VIDEO_COLUMN",
    "STIMULUS_PREFIX",
    "check_presentations",
    "ingest_nwb",
    "is_nwb",
    "presentation_videos",
    "stimulus_table",
    "window_means",
]

#: seconds a presentation may reach outside the recording (as neurovid.align's slack; not
#: imported from there, so that editing align does not re-run every ingest job)
TIME_TOLERANCE = 1e-3
_SHEET = "recordings.tsv"


def _names(value: Any) -> list[str]:
    """A comma list from a sheet cell (None / NaN / empty -> [])."""
    if isinstance(value, str):
        value = value.split(",")
    elif not isinstance(value, list | tuple):
        return []  # None, NaN, pandas' NA: an empty cell
    return [str(v).strip() for v in value if str(v).strip()]


def _cell(value: Any) -> str | None:
    names = _names(value)
    return ",".join(names) if names else None


# --------------------------------------------------------------------- finding objects


def _children(obj: Any) -> dict[str, Any]:
    """Named children of a container interface (Fluorescence, BehavioralTimeSeries, ...)."""
    for attr in ("roi_response_series", "time_series", "spatial_series", "data_interfaces"):
        found = getattr(obj, attr, None)
        if isinstance(found, Mapping):
            return dict(found)
    return {}


def _objects(nwbfile: Any) -> dict[str, Any]:
    """Every data object of the file by path: acquisition and processing modules, one level in."""
    found: dict[str, Any] = {}
    places = [("acquisition", nwbfile.acquisition)]
    places += [(f"processing/{m}", mod.data_interfaces) for m, mod in nwbfile.processing.items()]
    for prefix, objects in places:
        for name, obj in objects.items():
            found[f"{prefix}/{name}"] = obj
            for child_name, child in _children(obj).items():
                found[f"{prefix}/{name}/{child_name}"] = child
    return found


def _find(
    path: str | os.PathLike,
    nwbfile: Any,
    spec: str,
    kinds: tuple[type, ...],
    what: str,
    column: str,
) -> tuple[str, Any]:
    """The one object of a type whose path ends with ``spec`` (path components)."""
    objects = {p: o for p, o in _objects(nwbfile).items() if isinstance(o, kinds)}
    want = [c for c in spec.strip("/").split("/") if c]
    matches = [p for p in objects if p.split("/")[-len(want) :] == want]
    if len(matches) == 1:
        return matches[0], objects[matches[0]]
    have = ", ".join(sorted(objects)) or "none"
    if matches:
        raise InputError(
            path,
            f"several {what} match {spec!r}: {', '.join(sorted(matches))}.",
            f"write a longer path (one of these) in the `{column}` column of {_SHEET}.",
            field=column,
        )
    raise InputError(
        path,
        f"has no {what} named {spec!r}; the file's {what}: {have}.",
        f"write one of these (its name, or its path) in the `{column}` column of {_SHEET}.",
        field=column,
    )


def _open(path: Path) -> tuple[Any, Any]:
    from pynwb import NWBHDF5IO

    if not path.is_file():
        raise InputError(path, "the recording file does not exist.", f"correct `path` in {_SHEET}.")
    try:
        io = NWBHDF5IO(str(path), "r")
        return io, io.read()
    except Exception as err:  # h5py / hdmf raise several types for foreign files
        raise InputError(
            path,
            f"cannot be read as an NWB file ({type(err).__name__}: {err}).",
            f"give an NWB 2 file (HDF5) in the `path` column of {_SHEET}.",
        ) from err


# --------------------------------------------------------------------- reading


def _even_rate(path: Path, times: np.ndarray, where: str) -> float:
    """Sampling rate of evenly spaced timestamps (1% tolerance, as the table route)."""
    if len(times) < 2:
        raise InputError(
            path, f"{where} has {len(times)} samples; at least 2 are needed.", field=where
        )
    steps = np.diff(times)
    period = float(np.median(steps))
    if not period > 0 or np.any(steps <= 0):
        raise InputError(
            path,
            f"the timestamps of {where} do not increase.",
            "fix the series' timestamps.",
            field=where,
        )
    if np.max(np.abs(steps - period)) > RATE_TOLERANCE * period:
        raise InputError(
            path,
            f"the timestamps of {where} are unevenly spaced: steps {steps.min():.6g}..{steps.max():.6g} s (median {period:.6g} s).",
            "resample the series to a constant rate (or fill dropped frames) in the NWB file before ingest.",
            field=where,
        )
    return 1.0 / period


def _calcium(path: Path, nwbfile: Any, series: str | None, rate: float | None) -> tuple[Any, ...]:
    from pynwb.ophys import RoiResponseSeries

    if series is None:
        every = sorted(p for p, o in _objects(nwbfile).items() if isinstance(o, RoiResponseSeries))
        if len(every) != 1:
            raise InputError(
                path,
                f"no `nwb_series` is given and the file has {len(every)} RoiResponseSeries ({', '.join(every) or 'none'}).",
                f"name the series to read in the `nwb_series` column of {_SHEET}.",
                field="nwb_series",
            )
        series = every[0]
    where, ts = _find(
        path, nwbfile, series, (RoiResponseSeries,), "RoiResponseSeries", "nwb_series"
    )
    data = np.asarray(ts.data[:], dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    times = np.asarray(ts.get_timestamps(), dtype=np.float64)
    file_rate = float(ts.rate) if ts.rate is not None else _even_rate(path, times, where)
    if ts.rate is None and len(times) != len(data):
        raise InputError(
            path,
            f"{where} has {len(data)} samples but {len(times)} timestamps.",
            "fix the series in the NWB file.",
            field=where,
        )
    if rate is not None and abs(file_rate - rate) > RATE_TOLERANCE * rate:
        raise InputError(
            path,
            f"{where} is sampled at {file_rate:.6g} Hz but the sample sheet says sampling_rate={rate:g} Hz.",
            f"correct or clear `sampling_rate` in {_SHEET}.",
            field="sampling_rate",
        )
    bad = ~np.isfinite(data)
    if bad.any():
        j = int(np.argmax(bad.any(axis=0)))
        raise InputError(
            path,
            f"{where} is NaN or infinite in {int(bad[:, j].sum())} samples of ROI column {j}.",
            "fill the gaps (e.g. interpolate) or remove the ROI; encoding models need a value at every sample.",
            field=where,
        )
    try:
        roi_ids = np.asarray(ts.rois.table.id[:])[np.asarray(ts.rois.data[:], dtype=np.int64)]
        names = [str(i) for i in roi_ids]
    except (AttributeError, IndexError, TypeError):
        names = [str(j) for j in range(data.shape[1])]
    t0 = float(times[0])
    recording = Recording(
        responses=data.astype(np.float32),
        times=(np.arange(len(data)) + 0.5) / file_rate,
        target_names=np.array(names),
        sampling_rate=file_rate,
        modality="calcium",
        info={"nwb_series": where, "times_from": "rate" if ts.rate is not None else "timestamps"},
    )
    return recording, t0


def _spikes(path: Path, nwbfile: Any, rate: float | None) -> tuple[Any, ...]:
    if rate is None:
        raise InputError(
            path,
            "is a spikes recording (NWB Units spike_times) but no sampling rate is given to bin it.",
            f"set `sampling_rate` (Hz, the bin rate) for this recording in {_SHEET}.",
            field="sampling_rate",
        )
    units = nwbfile.units
    if units is None or len(units) == 0 or "spike_times" not in units.colnames:
        raise InputError(
            path,
            "has no Units table with spike_times.",
            f"give an NWB file with sorted units, or set the modality in {_SHEET}.",
            field="units",
        )
    spikes = np.asarray(units.spike_times.data[:], dtype=np.float64)
    ends = np.asarray(units.spike_times_index.data[:])
    counts = np.diff(np.concatenate([[0], ends]).astype(np.int64))
    ids = [str(i) for i in units.id[:]]
    owners = np.repeat(np.array(ids), counts)
    if "obs_intervals" in units.colnames:
        obs = np.asarray(units.obs_intervals.data[:], dtype=np.float64).reshape(-1, 2)
        t0, end = float(obs[:, 0].min()), float(obs[:, 1].max())
        clock = "obs_intervals"
    else:
        t0, end, clock = 0.0, None, "file clock 0"
    shifted = spikes - t0
    if len(shifted) and shifted.min() < 0:
        raise InputError(
            path,
            f"a spike at {spikes.min():g} s lies before the recording's start ({t0:g} s, from {clock}).",
            "check the Units' spike_times and obs_intervals.",
            field="units.spike_times",
        )
    if not len(spikes):
        raise InputError(path, "the Units table has no spikes.", "check the export.", field="units")
    recording = bin_spikes(
        path,
        shifted,
        owners,
        rate,
        None if end is None else end - t0,
        names=_unit_order(ids),
        field="units.spike_times",
    )
    recording.info.update(layout="nwb_units", t0_from=clock)
    return recording, t0


def _behavior(
    path: Path, nwbfile: Any, specs: list[str], t0: float, rec_times: np.ndarray, rate: float
) -> tuple[np.ndarray, list[str]]:
    from pynwb.base import TimeSeries

    channels, names = [], []
    for spec in specs:
        try:
            where, obj = _find(path, nwbfile, spec, (TimeSeries,), "TimeSeries", "nwb_behavior")
            series = {obj.name: obj}
        except InputError:
            containers = {
                p: o
                for p, o in _objects(nwbfile).items()
                if not isinstance(o, TimeSeries)
                and any(isinstance(c, TimeSeries) for c in _children(o).values())
            }
            want = [c for c in spec.strip("/").split("/") if c]
            hits = [p for p in containers if p.split("/")[-len(want) :] == want]
            if len(hits) != 1:
                every = sorted(p for p, o in _objects(nwbfile).items() if isinstance(o, TimeSeries))
                raise InputError(
                    path,
                    f"has no behavior TimeSeries or container of them named {spec!r}; its TimeSeries: {', '.join(every) or 'none'}.",
                    f"write names or paths of these, comma separated, in the `nwb_behavior` column of {_SHEET}.",
                    field="nwb_behavior",
                ) from None
            series = {
                n: c for n, c in _children(containers[hits[0]]).items() if isinstance(c, TimeSeries)
            }
        for name, ts in series.items():
            values = np.asarray(ts.data[:], dtype=np.float64)
            values = values[:, None] if values.ndim == 1 else values.reshape(len(values), -1)
            times = np.asarray(ts.get_timestamps(), dtype=np.float64) - t0
            channels.append(window_means(times, values, rec_times, rate))
            names += (
                [name] if values.shape[1] == 1 else [f"{name}_{k}" for k in range(values.shape[1])]
            )
    return np.concatenate(channels, axis=1).astype(np.float32), names


def window_means(
    times: np.ndarray, values: np.ndarray, sample_times: np.ndarray, rate: float
) -> np.ndarray:
    """A series ``values`` [n, C] at ``times`` on samples ``sample_times`` (centres, ``rate`` Hz).

    Sample ``i`` gets the mean of the values whose times lie in its window
    ``[centre - 0.5 / rate, centre + 0.5 / rate)``; a window holding none gets
    the linear interpolation at its centre; windows outside the series' time
    span (first to last timestamp) get NaN.
    """
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    starts = np.asarray(sample_times, dtype=np.float64) - 0.5 / rate
    index = np.floor((times - starts[0]) * rate + 1e-9).astype(np.int64)
    inside = (index >= 0) & (index < len(starts))
    sums = np.zeros((len(starts), values.shape[1]))
    counts = np.zeros(len(starts))
    finite = np.isfinite(values).all(axis=1) & inside
    np.add.at(sums, index[finite], values[finite])
    np.add.at(counts, index[finite], 1.0)
    out = np.full_like(sums, np.nan)
    has = counts > 0
    out[has] = sums[has] / counts[has, None]
    centres = np.asarray(sample_times, dtype=np.float64)
    empty = ~has & (centres >= times.min()) & (centres <= times.max())
    if empty.any():
        ok = np.isfinite(values).all(axis=1)
        for c in range(values.shape[1]):
            out[empty, c] = np.interp(centres[empty], times[ok], values[ok, c])
    return out


def ingest_nwb(
    path: str | os.PathLike,
    *,
    modality: str,
    sampling_rate: float | None = None,
    series: str | None = None,
    behavior: str | Sequence[str] | None = None,
    stimulus_table: str | None = None,
    video_column: str | None = None,
    videos: Mapping[str, Any] | None = None,
) -> Any:
    """Read an NWB recording into a :class:`neurovid.neural.Recording` (module docstring).

    Args:
        path: the ``.nwb`` file.
        modality: ``spikes`` (Units) or ``calcium`` (a RoiResponseSeries).
        sampling_rate: Hz; the bin rate for spikes (required); for calcium it
            must agree with the series (1%) when given.
        series: calcium: the RoiResponseSeries (sheet column ``nwb_series``).
        behavior: comma list / list of behavior series or containers (``nwb_behavior``).
        stimulus_table: TimeIntervals table of the presentations (``stimulus``
            ``nwb:<table>``); the events go to ``Recording.stimulus_events``.
        video_column: its column naming the video (default ``video_id``).
        videos: the videos sheet's ``video_id -> path`` (matching the video column).

    Raises:
        InputError: naming the file, the field and the fix (see the checks above).
    """
    path = Path(path)
    rate = sheet_number(sampling_rate)
    if rate is not None and not rate > 0:
        raise InputError(
            path, f"sampling rate {rate} is not positive.", f"set `sampling_rate` in {_SHEET} (Hz)."
        )
    if modality not in ("spikes", "calcium"):
        raise InputError(
            path,
            f"an NWB recording is read as spikes (Units) or calcium (RoiResponseSeries), not {modality!r}.",
            f"set `modality` to spikes or calcium in {_SHEET}.",
            field="modality",
        )
    column = _cell(video_column) or DEFAULT_VIDEO_COLUMN
    io, nwbfile = _open(path)
    try:
        if modality == "calcium":
            recording, t0 = _calcium(path, nwbfile, _cell(series), rate)
        else:
            recording, t0 = _spikes(path, nwbfile, rate)
        recording.info["t0"] = t0
        specs = _names(behavior)
        if specs:
            data, names = _behavior(
                path, nwbfile, specs, t0, recording.times, recording.sampling_rate
            )
            recording.behavior, recording.behavior_names = data, np.array(names)
        table = _cell(stimulus_table)
        if table is not None:
            rows = _intervals(path, nwbfile, table, column, videos or {})
            recording.stimulus_events = _events(path, table, rows, t0, recording.duration)
            recording.info["stimulus_table"] = table
    finally:
        io.close()
    return recording


def _intervals(
    path: Path, nwbfile: Any, table: str, column: str, videos: Mapping[str, Any]
) -> list[tuple[str, float, float]]:
    from pynwb.epoch import TimeIntervals

    tables = {f"intervals/{n}": t for n, t in (nwbfile.intervals or {}).items()}
    tables.update({p: o for p, o in _objects(nwbfile).items() if isinstance(o, TimeIntervals)})
    want = [c for c in table.strip("/").split("/") if c]
    hits = [p for p in tables if p.split("/")[-len(want) :] == want]
    if len(hits) != 1:
        raise InputError(
            path,
            f"has {'no' if not hits else 'several'} TimeIntervals table {table!r} ({', '.join(sorted(hits or tables)) or 'none'}).",
            f"write `nwb:<table>` with one of the file's tables in the `stimulus` column of {_SHEET}.",
            field="stimulus",
        )
    found = tables[hits[0]]
    if column not in found.colnames:
        raise InputError(
            path,
            f"the TimeIntervals table {table!r} has no column `{column}` (columns: {', '.join(found.colnames)}).",
            f"set `nwb_video_column` in {_SHEET} to the column naming the video.",
            field=f"{table}.{column}",
        )
    values = [v if isinstance(v, str | bytes) else number_text(v) for v in found[column].data[:]]
    return check_presentations(
        path,
        table,
        column,
        np.asarray(found["start_time"].data[:]),
        np.asarray(found["stop_time"].data[:]),
        values,
        videos,
    )


def _events(
    path: Path, table: str, rows: list[tuple[str, float, float]], t0: float, duration: float
) -> list[dict[str, Any]]:
    """Presentations on the recording's clock; each within the recording."""
    events = []
    for video_id, start, stop in rows:
        onset = start - t0
        if onset < -TIME_TOLERANCE or stop - t0 > duration + TIME_TOLERANCE:
            raise InputError(
                path,
                f"the presentation of {video_id!r} in table {table!r} ({start:g}-{stop:g} s on the file's clock) lies outside the recording ({t0:g}-{t0 + duration:g} s).",
                "check the presentations table and the recording's extent: the calcium series' timestamps, or the Units' obs_intervals (without them a spikes recording runs from the file clock's 0 to its last spike).",
                field=f"{table}.stop_time",
            )
        events.append({"video_id": video_id, "onset": max(onset, 0.0)})
    return events
