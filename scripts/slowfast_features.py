"""SlowFast R50 per-clip pooled features, Kinetics-400 logits and class names of a standardized video, streamed into the features file."""

from neurovid.features.runtime import run_rule
from neurovid.features.slowfast import slowfast_features

run_rule(snakemake, "slowfast", slowfast_features)
