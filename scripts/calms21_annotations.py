"""A CalMS21/MABe sequence's per-frame annotations -> neurovid's annotation CSV."""

from neurovid.behavior.calms21 import write_annotations
from neurovid.io import provenance
from neurovid.logs import script_logger

log = script_logger(snakemake, "calms21_annotations")
sequence = snakemake.params.sequence
record = provenance("calms21_annotations", {"sequence": sequence}, {"calms21": snakemake.input[0]})
table = write_annotations(snakemake.output[0], snakemake.input[0], sequence, provenance=record)
log.info("%s: %d bouts %s", snakemake.input[0], len(table), table["label"].value_counts().to_dict())
