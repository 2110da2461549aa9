# Vi-ST-style retina model (config `deep.retina`): frozen per-frame ViT/DINOv2 features ->
# causal multiscale temporal CNN -> retinal ganglion cell rates. One job per experiment
# (a set of movies recorded from the same cells); GPU when the job sees one.


rule train_retina:
    input:
        features=retina_features,
        responses=retina_responses,
    output:
        checkpoint="results/deep/retina/{experiment}/model.pt",
        metrics="results/deep/retina/{experiment}/metrics.csv",
        loss_curve="results/deep/retina/{experiment}/loss_curve.png",
        scores="results/deep/retina/{experiment}/scores.tsv",
        scores_sidecar="results/deep/retina/{experiment}/scores.json",
    log:
        "results/logs/train_retina/{experiment}.log",
    benchmark:
        "results/benchmarks/train_retina/{experiment}.tsv"
    wildcard_constraints:
        experiment="[A-Za-z0-9_-]+",
    conda:
        "../envs/deep.yaml"
    threads: 2
    resources:
        **gpu_resources(),
        mem_mb=8000,
        runtime=240,
    params:
        settings=retina_config(),
        movies=retina_movies,
        seed=config["seed"],
        # Training state (last.pt, best.pt): kept after an interruption so a rerun resumes.
        state=lambda wildcards: f"results/deep/retina/{wildcards.experiment}/state",
    script:
        "../scripts/train_retina.py"


rule retina_cross_video:
    input:
        features=retina_features,
        responses=retina_responses,
    output:
        table="results/deep/retina/{experiment}/cross_video.tsv",
        table_sidecar="results/deep/retina/{experiment}/cross_video.json",
    log:
        "results/logs/retina_cross_video/{experiment}.log",
    benchmark:
        "results/benchmarks/retina_cross_video/{experiment}.tsv"
    wildcard_constraints:
        experiment="[A-Za-z0-9_-]+",
    conda:
        "../envs/deep.yaml"
    threads: 2
    resources:
        **gpu_resources(),
        mem_mb=8000,
        runtime=480,
    params:
        settings=retina_config(),
        movies=retina_movies,
        seed=config["seed"],
        state=lambda wildcards: f"results/deep/retina/{wildcards.experiment}/cross_state",
    script:
        "../scripts/retina_cross_video.py"
