"""One simulated BOLD run of the demo -> results/demo/fmri/{recording}.nii.gz (+ .truth.h5)."""

import time

from neurovid import io
from neurovid.demo import responses
from neurovid.logs import script_logger

log = script_logger(snakemake, "demo_fmri_run")
p = snakemake.params
start = time.perf_counter()
events, feature_sets = responses.features_by_video(p.timeline, list(snakemake.input.features))
truth = responses.read_truth(snakemake.input.truth)
img, run_truth = responses.simulate_fmri_run(
    events, feature_sets, truth, tr=float(p.tr), tail_s=float(p.tail_s), seed=list(p.seed)
)
log.info("simulated %s volumes in %.1f s", img.shape, time.perf_counter() - start)
params = {
    "timeline": p.timeline,
    "tr": float(p.tr),
    "tail_s": float(p.tail_s),
    "seed": list(p.seed),
}
inputs = {"truth": snakemake.input.truth, "roi": snakemake.input.roi}
inputs.update(
    {f"features_{e.video_id}": f for e, f in zip(events, snakemake.input.features, strict=True)}
)
prov = io.provenance("demo_fmri_run", params, inputs, ("nibabel", "nilearn"))
responses.save_nifti(img, snakemake.output.bold, prov)
io.write_h5(
    snakemake.output.truth, run_truth, {"provenance": prov, "tr": float(p.tr)}, compression="gzip"
)
log.info(
    "wrote %s and %s in %.1f s",
    snakemake.output.bold,
    snakemake.output.truth,
    time.perf_counter() - start,
)
