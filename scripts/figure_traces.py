"""Recorded vs held-out predicted responses of a subject's best targets."""

from neurovid.io import provenance, read_h5
from neurovid.logs import script_logger
from neurovid.plots import traces_figure

log = script_logger(snakemake, "figure_traces")

arrays, attrs = read_h5(snakemake.input.predictions)
params = {
    "model": snakemake.params.model,
    "subject": snakemake.params.subject,
    "seconds": snakemake.params.seconds,
}
traces_figure(
    arrays,
    snakemake.output[0],
    title=f"{snakemake.params.model} / {snakemake.params.subject}: best held-out predictions",
    seconds=snakemake.params.seconds,
    provenance=provenance(
        "figure_traces", params, {"predictions": snakemake.input.predictions}, ("matplotlib",)
    ),
)
log.info("wrote %s", snakemake.output[0])
