"""ViViT per-clip features (optionally reduced token sequences) of a standardized video, streamed into the features file."""

from neurovid.features.runtime import torch_versions
from neurovid.features.vivit import vivit_features
from neurovid.io import provenance
from neurovid.logs import script_logger

log = script_logger(snakemake, "vivit")
settings = dict(snakemake.params.settings)
record = provenance("vivit", settings, {"video": snakemake.input.video}, torch_versions())
attrs = vivit_features(
    snakemake.input.video,
    snakemake.output[0],
    **settings,
    threads=snakemake.threads,
    extra_attrs={"provenance": record},
    log=log,
)
log.info("wrote %s (%s, %s)", snakemake.output[0], attrs["model_id"], attrs["dtype"])
