"""ViViT per-clip features (optionally reduced token sequences) of a standardized video, streamed into the features file."""

from neurovid.features.runtime import run_rule
from neurovid.features.vivit import vivit_features

run_rule(snakemake, "vivit", vivit_features)
