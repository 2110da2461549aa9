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
        code=lib("align", "encoding"),
    output:
        scores="results/encoding/{model}/{subject}/scores.h5",
        table="results/encoding/{model}/{subject}/scores.tsv",
        metrics="results/encoding/{model}/{subject}/metrics.tsv",
        predictions="results/encoding/{model}/{subject}/predictions.h5",
        weights="results/encoding/{model}/{subject}/weights.h5",
    log:
        "results/logs/encode/{model}/{subject}.log",
    benchmark:
        "results/benchmarks/encode/{model}/{subject}.tsv"
    wildcard_constraints:
        model=model_choice("linear"),
    conda:
        "../envs/encoding.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
        # The ridge solvers run on CUDA through torch when a GPU is visible.
        gpu=lambda wc: 0 if MODELS[wc.model]["estimator"] == "lasso" else gpu_request(),
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
    script:
        "../scripts/encode.py"


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
        code=lib("align", "encoding", "deep/training", "deep/lstm", "plots"),
    output:
        scores="results/encoding/{model}/{subject}/scores.h5",
        table="results/encoding/{model}/{subject}/scores.tsv",
        metrics="results/encoding/{model}/{subject}/metrics.tsv",
        predictions="results/encoding/{model}/{subject}/predictions.h5",
        weights="results/encoding/{model}/{subject}/weights.h5",
        training=directory("results/encoding/{model}/{subject}/training"),
    log:
        "results/logs/encode/{model}/{subject}.log",
    benchmark:
        "results/benchmarks/encode/{model}/{subject}.tsv"
    wildcard_constraints:
        model=model_choice("trained"),
    conda:
        "../envs/deep.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=gpu_request(),
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
    script:
        "../scripts/encode_trained.py"


rule score_maps:
    input:
        scores="results/encoding/{model}/{subject}/scores.h5",
        code=lib("stats"),
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
