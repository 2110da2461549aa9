"""SlowFast R50 per-clip pooled features, Kinetics-400 logits and class names of a standardized video, streamed into the features file."""

from neurovid.features.runtime import torch_versions
from neurovid.features.slowfast import slowfast_features
from neurovid.io import provenance
from neurovid.logs import script_logger

log = script_logger(snakemake, "slowfast")
settings = dict(snakemake.params.settings)
record = provenance("slowfast", settings, {"video": snakemake.input.video}, torch_versions())
attrs = slowfast_features(
    snakemake.input.video,
    snakemake.output[0],
    **settings,
    threads=snakemake.threads,
    extra_attrs={"provenance": record},
    log=log,
)
log.info("wrote %s (%s, %s)", snakemake.output[0], attrs["model_id"], attrs["dtype"])
