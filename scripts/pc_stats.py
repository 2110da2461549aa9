"""Per-PC group maps of a SlowFast model: one PCA of the stimulus class logits, each
subject's final weights projected on it, a two-sided one-sample t-test per PC (FDR)."""

from pathlib import Path

from neurovid.interpret import (
    PC_MAPS,
    class_basis,
    design_widths,
    pc_group_test,
    subject_pc_volumes,
    write_pc_outputs,
)
from neurovid.io import provenance
from neurovid.logs import script_logger

log = script_logger(snakemake, "pc_stats")
params = snakemake.params
subjects, spaces = list(params.subjects), list(params.spaces)
aligned = list(snakemake.input.aligned)  # subject-major: each subject's first run, per space
widths = [
    design_widths(aligned[i * len(spaces) : (i + 1) * len(spaces)], spaces)
    for i in range(len(subjects))
]
basis = class_basis(list(snakemake.input.classes), float(params.pca_variance))
log.info(
    "class basis: %d PCs explain %.3f of the z-scored logit variance of %d clips",
    basis.n_pcs,
    float(basis.explained_variance_ratio.sum()),
    basis.n_clips,
)
volumes, affine = subject_pc_volumes(
    list(snakemake.input.weights), list(snakemake.input.scores), widths, basis
)
result = pc_group_test(
    volumes, affine, fdr_alpha=float(params.fdr_alpha), min_subjects=int(params.min_subjects)
)
settings = {k: getattr(params, k) for k in ("subjects", "spaces", "pca_variance", "fdr_alpha")}
settings["min_subjects"] = params.min_subjects
inputs = {f"weights/{s}": p for s, p in zip(subjects, snakemake.input.weights, strict=True)}
inputs.update({f"scores/{s}": p for s, p in zip(subjects, snakemake.input.scores, strict=True)})
inputs.update({f"classes/{Path(p).stem}": p for p in snakemake.input.classes})
write_pc_outputs(
    result,
    basis,
    {k: getattr(snakemake.output, k) for k in (*PC_MAPS, "basis", "loadings", "summary")},
    provenance("pc_stats", settings, inputs, ("scikit-learn", "scipy", "nibabel")),
)
for pc in result.summary["pcs"]:
    log.info(
        "PC %d: %d of %d voxels significant (%d positive, %d negative)",
        pc["pc"],
        pc["n_significant"],
        pc["n_voxels"],
        pc["n_positive"],
        pc["n_negative"],
    )
