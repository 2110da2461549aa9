"""One simulated BOLD run of the demo as fMRIPrep writes it -> results/demo/fmriprep/{subject}/func/
{recording}_space-..._desc-preproc_bold.nii.gz (+ .json), {recording}_desc-confounds_timeseries.tsv
(+ .json), and the run's truth (results/demo/fmri/{subject}/{recording}.truth.h5)."""

import time

from neurovid import io
from neurovid.demo import fmriprep, responses
from neurovid.logs import script_logger

log = script_logger(snakemake, "demo_fmri_run")
p = snakemake.params
start = time.perf_counter()
events, feature_sets = responses.features_by_video(p.timeline, list(snakemake.input.features))
truth = responses.read_truth(snakemake.input.truth)
audio_paths = list(getattr(snakemake.input, "audio", None) or [])
audio_sets = responses.features_by_video(p.timeline, audio_paths)[1] if audio_paths else None
artefacts = responses.FmriArtefacts.from_config(p.artefacts)
tr = float(p.tr)
img, run_truth = responses.simulate_fmri_run(
    events,
    feature_sets,
    truth,
    tr=tr,
    tail_s=float(p.tail_s),
    seed=list(p.seed),
    artefacts=artefacts,
    audio_feature_sets=audio_sets,
)
log.info("simulated %s volumes in %.1f s", img.shape, time.perf_counter() - start)
masks = fmriprep.tissue_masks(truth["brain_mask"])
table, meta = fmriprep.confounds_table(img, run_truth["motion"], masks, tr)
fd = table["framewise_displacement"]
log.info(
    "confounds: %d columns; FD > 0.5 mm at volumes %s (jumps %s)",
    table.shape[1],
    fd.index[fd > 0.5].tolist(),
    run_truth["jump_volumes"].tolist(),
)
params = {
    "timeline": p.timeline,
    "tr": tr,
    "tail_s": float(p.tail_s),
    "seed": list(p.seed),
    "artefacts": artefacts.as_dict(),
}
inputs = {"truth": snakemake.input.truth, "roi": snakemake.input.roi}
inputs.update(
    {f"features_{e.video_id}": f for e, f in zip(events, snakemake.input.features, strict=True)}
)
inputs.update({f"audio_{e.video_id}": f for e, f in zip(events, audio_paths, strict=False)})
prov = io.provenance("demo_fmri_run", params, inputs, ("nibabel", "nilearn"))
responses.save_nifti(img, snakemake.output.bold, prov)
io.write_json(
    snakemake.output.sidecar, fmriprep.bold_sidecar(tr, fmriprep.task_of(p.recording), prov)
)
fmriprep.write_confounds(snakemake.output.confounds, table, meta, prov)
io.write_h5(
    snakemake.output.truth,
    run_truth,
    {"provenance": prov, "tr": tr, "artefacts": artefacts.as_dict()},
    compression="gzip",
)
log.info("wrote %s and its confounds in %.1f s", snakemake.output.bold, time.perf_counter() - start)
