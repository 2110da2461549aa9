"""Mean held-out unique variance of each feature space, and shared, per subject of a model."""

from neurovid.io import provenance, read_h5
from neurovid.logs import script_logger
from neurovid.plots import partition_figure

log = script_logger(snakemake, "figure_variance_partition")

params = snakemake.params
means: dict[str, dict[str, float]] = {}
for subject, path in zip(params.subjects, snakemake.input.scores, strict=True):
    _, attrs = read_h5(path)
    means[f"{subject} ({attrs['modality']})"] = {p: float(attrs[f"mean_{p}"]) for p in params.parts}
inputs = dict(zip(params.subjects, snakemake.input.scores, strict=True))
partition_figure(
    means,
    snakemake.output[0],
    provenance("figure_variance_partition", {"model": params.model}, inputs, ("matplotlib",)),
    title=f"{params.model}: variance partitioning (mean over targets)",
)
log.info("wrote %s: %s", snakemake.output[0], means)
