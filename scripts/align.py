"""Features of a recording's stimulus timeline on the recording's sample times."""

from neurovid.align import timeline_features
from neurovid.io import provenance, read_features, read_responses, write_features
from neurovid.logs import script_logger
from neurovid.sheets import StimulusEvent

log = script_logger(snakemake, "align")
recording = snakemake.wildcards.recording
events = [StimulusEvent(str(video), float(onset)) for video, onset in snakemake.params.timeline]
videos = list(dict.fromkeys(e.video_id for e in events))
paths = list(snakemake.input.features)
if len(paths) == len(events) != len(videos):  # expand() repeats a video shown twice
    paths = list(dict(zip((e.video_id for e in events), paths, strict=True)).values())
responses = read_responses(snakemake.input.responses)
sets = {v: read_features(p) for v, p in zip(videos, paths, strict=True)}
features = timeline_features(
    events, sets, responses.times, recording=recording, recording_path=snakemake.input.responses
)
source = sets[videos[0]].attrs
attrs = {
    "extractor": snakemake.wildcards.extractor,
    "recording": recording,
    "timeline": snakemake.params.timeline,
    "sampling_rate": responses.sampling_rate,
    "duration": len(responses.times) / responses.sampling_rate,
    **{key: source.get(key, "") for key in ("model_id", "revision", "layer")},
    "provenance": provenance(
        "align",
        {"timeline": snakemake.params.timeline},
        {"responses": snakemake.input.responses, **dict(zip(videos, paths, strict=True))},
    ),
}
write_features(snakemake.output[0], features, responses.times, attrs)
log.info("wrote %s: %s from %d videos", snakemake.output[0], features.shape, len(videos))
