"""Localize and label actions in one behavior video (both stages) -> segments.csv."""

from neurovid.behavior.actions import write_segments
from neurovid.behavior.pipeline import localize
from neurovid.io import provenance
from neurovid.logs import script_logger

log = script_logger(snakemake, "actions")
inp = snakemake.input
table = localize(
    inp.video,
    inp.pose,
    inp.probe,
    inp.stage1,
    inp.stage2,
    snakemake.params.settings,
    fps_override=snakemake.params.fps,
    threads=snakemake.threads,
    **snakemake.params.pose,
)
record = provenance(
    "actions",
    {**snakemake.params.settings, **snakemake.params.pose},
    {"video": inp.video, "pose": inp.pose, "stage1": inp.stage1, "stage2": inp.stage2},
    packages=("scikit-learn", "torch", "transformers"),
)
write_segments(snakemake.output.csv, table, record)
log.info("%s: %d segments %s", inp.video, len(table), table["label"].value_counts().to_dict())
