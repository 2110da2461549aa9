"""Mean held-out r of every encoding model, side by side per subject."""

from neurovid.io import provenance, read_h5
from neurovid.logs import script_logger
from neurovid.plots import model_comparison_figure

log = script_logger(snakemake, "figure_model_comparison")

params = snakemake.params
mean_r: dict[str, dict[str, float]] = {}
for model, subject, path in zip(
    params.models, params.subjects, snakemake.input.scores, strict=True
):
    _, attrs = read_h5(path)
    mean_r.setdefault(model, {})[f"{subject} ({attrs['modality']})"] = float(attrs["mean_r"])
inputs = {
    f"{m}/{s}": p
    for m, s, p in zip(params.models, params.subjects, snakemake.input.scores, strict=True)
}
model_comparison_figure(
    mean_r,
    snakemake.output[0],
    provenance("figure_model_comparison", {}, inputs, ("matplotlib",)),
)
log.info("wrote %s: %s", snakemake.output[0], mean_r)
