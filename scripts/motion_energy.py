"""Motion-energy features (pymoten) of a standardized video, streamed in chunks."""

from neurovid.features.motion_energy import motion_energy
from neurovid.io import provenance, write_features
from neurovid.logs import script_logger

log = script_logger(snakemake, "motion_energy")
settings = dict(snakemake.params.settings)
features, times, attrs = motion_energy(snakemake.input.video, **settings, log=log)
attrs["provenance"] = provenance(
    "motion_energy", settings, {"video": snakemake.input.video}, ("pymoten", "av")
)
write_features(snakemake.output[0], features, times, attrs)
log.info("wrote %s: features %s", snakemake.output[0], features.shape)
