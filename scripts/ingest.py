"""Ingest one recording (fMRI NIfTI, spike / calcium table) -> results/neural/{recording}.h5."""

from neurovid import bids, denoise, io, neural
from neurovid.logs import script_logger

log = script_logger(snakemake, "ingest")
p = snakemake.params
nwb = getattr(p, "nwb", None)  # what to read from an .nwb recording (neurovid.nwb), else None
modality, fmri = p.modality, dict(p.fmri)
tr, rate = neural.sheet_number(p.tr), neural.sheet_number(p.sampling_rate)
sidecar = getattr(snakemake.input, "sidecar", None)
if sidecar:  # a BIDS run: fMRIPrep's sidecar, else the raw dataset's (the sheet's tr)
    tr = bids.repetition_time(sidecar, tr, p.recording_id)
source = snakemake.input.recording
log.info("ingesting %s (%s, tr=%s, sampling_rate=%s)", source, modality, tr, rate)
mask = neural.load_mask(fmri["mask"], fmri["resolution_mm"]) if modality == "fmri" else None
rec = neural.ingest_recording(
    source,
    modality=modality,
    tr=tr,
    sampling_rate=rate,
    mask_img=mask,
    drop_nan_voxels=bool(fmri["drop_nan_voxels"]),
    nwb=nwb,
)
confounds = getattr(snakemake.input, "confounds", None)
if modality == "fmri":  # drift, high-pass, confounds, censoring; parcels (neurovid.denoise)
    rec = denoise.denoise_recording(
        rec,
        denoise.DenoiseSettings.from_config(fmri.get("denoise")),
        confounds_path=confounds,
        atlas=fmri.get("atlas"),
        recording_id=p.recording_id,
    )
log.info("%d samples x %d targets at %g Hz; %s", *rec.responses.shape, rec.sampling_rate, rec.info)
params = {"modality": modality, "tr": tr, "sampling_rate": rate}
packages = ("nibabel", "nilearn", "pandas")
if nwb:
    params["nwb"] = {k: v for k, v in nwb.items() if k != "videos"}
    packages += ("pynwb", "hdmf")
inputs = {"recording": source}
if modality == "fmri":
    params["fmri"] = fmri
    if confounds:
        inputs["confounds"] = confounds
    if fmri.get("atlas"):
        inputs.update(atlas_labels=fmri["atlas"]["labels"], atlas_names=fmri["atlas"]["names"])
    if str(fmri["mask"]) != "mni152_gm":
        inputs["mask"] = fmri["mask"]
attrs = {
    "recording_id": p.recording_id,
    "subject": p.subject,
    "modality": modality,
    "sampling_rate": rec.sampling_rate,
    "duration": rec.duration,
    "source": str(source),
    "ingest": rec.info,
    **({"stimulus_events": rec.stimulus_events} if rec.stimulus_events is not None else {}),
    "provenance": io.provenance("ingest", params, inputs, packages),
}
rec.write(snakemake.output[0], attrs)
log.info("wrote %s", snakemake.output[0])
