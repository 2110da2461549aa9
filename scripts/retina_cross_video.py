"""Vi-ST-style retina model: train on each movie of an experiment, score the others (both directions)."""

from neurovid.deep.retina import cross_video_rule

cross_video_rule(snakemake)
