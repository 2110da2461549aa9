"""Transcode a video to the standard frame rate, size and pixel format (one ffmpeg pass)."""

import json

from neurovid.io import provenance
from neurovid.logs import script_logger
from neurovid.video import fps_override_value, standardize

log = script_logger(snakemake, "standardize")
params = {
    key: snakemake.params[key] for key in ("fps", "width", "height", "color", "crf", "fps_override")
}
params["fps_override"] = fps_override_value(params["fps_override"])
source = json.loads(open(snakemake.input.probe).read())
source.pop("provenance", None)
result = standardize(
    snakemake.input.video,
    snakemake.output[0],
    **params,
    threads=snakemake.threads,
    source_probe=source,
    provenance=provenance(
        "standardize", params, {"video": snakemake.input.video}, ("av", "imageio-ffmpeg")
    ),
)
log.info(
    "wrote %s (%d frames at %s fps; source %s)",
    snakemake.output[0],
    result["video"]["frames"],
    params["fps"],
    "variable frame rate, resampled by timestamps"
    if source["video"].get("variable_frame_rate")
    else "constant frame rate",
)
