"""The `kinematics` body feature space of a behavior video (its clock: frame centres)."""

import json
from pathlib import Path

import pandas as pd

from neurovid.body import kinematics_features
from neurovid.io import provenance, write_features
from neurovid.logs import script_logger

log = script_logger(snakemake, "kinematics_features")
summary = json.loads(Path(snakemake.input.summary).read_text())
fs = kinematics_features(
    pd.read_csv(snakemake.input.csv), float(summary["fps"]), snakemake.input.csv
)
record = provenance(
    "kinematics_features",
    {"columns": fs.attrs["columns"]},
    {"kinematics": snakemake.input.csv, "summary": snakemake.input.summary},
    packages=("pandas",),
)
write_features(snakemake.output[0], fs.features, fs.times, {**fs.attrs, "provenance": record})
log.info("wrote %s: %s, filled %s", snakemake.output[0], fs.features.shape, fs.attrs["filled"])
