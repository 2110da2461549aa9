"""Per-frame behavior probabilities of a video, smoothed bouts and time per behavior."""

from neurovid.behavior.classifier import predict_and_write
from neurovid.logs import script_logger

log = script_logger(snakemake, "behavior_frames")
settings = snakemake.params.settings
summary = predict_and_write(
    snakemake.input.model,
    snakemake.input.video,
    snakemake.output.csv,
    min_bout_s=settings["min_bout_s"],
    batch_size=settings["batch_size"],
    device=settings["device"],
    threads=snakemake.threads,
    log=log,
)
log.info("time per behavior (s): %s", summary["time_per_behavior_s"])
