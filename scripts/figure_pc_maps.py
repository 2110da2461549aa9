"""Per-PC group weight maps of a SlowFast model beside word clouds of the Kinetics classes
loading on each PC."""

import json

import nibabel as nib

from neurovid.io import provenance, read_h5
from neurovid.logs import script_logger
from neurovid.pc_figures import pc_maps_figure

log = script_logger(snakemake, "figure_pc_maps")
params = snakemake.params
basis, _ = read_h5(snakemake.input.basis)
summary = json.loads(open(snakemake.input.summary).read())
inputs = {k: getattr(snakemake.input, k) for k in ("t", "fdr_mask", "basis", "summary")}
settings = {"model": params.model, "pcs": int(params.pcs), "top_words": int(params.top_words)}
pc_maps_figure(
    nib.load(snakemake.input.t),
    nib.load(snakemake.input.fdr_mask),
    basis["components"],
    list(basis["class_names"]),
    basis["explained_variance_ratio"],
    int(params.pcs),
    snakemake.output[0],
    title=(
        f"{params.model}: subjects' weights on the PCs of the Kinetics class logits "
        f"(two-sided t, q < {summary['fdr_alpha']}, {summary['n_subjects']} subjects)"
    ),
    provenance=provenance(
        "figure_pc_maps", settings, inputs, ("nilearn", "matplotlib", "wordcloud")
    ),
    top=int(params.top_words),
    seed=int(params.seed),
)
log.info("wrote %s", snakemake.output[0])
