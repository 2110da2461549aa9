"""Ground truth of one simulated demo subject (fMRI voxels or mouse neurons) -> results/demo/truth/{subject}.h5."""

import nibabel as nib

from neurovid import io
from neurovid.demo import responses
from neurovid.logs import script_logger

log = script_logger(snakemake, "demo_truth")
p = snakemake.params
seed = list(p.seed)
features = io.read_features(snakemake.input.features)
inputs = {"features": snakemake.input.features}


def first(value):
    return value[0] if isinstance(value, list) else value


if p.modality == "fmri":
    roi_path = first(snakemake.input.roi)
    inputs["roi"] = roi_path
    audio = {}
    if getattr(snakemake.input, "audio", None):
        inputs["audio"] = first(snakemake.input.audio)
        inputs["audio_roi"] = first(snakemake.input.audio_roi)
        audio = {
            "audio_features": io.read_features(inputs["audio"]),
            "audio_roi_img": nib.load(inputs["audio_roi"]),
        }
    datasets, attrs = responses.make_fmri_truth(features, nib.load(roi_path), seed, **audio)
    log.info(
        "%s: %d visual ROI voxels, %d auditory ROI voxels, %d brain voxels",
        p.subject,
        len(datasets["roi_ijk"]),
        len(datasets.get("audio_roi_ijk", [])),
        len(datasets["baseline"]),
    )
else:
    datasets, attrs = responses.make_mouse_truth(
        features, seed, modality=p.modality, running_share=float(p.running_share)
    )
    log.info("%s: %d %s neurons", p.subject, len(datasets["mixing"]), p.modality)
attrs["subject"] = p.subject
params = {"subject": p.subject, "modality": p.modality, "seed": seed}
if p.modality != "fmri":
    params["running_share"] = float(p.running_share)
attrs["provenance"] = io.provenance("demo_truth", params, inputs, ("nilearn",))
io.write_h5(snakemake.output[0], datasets, attrs, compression="gzip")
log.info("wrote %s", snakemake.output[0])
