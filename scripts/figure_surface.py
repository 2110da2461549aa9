"""Group t map (FDR-thresholded) on the fsaverage5 surface."""

import nibabel as nib

from neurovid.io import provenance
from neurovid.logs import script_logger
from neurovid.plots import surface_figure

log = script_logger(snakemake, "figure_surface")

inputs = {"t": snakemake.input.t, "fdr_mask": snakemake.input.fdr_mask}
surface_figure(
    nib.load(snakemake.input.t),
    nib.load(snakemake.input.fdr_mask),
    snakemake.output[0],
    title=f"{snakemake.params.model}: group t (FDR-thresholded)",
    provenance=provenance(
        "figure_surface", {"model": snakemake.params.model}, inputs, ("nilearn", "matplotlib")
    ),
)
log.info("wrote %s", snakemake.output[0])
