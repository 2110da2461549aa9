"""Mean held-out unique variance of each feature space, and shared, per subject of a model;
and each target's unique variance of one space against another's."""

from neurovid.io import provenance, read_h5
from neurovid.logs import script_logger
from neurovid.plots import partition_figure, partition_targets_figure

log = script_logger(snakemake, "figure_variance_partition")

params = snakemake.params
means: dict[str, dict[str, float]] = {}
unique: dict[str, dict[str, object]] = {}
spaces = [p for p in params.parts if p.startswith("unique_")]
for subject, path in zip(params.subjects, snakemake.input.scores, strict=True):
    arrays, attrs = read_h5(path)
    label = f"{subject} ({attrs['modality']})"
    means[label] = {p: float(attrs[f"mean_{p}"]) for p in params.parts}
    unique[label] = {p.removeprefix("unique_"): arrays[p] for p in spaces}
inputs = dict(zip(params.subjects, snakemake.input.scores, strict=True))
prov = provenance("figure_variance_partition", {"model": params.model}, inputs, ("matplotlib",))
partition_figure(
    means,
    snakemake.output.bars,
    prov,
    title=f"{params.model}: variance partitioning (mean over targets)",
)
partition_targets_figure(
    unique,
    snakemake.output.targets,
    prov,
    title=f"{params.model}: unique variance of each target (neuron, voxel, parcel)",
)
log.info("wrote %s and %s: %s", snakemake.output.bars, snakemake.output.targets, means)
