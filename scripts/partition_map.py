"""Volume of one part of a subject's variance partition (unique_<space> or shared), fMRI."""

from neurovid.io import provenance
from neurovid.logs import script_logger
from neurovid.stats import scores_to_images, write_nifti

log = script_logger(snakemake, "partition_map")
part = snakemake.params.part
(img,) = scores_to_images(snakemake.input.scores, [part])
prov = provenance("partition_map", {"part": part}, {"scores": snakemake.input.scores}, ("nibabel",))
write_nifti(snakemake.output.volume, img, prov)
log.info("wrote %s (grid %s)", snakemake.output.volume, img.shape)
