"""Features of a recording's stimulus timeline (or of its behavior: a body feature space,
one event) on the recording's sample times."""

from pathlib import Path

from neurovid.align import timeline_features
from neurovid.errors import InputError
from neurovid.io import provenance, read_features, read_responses, write_features
from neurovid.logs import script_logger
from neurovid.sheets import StimulusEvent

log = script_logger(snakemake, "align")
recording = snakemake.wildcards.recording
responses = read_responses(snakemake.input.responses)
timeline = snakemake.params.timeline
if timeline is None:  # `nwb:<table>`: the timeline ingest read from the NWB file
    timeline = [[e["video_id"], e["onset"]] for e in responses.attrs.get("stimulus_events", [])]
events = [StimulusEvent(str(video), float(onset)) for video, onset in timeline]
videos = list(dict.fromkeys(e.video_id for e in events))
# Feature files by video id (results/features/{extractor}/{video}.h5); for an NWB timeline
# the inputs were planned from the table at parse time (or are every stimulus video).
by_video = {Path(p).stem: p for p in snakemake.input.features}
missing = [v for v in videos if v not in by_video]
if missing or not events:
    raise InputError(
        snakemake.input.responses,
        f"the stimulus timeline shows {', '.join(missing) or 'no video'}, but the features of the videos this job was planned with are {', '.join(by_video) or 'none'}.",
        "re-run snakemake (the job's inputs are planned from the NWB file's presentations table when the workflow starts).",
        field="stimulus_events",
    )
paths = [by_video[v] for v in videos]
sets = {v: read_features(p) for v, p in zip(videos, paths, strict=True)}
features = timeline_features(
    events,
    sets,
    responses.times,
    recording=recording,
    recording_path=snakemake.input.responses,
    source=snakemake.params.source,
    # A body feature space (neurovid.body): one event, the behavior video at the sheet's
    # behavior_offset_s (or the channels at 0), which must cover every sample.
    require_cover=bool(snakemake.params.get("require_cover", False)),
    field=snakemake.params.get("field") or "stimulus",
)
source = sets[videos[0]].attrs
attrs = {
    "extractor": snakemake.wildcards.extractor,
    "recording": recording,
    "timeline": timeline,
    "sampling_rate": responses.sampling_rate,
    "duration": len(responses.times) / responses.sampling_rate,
    **{key: source.get(key, "") for key in ("model_id", "revision", "layer")},
    "provenance": provenance(
        "align",
        {"timeline": timeline},
        {"responses": snakemake.input.responses, **dict(zip(videos, paths, strict=True))},
    ),
}
write_features(snakemake.output[0], features, responses.times, attrs)
log.info("wrote %s: %s from %d videos", snakemake.output[0], features.shape, len(videos))
