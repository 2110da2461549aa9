# Encoding models: PCA -> FIR delays -> ridge / banded ridge / LASSO, leave-one-run-out CV, per subject.


rule encode:
    input:
        responses=lambda wc: expand(
            "results/neural/{recording}.h5", recording=subject_recordings(wc)
        ),
        features=lambda wc: expand(
            "results/aligned/{extractor}/{recording}.h5",
            extractor=MODELS[wc.model]["features"],
            recording=subject_recordings(wc),
        ),
    output:
        scores="results/encoding/{model}/{subject}/scores.h5",
        table="results/encoding/{model}/{subject}/scores.tsv",
        metrics="results/encoding/{model}/{subject}/metrics.tsv",
        # the tables' JSON sidecars: provenance, model, subject, runs
        table_sidecar="results/encoding/{model}/{subject}/scores.json",
        metrics_sidecar="results/encoding/{model}/{subject}/metrics.json",
        predictions="results/encoding/{model}/{subject}/predictions.h5",
        weights="results/encoding/{model}/{subject}/weights.h5",
    log:
        "results/logs/encode/{model}/{subject}.log",
    benchmark:
        "results/benchmarks/encode/{model}/{subject}.tsv"
    wildcard_constraints:
        model=model_choice("encode"),
    conda:
        "../envs/encoding.yaml"
    threads: encode_threads
    # The ridge solvers run on CUDA through torch when a GPU is visible.
    resources:
        **gpu_resources(),
        mem_mb=8000,
        runtime=120,
    params:
        model=lambda wc: MODELS[wc.model],
        model_name=lambda wc: wc.model,
        subject=lambda wc: wc.subject,
        runs=subject_recordings,
        # Runs showing the same stimulus sequence are repeats (held out together; noise ceiling).
        stimuli=stimulus_keys,
        delays=lambda wc: config["encoding"]["delays"][subject_modality(wc.subject)],
        zscore_runs=config["neural"]["zscore_runs"],
        top_targets=config["encoding"]["top_targets"],
        seed=config["seed"],
        body_spaces=lambda wc: model_body_spaces(wc.model),
    script:
        "../scripts/encode.py"


# LASSO (scikit-learn, per target) runs on CPU: the same job without a GPU.
use rule encode as encode_lasso with:
    wildcard_constraints:
        model=model_choice("encode_lasso"),
    resources:
        mem_mb=8000,
        runtime=120,


# Trained sequence models (estimator: lstm): the same CV, scores and files, plus each
# fold's checkpoints, metrics.csv per epoch and loss curve under training/. A job that
# is interrupted resumes from training.partial/ (kept, not an output) when re-run.
rule encode_trained:
    input:
        responses=lambda wc: expand(
            "results/neural/{recording}.h5", recording=subject_recordings(wc)
        ),
        features=lambda wc: expand(
            "results/aligned/{extractor}/{recording}.h5",
            extractor=MODELS[wc.model]["features"],
            recording=subject_recordings(wc),
        ),
    output:
        scores="results/encoding/{model}/{subject}/scores.h5",
        table="results/encoding/{model}/{subject}/scores.tsv",
        metrics="results/encoding/{model}/{subject}/metrics.tsv",
        # the tables' JSON sidecars: provenance, model, subject, runs
        table_sidecar="results/encoding/{model}/{subject}/scores.json",
        metrics_sidecar="results/encoding/{model}/{subject}/metrics.json",
        predictions="results/encoding/{model}/{subject}/predictions.h5",
        weights="results/encoding/{model}/{subject}/weights.h5",
        training=directory("results/encoding/{model}/{subject}/training"),
    log:
        "results/logs/encode/{model}/{subject}.log",
    benchmark:
        "results/benchmarks/encode/{model}/{subject}.tsv"
    wildcard_constraints:
        model=model_choice("encode_trained"),
    conda:
        "../envs/deep.yaml"
    threads: encode_threads
    resources:
        **gpu_resources(),
        mem_mb=8000,
        runtime=240,
    params:
        model=lambda wc: MODELS[wc.model],
        model_name=lambda wc: wc.model,
        subject=lambda wc: wc.subject,
        runs=subject_recordings,
        stimuli=stimulus_keys,
        delays=lambda wc: config["encoding"]["delays"][subject_modality(wc.subject)],
        zscore_runs=config["neural"]["zscore_runs"],
        top_targets=config["encoding"]["top_targets"],
        seed=config["seed"],
        body_spaces=lambda wc: model_body_spaces(wc.model),
    script:
        "../scripts/encode_trained.py"


rule score_maps:
    input:
        scores="results/encoding/{model}/{subject}/scores.h5",
    output:
        r="results/encoding/{model}/{subject}/r.nii.gz",
        r2="results/encoding/{model}/{subject}/r2.nii.gz",
        r_sidecar="results/encoding/{model}/{subject}/r.json",
        r2_sidecar="results/encoding/{model}/{subject}/r2.json",
    log:
        "results/logs/score_maps/{model}/{subject}.log",
    conda:
        "../envs/stats.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/score_maps.py"


# Variance partitioning (models with 2+ feature spaces, neurovid.partition): a map per
# part of an fMRI subject's partition, unique_<space> for each space of the model
# (config: the model's features) and shared, written like r2.nii.gz.
rule partition_map:
    input:
        scores="results/encoding/{model}/{subject}/scores.h5",
    output:
        volume="results/encoding/{model}/{subject}/{part}.nii.gz",
        sidecar="results/encoding/{model}/{subject}/{part}.json",
    log:
        "results/logs/partition_map/{model}/{subject}_{part}.log",
    wildcard_constraints:
        part="unique_[A-Za-z0-9_-]+|shared",
    conda:
        "../envs/stats.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        part=lambda wc: wc.part,
    script:
        "../scripts/partition_map.py"
