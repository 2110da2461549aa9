"""A behavior video's pose (ndx-pose) and kinematics as one NWB file."""

from neurovid.behavior.nwb_out import write_pose_nwb
from neurovid.behavior.pipeline import video_timing
from neurovid.io import provenance
from neurovid.logs import script_logger

log = script_logger(snakemake, "pose_nwb")
inp = snakemake.input
subject = dict(snakemake.params.subject)
timing = video_timing(inp.probe, snakemake.params.fps)
record = provenance(
    "pose_nwb",
    {"fps": timing.fps, **snakemake.params.pose, **subject},
    {"pose": inp.pose, "kinematics": inp.kinematics},
    packages=("movement", "pynwb", "ndx-pose"),
)
write_pose_nwb(
    snakemake.output[0],
    inp.pose,
    inp.kinematics,
    fps=timing.fps,
    video_id=snakemake.params.video_id,
    video=inp.video,
    pose_source=snakemake.params.pose["pose_source"],
    sequence=snakemake.params.pose["sequence"],
    subject_id=subject.pop("subject"),
    subject=subject,
    provenance=record,
    sheet=snakemake.params.videos_sheet,
)
log.info("wrote %s", snakemake.output[0])
