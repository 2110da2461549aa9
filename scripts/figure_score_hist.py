"""Histogram of held-out r per subject for one model."""

from neurovid.io import provenance, read_h5
from neurovid.logs import script_logger
from neurovid.plots import score_histogram

log = script_logger(snakemake, "figure_score_hist")

scores = {}
for subject, path in zip(snakemake.params.subjects, snakemake.input.scores, strict=True):
    arrays, attrs = read_h5(path)
    scores[f"{subject} ({attrs['modality']})"] = arrays["r"]
inputs = dict(zip(snakemake.params.subjects, snakemake.input.scores, strict=True))
score_histogram(
    scores,
    snakemake.output[0],
    title=f"{snakemake.params.model}: held-out prediction accuracy",
    provenance=provenance(
        "figure_score_hist", {"model": snakemake.params.model}, inputs, ("matplotlib",)
    ),
)
log.info("wrote %s", snakemake.output[0])
