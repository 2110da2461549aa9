"""A frame classifier's training folder (one subfolder per label) from annotated videos."""

from neurovid.behavior.pipeline import write_labeled_frames
from neurovid.logs import script_logger

log = script_logger(snakemake, "labeled_frames")
videos = list(
    zip(
        snakemake.input.videos,
        snakemake.input.annotations,
        snakemake.input.probes,
        snakemake.params.fps,
        strict=True,
    )
)
counts = write_labeled_frames(
    videos, snakemake.output[0], per_class=snakemake.params.per_class, seed=snakemake.params.seed
)
log.info("frames per label from %s: %s", snakemake.params.videos, counts)
# The names v{index}_f{frame}.png say where each frame comes from; the classifier holds
# out whole videos (2+ videos) or contiguous time blocks (one video) by them.
log.info(
    "frame names v<index>_f<frame>.png: %s",
    ", ".join(f"v{i} = {video}" for i, video in enumerate(snakemake.params.videos)),
)
