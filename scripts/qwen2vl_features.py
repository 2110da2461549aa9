"""Video-language model (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) per-clip embeddings of a standardized video, streamed into the features file."""

from neurovid.features.qwen2vl import qwen2vl_features
from neurovid.features.runtime import run_rule

run_rule(snakemake, "qwen2vl", qwen2vl_features)
