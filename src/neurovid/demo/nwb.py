"""A simulated mouse run written as NWB, as a lab shares it on DANDI.

``results/demo/mice/mouse-1_run-N.nwb`` (pynwb) holds:

* ``units``: one unit per neuron (``unit_name`` ``neuron_000``..), ``spike_times``
  on the NWB clock, ``obs_intervals`` = the recording (its start and end); the
  spikes are the simulation's counts per bin (:func:`neurovid.demo.responses.simulate_mouse_run`)
  placed uniformly at random inside their bin, away from its edges (1% of a
  bin), so binning them again on the recording's clock gives the same counts;
* ``processing/behavior/BehavioralTimeSeries/running_speed``: the running speed
  (cm/s, :func:`neurovid.demo.responses.running_speed`), regularly sampled from
  the recording's start;
* ``intervals/presentations``: a ``TimeIntervals`` table, one row per video shown
  (``start_time``, ``stop_time``, ``video_id``) on the NWB clock.

The NWB clock's zero is the session start; the recording starts ``start_s``
later (12.5 s in the demo), so readers must take onsets relative to the
recording's first sample (``obs_intervals`` / the running speed's
``starting_time``). The file carries neurovid's provenance (JSON) in
``source_script`` and fixed dates and identifier: same seed, same content.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from neurovid.io import PathLike, atomic_path, to_json
from neurovid.sheets import StimulusEvent

#: Session start of every demo NWB file (fixed, so reruns give the same file).
SESSION_START = datetime(2024, 1, 1, tzinfo=UTC)
EDGE = 0.01  # spikes stay this share of a bin away from its edges


def spike_times(
    counts: np.ndarray, sampling_rate: float, start_s: float, gen: np.random.Generator
) -> list[np.ndarray]:
    """Spike times (s, sorted) of each neuron from counts per bin [T, N].

    Bin ``i`` covers ``[start_s + i / rate, start_s + (i + 1) / rate)``; each of its
    spikes is placed uniformly in the bin's middle 98%.
    """
    counts = np.asarray(counts)
    if counts.size and (counts.min() < 0 or not np.all(counts == np.round(counts))):
        raise ValueError("spike counts must be non-negative integers")
    out = []
    for n in range(counts.shape[1]):
        bins = np.repeat(np.arange(len(counts)), counts[:, n].astype(np.int64))
        offset = EDGE + (1 - 2 * EDGE) * gen.random(len(bins))
        out.append(np.sort(start_s + (bins + offset) / sampling_rate))
    return out


def write_mouse_nwb(
    path: PathLike,
    *,
    subject: str,
    recording: str,
    counts: np.ndarray,
    names: Sequence[str],
    running_speed: np.ndarray,
    events: Sequence[StimulusEvent],
    durations: Mapping[str, float],
    sampling_rate: float,
    start_s: float,
    seed: Any,
    provenance: Mapping[str, Any],
) -> None:
    """Write one simulated spiking mouse run as NWB, atomically (see the module doc)."""
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.behavior import BehavioralTimeSeries
    from pynwb.epoch import TimeIntervals
    from pynwb.file import Subject

    from neurovid.demo.responses import rng

    n_samples = len(counts)
    end_s = start_s + n_samples / sampling_rate
    nwb = NWBFile(
        session_description="neurovid demo: a simulated mouse (V1 spikes) watching the "
        "stimulus videos, with running bouts",
        identifier=str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(["neurovid-demo", seed]))),
        session_start_time=SESSION_START,
        file_create_date=[SESSION_START],
        session_id=recording,
        experiment_description="Simulated data with known ground truth (src/neurovid/demo).",
        source_script=to_json(dict(provenance)),
        source_script_file_name="scripts/demo_mouse_nwb.py",
        subject=Subject(
            subject_id=subject, species="Mus musculus", sex="U", age="P90D", description="simulated"
        ),
    )
    nwb.add_unit_column(name="unit_name", description="the neuron's name in the simulation")
    times = spike_times(counts, sampling_rate, start_s, rng(seed, "spike_times"))
    for name, spikes in zip(names, times, strict=True):
        nwb.add_unit(spike_times=spikes, obs_intervals=[[start_s, end_s]], unit_name=name)

    behavior = nwb.create_processing_module("behavior", "running on a treadmill")
    speed = TimeSeries(
        name="running_speed",
        data=np.asarray(running_speed, np.float32),
        unit="cm/s",
        starting_time=float(start_s),
        rate=float(sampling_rate),
        description="treadmill running speed, sampled with the neural bins (bin centres "
        "are starting_time + (i + 0.5) / rate)",
    )
    behavior.add(BehavioralTimeSeries(time_series=[speed]))

    presentations = TimeIntervals(name="presentations", description="stimulus videos shown")
    presentations.add_column(name="video_id", description="the video's id in videos.tsv")
    for event in events:
        onset = start_s + event.onset
        presentations.add_interval(
            start_time=onset, stop_time=onset + durations[event.video_id], video_id=event.video_id
        )
    nwb.add_time_intervals(presentations)
    with atomic_path(path) as tmp:
        with NWBHDF5IO(str(tmp), mode="w") as io:
            io.write(nwb)


def read_mouse_nwb(path: PathLike) -> dict[str, Any]:
    """What :func:`write_mouse_nwb` stored, as plain arrays (for tests and checks)."""
    from pynwb import NWBHDF5IO

    with NWBHDF5IO(str(path), mode="r") as io:
        nwb = io.read()
        units = nwb.units
        speed = nwb.processing["behavior"]["BehavioralTimeSeries"]["running_speed"]
        table = nwb.intervals["presentations"]
        return {
            "unit_name": list(units["unit_name"][:]),
            "spike_times": [np.asarray(units["spike_times"][i]) for i in range(len(units))],
            "obs_intervals": [np.asarray(units["obs_intervals"][i]) for i in range(len(units))],
            "running_speed": np.asarray(speed.data[:]),
            "speed_unit": speed.unit,
            "starting_time": float(speed.starting_time),
            "rate": float(speed.rate),
            "presentations": table.to_dataframe()[["start_time", "stop_time", "video_id"]],
            "provenance": json.loads(nwb.source_script),
            "subject": nwb.subject.subject_id,
        }
