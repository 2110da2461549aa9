"""Tiny random-weight ViT classifier and Qwen2-VL for the demo's behavior stage."""

from neurovid.demo.models import NOTE, save_tiny_qwen2vl, save_tiny_vit_classifier
from neurovid.logs import script_logger

log = script_logger(snakemake, "demo_models")
save_tiny_vit_classifier(snakemake.output.vit, seed=snakemake.params.seed)
save_tiny_qwen2vl(snakemake.output.qwen2vl, seed=snakemake.params.seed)
log.info("%s: %s", NOTE, list(snakemake.output))
