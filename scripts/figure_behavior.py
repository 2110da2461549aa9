"""A behavior video's ethogram, occupancy heat map, speed trace and segment timeline."""

from neurovid.behavior.pipeline import behavior_figures
from neurovid.io import provenance
from neurovid.logs import script_logger

log = script_logger(snakemake, "figure_behavior")
inp = snakemake.input
record = provenance(
    "figure_behavior",
    {"video": snakemake.params.video},
    {"kinematics": inp.kinematics, "frames": inp.frames, "segments": inp.segments},
)
behavior_figures(
    snakemake.params.video,
    inp.probe,
    inp.kinematics,
    inp.kinematics_summary,
    inp.frames,
    inp.segments,
    inp.get("annotations"),
    snakemake.output,
    fps_override=snakemake.params.fps,
    record=record,
)
log.info("wrote %s", list(snakemake.output))
