"""Probe a video (container, streams, frame count, digest); reject unusable files."""

from neurovid.io import provenance, write_json
from neurovid.logs import script_logger
from neurovid.video import probe

log = script_logger(snakemake, "probe")
info = probe(snakemake.input.video)
info["provenance"] = provenance(
    "probe", inputs={"video": snakemake.input.video}, packages=("av",), digest_inputs=False
)
write_json(snakemake.output[0], info)
video = info["video"]
log.info(
    "%s: %s, %dx%d, %.3f fps, %d frames, %.2f s, %d audio stream(s)",
    snakemake.input.video,
    video["codec"],
    video["width"],
    video["height"],
    video["fps"],
    video["frames"],
    info["duration"],
    len(info["audio"]),
)
if video["variable_frame_rate"]:
    intervals = video["frame_interval_s"]
    log.info(
        "%s: variable frame rate (frame intervals %.1f-%.1f ms, median %.1f ms); standardize "
        "resamples it by timestamps",
        snakemake.input.video,
        1e3 * intervals["min"],
        1e3 * intervals["max"],
        1e3 * intervals["median"],
    )
