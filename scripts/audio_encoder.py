"""Learned audio encoder (wav2vec2-style or Whisper) features of a stimulus video's sound."""

from neurovid.features.audio_encoder import audio_encoder
from neurovid.features.runtime import run_rule

run_rule(snakemake, "audio_encoder", audio_encoder, clock="clock_video")
