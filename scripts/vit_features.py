"""ViT / DINOv2 per-frame features of a standardized video, streamed into the features file."""

from neurovid.features.runtime import run_rule
from neurovid.features.vit import vit_features

run_rule(snakemake, "vit", vit_features)
