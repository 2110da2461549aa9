"""Encoding model of one subject: PCA -> FIR delays -> ridge/LASSO, leave-one-run-out CV
(plus each feature space's unique variance when the model is partitioned)."""

from pathlib import Path

from neurovid.align import delay_samples
from neurovid.encoding import (
    BANDED_N_ITER,
    LASSO_MAX_ITER,
    describe,
    encode_subject,
    load_subject,
    output_paths,
    write_outputs,
)
from neurovid.io import provenance, repeat_keys
from neurovid.logs import script_logger
from neurovid.partition import partitioned_spaces

log = script_logger(snakemake, "encode")
model, params = snakemake.params.model, snakemake.params
data = load_subject(
    params.runs,
    list(snakemake.input.responses),
    list(snakemake.input.features),
    model["features"],
    zscore=bool(params.zscore_runs),
)
delays = delay_samples(params.delays, data.sampling_rate)
log.info(
    "%s / %s: %d runs, delays %s s -> %s samples",
    params.model_name,
    params.subject,
    len(data.runs),
    params.delays,
    delays,
)
result = encode_subject(
    data.runs,
    estimator=model["estimator"],
    alphas=model["alphas"],
    pca_variance=float(model["pca_variance"]),
    delays=delays,
    n_jobs=snakemake.threads,
    max_iter=int(model.get("max_iter", LASSO_MAX_ITER)),
    stimuli=repeat_keys(list(params.stimuli), list(snakemake.input.responses)),
    bands=data.bands,
    n_iter=int(model.get("n_iter", BANDED_N_ITER)),
    seed=int(params.seed),
    log=log,
    variance_partitioning=bool(partitioned_spaces(params.model_name, model)),
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
    "alphas": list(model["alphas"]),
    "provenance": provenance(
        "encode", {**settings, "model": model}, inputs, ("scikit-learn", "threadpoolctl")
    ),
}
write_outputs(
    result, data, output_paths(snakemake.output), attrs=attrs, top_k=int(params.top_targets)
)
log.info("wrote %s", ", ".join(output_paths(snakemake.output).values()))
