"""The demo's "visual" ROI (occipital gray matter, MNI 3 mm) -> results/demo/truth/fmri_roi.nii.gz."""

import numpy as np

from neurovid import io, neural
from neurovid.demo import responses
from neurovid.logs import script_logger

log = script_logger(snakemake, "demo_roi")
resolution = snakemake.params.fmri["resolution_mm"]
mask = neural.load_mask("mni152_gm", resolution)
roi = responses.make_roi(mask)
n = int(np.asarray(roi.dataobj).sum())
params = {
    "mask": "mni152_gm",
    "resolution_mm": resolution,
    "centres_mm": responses.ROI_CENTRES_MM,
    "radius_mm": responses.ROI_RADIUS_MM,
    "n_voxels": n,
}
responses.save_nifti(
    roi, snakemake.output[0], io.provenance("demo_roi", params, packages=("nilearn",))
)
log.info("ROI: %d voxels within %g mm of %s", n, responses.ROI_RADIUS_MM, responses.ROI_CENTRES_MM)
