"""Train the two-stage action localizer (pose-feature classifier, Qwen2-VL segment labeler)."""

from neurovid.behavior.pipeline import AnnotatedVideo, train_actions
from neurovid.io import provenance, write_json
from neurovid.logs import script_logger

log = script_logger(snakemake, "train_actions")
inp = snakemake.input
videos = [
    AnnotatedVideo(*item, **pose)
    for *item, pose in zip(
        snakemake.params.videos,
        inp.videos,
        inp.poses,
        inp.annotations,
        inp.probes,
        snakemake.params.fps,
        snakemake.params.pose,
        strict=True,
    )
]
summary = train_actions(
    videos,
    snakemake.params.settings,
    snakemake.output.stage1,
    snakemake.output.stage2,
    threads=snakemake.threads,
)
summary["provenance"] = provenance(
    "train_actions",
    snakemake.params.settings,
    {f"{kind}_{v.video_id}": getattr(v, kind) for v in videos for kind in ("pose", "annotations")},
    packages=("scikit-learn", "torch", "transformers"),
)
write_json(snakemake.output.summary, summary)
log.info("trained on %s", {k: v for k, v in summary.items() if k != "provenance"})
