"""Learned audio encoder (wav2vec2-style or Whisper) features of a stimulus video's sound."""

from neurovid.features.audio import run_audio_rule
from neurovid.features.audio_encoder import audio_encoder
from neurovid.features.runtime import torch_versions

run_audio_rule(
    snakemake, "audio_encoder", audio_encoder, torch_versions(), threads=snakemake.threads
)
