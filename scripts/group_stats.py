"""Group one-sample t-test of Fisher-z r maps across subjects, with FDR correction."""

from neurovid.io import provenance
from neurovid.logs import script_logger
from neurovid.stats import group_test, write_group_outputs

log = script_logger(snakemake, "group_stats")
params = {
    "subjects": list(snakemake.params.subjects),
    "fdr_alpha": snakemake.params.fdr_alpha,
    "alternative": snakemake.params.alternative,
    "min_subjects": snakemake.params.min_subjects,
}
result = group_test(
    list(snakemake.input.maps),
    fdr_alpha=float(params["fdr_alpha"]),
    alternative=params["alternative"],
    min_subjects=int(params["min_subjects"]),
    subjects=params["subjects"],
    model=snakemake.wildcards.model,
)
inputs = dict(zip(params["subjects"], snakemake.input.maps, strict=True))
outputs = {k: getattr(snakemake.output, k) for k in (*result.images, "summary")}
write_group_outputs(
    result, outputs, provenance("group_stats", params, inputs, ("scipy", "nibabel"))
)
s = result.summary
log.info(
    "%d subjects, %d voxels tested (>= %d subjects each), %d skipped for too few subjects, "
    "%d significant (q < %g), t threshold %s",
    s["n_subjects"],
    s["n_voxels"],
    s["min_subjects"],
    s["n_voxels_too_few_subjects"],
    s["n_significant"],
    s["fdr_alpha"],
    s["t_threshold"],
)
