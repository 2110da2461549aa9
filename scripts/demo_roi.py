"""The demo's ROIs (gray matter, MNI 3 mm): "visual" (occipital) -> results/demo/truth/fmri_roi.nii.gz
and "auditory" (bilateral superior temporal gyrus, disjoint from it) ->
results/demo/truth/fmri_roi_auditory.nii.gz."""

import numpy as np

from neurovid import io, neural
from neurovid.demo import responses
from neurovid.logs import script_logger

log = script_logger(snakemake, "demo_roi")
resolution = snakemake.params.fmri["resolution_mm"]
mask = neural.load_mask("mni152_gm", resolution)
visual = responses.make_roi(mask)
auditory = responses.make_auditory_roi(mask, visual)
rois = {
    "visual": (
        visual,
        snakemake.output[0],
        responses.ROI_CENTRES_MM,
        responses.ROI_RADIUS_MM,
    ),
    "auditory": (
        auditory,
        snakemake.output[1],
        responses.AUDITORY_CENTRES_MM,
        responses.AUDITORY_RADIUS_MM,
    ),
}
for name, (roi, path, centres, radius) in rois.items():
    n = int(np.asarray(roi.dataobj).sum())
    params = {
        "roi": name,
        "mask": "mni152_gm",
        "resolution_mm": resolution,
        "centres_mm": centres,
        "radius_mm": radius,
        "n_voxels": n,
    }
    responses.save_nifti(roi, path, io.provenance("demo_roi", params, packages=("nilearn",)))
    log.info("%s ROI: %d voxels within %g mm of %s", name, n, radius, centres)
