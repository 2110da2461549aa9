"""Write one PNG per frame of the standardized video (for labeling tools)."""

from neurovid.io import provenance
from neurovid.logs import script_logger
from neurovid.video import extract_frames

log = script_logger(snakemake, "frames")
n = extract_frames(
    snakemake.input.video,
    snakemake.output[0],
    provenance=provenance("frames", {}, {"video": snakemake.input.video}, ("imageio-ffmpeg",)),
)
log.info("wrote %d frames to %s", n, snakemake.output[0])
