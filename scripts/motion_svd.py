"""Motion SVD (Facemap's method) of a face/body video, in two streamed passes."""

from neurovid.features.motion_svd import motion_svd, write_motion_svd
from neurovid.io import provenance
from neurovid.logs import script_logger

log = script_logger(snakemake, "motion_svd")
settings = dict(snakemake.params.settings)
result = motion_svd(snakemake.input.video, **settings, log=log)
record = provenance("motion_svd", settings, {"video": snakemake.input.video}, ("av",))
write_motion_svd(snakemake.output[0], result, {"provenance": record})
log.info("wrote %s: features %s", snakemake.output[0], result.features.shape)
