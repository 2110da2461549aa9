"""The results summary (summary.tsv + summary.json) and the report's front page (front.rst)."""

from neurovid.io import provenance
from neurovid.logs import script_logger
from neurovid.summary import STATS_FILES, summarize, write_summary

log = script_logger(snakemake, "summary")
inp, params = snakemake.input, snakemake.params
scores = list(zip(params.models, params.subjects, inp.scores, strict=True))
files = list(inp.stats)  # per model, its STATS_FILES in order (rules/summary.smk)
n = len(STATS_FILES)
stats = {
    model: dict(zip(STATS_FILES, files[i * n : (i + 1) * n], strict=True))
    for i, model in enumerate(params.stats_models)
}
optional = {key: inp[key] if key in inp.keys() else None for key in ("evaluation", "classifier")}
classifier = f"{optional['classifier']}/metrics.tsv" if optional["classifier"] else None
summary = summarize(scores, stats, evaluation=optional["evaluation"], classifier_metrics=classifier)
inputs = {f"scores/{m}/{s}": p for m, s, p in scores}
inputs.update({f"stats/{m}/{k}": p for m, files in stats.items() for k, p in files.items()})
inputs.update(
    {k: p for k, p in (("evaluation", optional["evaluation"]), ("classifier", classifier)) if p}
)
write_summary(
    summary,
    {"table": snakemake.output.table, "front": snakemake.output.front},
    provenance(
        "summary", {"figures": list(params.figures)}, inputs, ("nibabel", "nilearn", "pandas")
    ),
    figures=list(params.figures),
)
log.info("\n%s", summary.encoding.to_string(index=False))
if len(summary.peaks):
    log.info("peaks:\n%s", summary.peaks.to_string(index=False))
if len(summary.behavior):
    log.info("behavior:\n%s", summary.behavior.to_string(index=False))
