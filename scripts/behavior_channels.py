"""The `behavior_channels` body feature space of a recording, on its response samples."""

from neurovid.body import behavior_channels
from neurovid.io import provenance, read_responses, write_features
from neurovid.logs import script_logger

log = script_logger(snakemake, "behavior_channels")
table = snakemake.input.get("table")
fs = behavior_channels(
    read_responses(snakemake.input.responses),
    snakemake.input.responses,
    table,
    snakemake.params.offset,
    recording=snakemake.wildcards.recording,
    sheet=snakemake.params.sheet,
)
record = provenance(
    "behavior_channels",
    {"offset": snakemake.params.offset, "columns": fs.attrs["columns"]},
    {"responses": snakemake.input.responses, **({"table": table} if table else {})},
    packages=("pandas",),
)
write_features(snakemake.output[0], fs.features, fs.times, {**fs.attrs, "provenance": record})
for name, count in fs.attrs["filled"].items():
    if count:
        log.warning(
            "%s: %d of %d samples had no value (filled, neurovid.body)", name, count, len(fs.times)
        )
log.info("wrote %s: channels %s", snakemake.output[0], ", ".join(fs.attrs["columns"]))
