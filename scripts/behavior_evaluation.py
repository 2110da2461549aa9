"""Localized segments vs annotations of the held-out videos: frame F1, segment P/R at IoU."""

from neurovid.behavior.evaluation import write_evaluation
from neurovid.behavior.pipeline import evaluate_videos
from neurovid.io import provenance
from neurovid.logs import script_logger

log = script_logger(snakemake, "behavior_evaluation")
inp = snakemake.input
items = list(
    zip(
        snakemake.params.videos,
        inp.segments,
        inp.annotations,
        inp.probes,
        snakemake.params.fps,
        strict=True,
    )
)
table = evaluate_videos(items, iou=snakemake.params.iou)
record = provenance(
    "behavior_evaluation",
    {"iou": snakemake.params.iou, "videos": snakemake.params.videos},
    {f"segments_{v}": s for v, s, *_ in items},
)
write_evaluation(snakemake.output[0], table, record)
log.info("\n%s", table.to_string(index=False))
