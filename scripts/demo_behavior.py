"""Render a demo open-field session: video, DeepLabCut-format pose, annotations, truth."""

from neurovid.demo import behavior
from neurovid.logs import script_logger

log = script_logger(snakemake, "demo_behavior")
session = snakemake.params.session
truth = behavior.simulate_open_field(session["seconds"], seed=session["seed"])
out = snakemake.output
behavior.render_video(truth, out.video, seed=session["seed"])
behavior.write_dlc_pose(truth, out.pose, seed=session["seed"])
behavior.write_annotations(truth, out.annotations)
behavior.write_truth(truth, out.truth)
bouts = behavior.label_bouts(truth.labels)
log.info(
    "%d frames at %g fps, %d bouts %s",
    truth.n_frames,
    truth.fps,
    len(bouts),
    bouts["label"].value_counts().to_dict(),
)
