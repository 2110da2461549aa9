"""Volumes of a subject's held-out r and R² (fMRI), with provenance sidecars."""

from neurovid.io import provenance
from neurovid.logs import script_logger
from neurovid.stats import scores_to_images, write_nifti

log = script_logger(snakemake, "score_maps")
r_img, r2_img = scores_to_images(snakemake.input.scores)
prov = provenance("score_maps", {}, {"scores": snakemake.input.scores}, ("nibabel",))
write_nifti(snakemake.output.r, r_img, prov)
write_nifti(snakemake.output.r2, r2_img, prov)
log.info("wrote %s and %s (grid %s)", snakemake.output.r, snakemake.output.r2, r_img.shape)
