"""Vi-ST-style retina model of one experiment: checkpoint, per-epoch metrics, loss curve, held-out scores."""

from neurovid.deep.retina import train_rule

train_rule(snakemake)
