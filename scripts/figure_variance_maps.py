"""Glass brains of one fMRI subject's variance partition: unique per space, and shared."""

import nibabel as nib

from neurovid.io import provenance
from neurovid.logs import script_logger
from neurovid.plots import partition_maps_figure

log = script_logger(snakemake, "figure_variance_maps")

params = snakemake.params
maps = dict(zip(params.parts, snakemake.input.maps, strict=True))
partition_maps_figure(
    {part: nib.load(path) for part, path in maps.items()},
    snakemake.output[0],
    title=f"{params.model} / {params.subject}: held-out R² by feature space",
    provenance=provenance(
        "figure_variance_maps",
        {"model": params.model, "subject": params.subject},
        maps,
        ("nilearn", "matplotlib"),
    ),
)
log.info("wrote %s", snakemake.output[0])
