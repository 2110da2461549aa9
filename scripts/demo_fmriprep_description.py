"""dataset_description.json of the demo's fMRIPrep-like derivatives (results/demo/fmriprep)."""

from neurovid import io
from neurovid.demo import fmriprep
from neurovid.logs import script_logger

log = script_logger(snakemake, "demo_fmriprep_description")
io.write_json(snakemake.output[0], fmriprep.dataset_description())
log.info("wrote %s", snakemake.output[0])
