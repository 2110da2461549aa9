"""Ingest one recording (fMRI NIfTI, spike / calcium table) -> results/neural/{recording}.h5."""

from neurovid import io, neural
from neurovid.logs import script_logger

log = script_logger(snakemake, "ingest")
p = snakemake.params
modality, fmri = p.modality, dict(p.fmri)
tr, rate = neural.sheet_number(p.tr), neural.sheet_number(p.sampling_rate)
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
)
log.info("%d samples x %d targets at %g Hz; %s", *rec.responses.shape, rec.sampling_rate, rec.info)
params = {"modality": modality, "tr": tr, "sampling_rate": rate}
inputs = {"recording": source}
if modality == "fmri":
    params["fmri"] = fmri
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
    "provenance": io.provenance("ingest", params, inputs, ("nibabel", "nilearn", "pandas")),
}
io.write_responses(
    snakemake.output[0],
    rec.responses,
    rec.times,
    rec.target_names,
    attrs,
    mask=rec.mask,
    affine=rec.affine,
    voxel_ijk=rec.voxel_ijk,
)
log.info("wrote %s", snakemake.output[0])
