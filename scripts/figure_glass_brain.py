"""Glass brain of the FDR-thresholded group t map."""

import json

import nibabel as nib

from neurovid.io import provenance
from neurovid.logs import script_logger
from neurovid.plots import glass_brain_figure

log = script_logger(snakemake, "figure_glass_brain")

summary = json.loads(open(snakemake.input.summary).read())
inputs = {"t": snakemake.input.t, "fdr_mask": snakemake.input.fdr_mask}
glass_brain_figure(
    nib.load(snakemake.input.t),
    nib.load(snakemake.input.fdr_mask),
    snakemake.output[0],
    title=(
        f"{snakemake.params.model}: t, q < {summary['fdr_alpha']} "
        f"({summary['n_significant']} of {summary['n_voxels']} voxels, {summary['n_subjects']} subjects)"
    ),
    provenance=provenance(
        "figure_glass_brain", {"model": snakemake.params.model}, inputs, ("nilearn", "matplotlib")
    ),
)
log.info("wrote %s", snakemake.output[0])
