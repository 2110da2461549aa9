"""Kinematics of a behavior video's pose (movement): cleaned track, speed, distance in cm."""

from neurovid.behavior.kinematics import compute_kinematics, write_kinematics
from neurovid.behavior.pipeline import video_timing
from neurovid.io import provenance
from neurovid.logs import script_logger

log = script_logger(snakemake, "kinematics")
settings = dict(snakemake.params.settings)
geometry = {k: v for k, v in snakemake.params.sheet.items() if v is not None}
box = None
if "arena_x0_px" in geometry and "arena_y0_px" in geometry and "arena_px" in geometry:
    side = geometry["arena_px"]
    box = (geometry["arena_x0_px"], geometry["arena_y0_px"], side, side)
timing = video_timing(snakemake.input.probe, snakemake.params.fps)
table, summary = compute_kinematics(
    snakemake.input.pose,
    timing.fps,
    bodypart=settings.get("bodypart", "centroid"),
    centroid_bodyparts=settings.get("centroid_bodyparts"),
    expected_bodyparts=settings.get("bodyparts"),
    likelihood_cutoff=settings.get("likelihood_cutoff", 0.6),
    max_gap=settings.get("max_gap", 5),
    smooth_window=settings.get("smooth_window", 9),
    polyorder=settings.get("polyorder", 2),
    arena_cm=geometry.get("arena_cm"),
    arena_px=geometry.get("arena_px"),
    arena_box_px=box,
    reference_cm=geometry.get("reference_cm"),
    reference_px=geometry.get("reference_px"),
    reference_bodyparts=settings.get("reference_bodyparts"),
    moving_threshold_cm_per_s=settings.get("moving_threshold_cm_per_s", 1.5),
    centre_fraction=settings.get("centre_fraction", 0.5),
    sheet=snakemake.params.videos_sheet,
    **snakemake.params.pose,
)
record = provenance(
    "kinematics",
    {**settings, "sheet": snakemake.params.sheet, "fps": timing.fps, **snakemake.params.pose},
    {"pose": snakemake.input.pose},
    packages=("movement", "xarray", "scipy"),
)
write_kinematics(table, summary, snakemake.output.csv, snakemake.output.summary, record)
log.info(
    "%s: %.1f cm travelled, mean speed %.2f cm/s, %.1f s moving",
    snakemake.input.pose,
    summary["distance_cm"],
    summary["mean_speed_cm_per_s"],
    summary["time_moving_s"],
)
