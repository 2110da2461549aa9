# Trained deep encoders with their own data layouts (neurovid.deep).


# Sensorium-style mouse V1 model: ViViT + (q)LoRA backbone shared by all mice listed in
# deep.sensorium (Sensorium 2023 folders and/or neurovid spikes/calcium subjects), one
# readout head per mouse. Checkpoints live in training.partial/ while training (kept if
# the job dies, so a re-run resumes) and become the `training` output at the end.
rule train_sensorium:
    input:
        unpack(sensorium_inputs),
    output:
        model="results/deep/sensorium/model.pt",
        metrics="results/deep/sensorium/metrics.csv",
        summary="results/deep/sensorium/summary.json",
        scores=expand(
            "results/deep/sensorium/scores/{mouse}.csv", mouse=sensorium_mice()
        ),
        # the score tables' JSON sidecars (provenance)
        score_sidecars=expand(
            "results/deep/sensorium/scores/{mouse}.json", mouse=sensorium_mice()
        ),
        figure=report(
            "results/figures/deep/sensorium_loss.png",
            category="deep encoders",
            subcategory="Sensorium ViViT",
            caption="../report/sensorium_loss.rst",
        ),
        training=directory("results/deep/sensorium/training"),
    log:
        "results/logs/deep/train_sensorium.log",
    benchmark:
        "results/benchmarks/deep/train_sensorium.tsv"
    conda:
        "../envs/deep.yaml"
    threads: 4
    resources:
        **gpu_resources(),
        mem_mb=32000,
        runtime=1440,
    params:
        settings=sensorium_settings(),
        subjects=sensorium_runs(),
        seed=config["seed"],
    script:
        "../scripts/train_sensorium.py"
