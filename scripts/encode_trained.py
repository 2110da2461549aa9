"""Trained encoding model (estimator lstm) of one subject: the CV, scores and files of
scripts/encode.py, plus the checkpoints, per-epoch metrics and loss curve of every fold."""

import os
from pathlib import Path

import torch

from neurovid.align import delay_samples
from neurovid.deep.lstm import LSTMConfig, LSTMTrainer
from neurovid.encoding import describe, encode_subject, load_subject, output_paths, write_outputs
from neurovid.io import provenance, repeat_keys
from neurovid.logs import script_logger

log = script_logger(snakemake, "encode_trained")
model, params = snakemake.params.model, snakemake.params
torch.set_num_threads(snakemake.threads)
data = load_subject(
    params.runs,
    list(snakemake.input.responses),
    list(snakemake.input.features),
    model["features"],
    zscore=bool(params.zscore_runs),
)
delays = delay_samples(params.delays, data.sampling_rate)
config = LSTMConfig.from_model(
    model,
    sampling_rate=data.sampling_rate,
    modality=data.modality,
    seed=int(params.seed),
    field_prefix=f"encoding.models.{params.model_name}",
)
log.info(
    "%s / %s: %d runs, %s, window %d samples (burn-in %d)",
    params.model_name,
    params.subject,
    len(data.runs),
    model["estimator"],
    config.window,
    config.burn_in,
)
# Checkpoints live in training.partial/ while training (kept when the job dies, so a
# re-run resumes after the last finished epoch) and become the `training` output at the end.
partial = Path(snakemake.output.training).with_name("training.partial")
result = encode_subject(
    data.runs,
    estimator=model["estimator"],
    alphas=[],
    pca_variance=float(model["pca_variance"]),
    delays=delays,
    n_jobs=snakemake.threads,
    stimuli=repeat_keys(list(params.stimuli), list(snakemake.input.responses)),
    seed=int(params.seed),
    log=log,
    trainer=LSTMTrainer(config),
    train_dir=partial,
    censored=data.censored,
    body_spaces=list(params.body_spaces),
)
log.info("%s", describe(result))
settings = {
    k: getattr(params, k)
    for k in ("runs", "stimuli", "delays", "zscore_runs", "top_targets", "seed")
}
inputs = dict(zip([f"responses/{r}" for r in params.runs], snakemake.input.responses, strict=True))
inputs.update({"features/" + "/".join(Path(p).parts[-2:]): p for p in snakemake.input.features})
attrs = {
    "model": params.model_name,
    "subject": params.subject,
    "delays_s": list(params.delays),
    # fMRI volumes censored at ingest, per run: left out of every fit and score
    "censored_volumes": data.censored_counts,
    "alphas": [],
    "provenance": provenance(
        "encode_trained", {**settings, "model": model}, inputs, ("scikit-learn", "torch")
    ),
}
write_outputs(
    result, data, output_paths(snakemake.output), attrs=attrs, top_k=int(params.top_targets)
)
os.replace(partial, snakemake.output.training)
log.info(
    "wrote %s, %s", ", ".join(output_paths(snakemake.output).values()), snakemake.output.training
)
