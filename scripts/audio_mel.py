"""Log-mel bands of a stimulus video's sound (the original file), on the standardized video's clock."""

from neurovid.features.audio import audio_mel
from neurovid.features.runtime import run_rule

run_rule(snakemake, "audio_mel", audio_mel, ("av", "h5py"), threads=False, clock="clock_video")
