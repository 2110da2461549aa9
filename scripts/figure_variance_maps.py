"""Glass brains of the fMRI subjects' mean variance partition: unique per space, and shared."""

from nilearn.image import mean_img

from neurovid.io import provenance
from neurovid.logs import script_logger
from neurovid.plots import partition_maps_figure

log = script_logger(snakemake, "figure_variance_maps")

params = snakemake.params
n_parts = len(params.parts)
paths = list(snakemake.input.maps)  # subject-major, parts in PARTITION_PARTS order
per_part = {part: paths[k::n_parts] for k, part in enumerate(params.parts)}
partition_maps_figure(
    {part: mean_img(files, copy_header=True) for part, files in per_part.items()},
    snakemake.output[0],
    title=f"{params.model}: held-out R² by feature space, mean of {len(params.subjects)} subjects",
    provenance=provenance(
        "figure_variance_maps",
        {"model": params.model, "subjects": list(params.subjects)},
        dict(
            zip(
                [f"{s}/{part}" for s in params.subjects for part in params.parts],
                paths,
                strict=True,
            )
        ),
        ("nilearn", "matplotlib"),
    ),
)
log.info("wrote %s", snakemake.output[0])
