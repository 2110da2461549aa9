"""Qwen2-VL per-clip embeddings of a standardized video, streamed into the features file."""

from neurovid.features.qwen2vl import qwen2vl_features
from neurovid.features.runtime import torch_versions
from neurovid.io import provenance
from neurovid.logs import script_logger

log = script_logger(snakemake, "qwen2vl")
settings = dict(snakemake.params.settings)
record = provenance("qwen2vl", settings, {"video": snakemake.input.video}, torch_versions())
attrs = qwen2vl_features(
    snakemake.input.video,
    snakemake.output[0],
    **settings,
    threads=snakemake.threads,
    extra_attrs={"provenance": record},
    log=log,
)
log.info("wrote %s (%s, %s)", snakemake.output[0], attrs["model_id"], attrs["dtype"])
