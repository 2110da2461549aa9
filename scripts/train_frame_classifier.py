"""Fine-tune a ViT image classifier on a labeled-frames folder (held-out F1, confusion matrix).

Frames are held out by video or by time block when their names say where they come from.
"""

from neurovid.behavior.classifier import train_frame_classifier
from neurovid.logs import script_logger

log = script_logger(snakemake, "train_frame_classifier")
settings = snakemake.params.settings
train_frame_classifier(
    snakemake.input.frames,
    str(settings["model"]),
    snakemake.output[0],
    epochs=settings["epochs"],
    lr=settings["lr"],
    batch_size=settings["batch_size"],
    held_out=settings["held_out"],
    seed=snakemake.params.seed,
    split=settings.get("split"),
    device=settings["device"],
    class_weights=settings["class_weights"],
    threads=snakemake.threads,
    log=log,
)
