"""The frame classifier's held-out confusion matrix."""

from neurovid.behavior.pipeline import confusion_figure
from neurovid.io import provenance
from neurovid.logs import script_logger

log = script_logger(snakemake, "figure_confusion")
record = provenance(
    "figure_confusion", inputs={"model": snakemake.input.model}, digest_inputs=False
)
confusion_figure(snakemake.input.model, snakemake.output[0], record)
log.info("wrote %s", snakemake.output[0])
