# Figures, each registered in the Snakemake report.


rule figure_surface:
    input:
        t="results/stats/{model}/t.nii.gz",
        fdr_mask="results/stats/{model}/fdr_mask.nii.gz",
    output:
        report(
            "results/figures/{model}/surface.png",
            category="{model}",
            subcategory="Group maps",
            caption="../report/surface.rst",
        ),
    log:
        "results/logs/figures/{model}/surface.log",
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        model=lambda wc: wc.model,
    script:
        "../scripts/figure_surface.py"


rule figure_glass_brain:
    input:
        t="results/stats/{model}/t.nii.gz",
        fdr_mask="results/stats/{model}/fdr_mask.nii.gz",
        summary="results/stats/{model}/summary.json",
    output:
        report(
            "results/figures/{model}/glass_brain.png",
            category="{model}",
            subcategory="Group maps",
            caption="../report/glass_brain.rst",
        ),
    log:
        "results/logs/figures/{model}/glass_brain.log",
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        model=lambda wc: wc.model,
    script:
        "../scripts/figure_glass_brain.py"


rule figure_score_hist:
    input:
        scores=lambda wc: expand(
            "results/encoding/{model}/{subject}/scores.h5",
            model=wc.model,
            subject=model_subjects(wc.model),
        ),
    output:
        report(
            "results/figures/{model}/score_hist.png",
            category="{model}",
            subcategory="Scores",
            caption="../report/score_hist.rst",
        ),
    log:
        "results/logs/figures/{model}/score_hist.log",
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        model=lambda wc: wc.model,
        subjects=lambda wc: model_subjects(wc.model),
    script:
        "../scripts/figure_score_hist.py"


rule figure_traces:
    input:
        predictions="results/encoding/{model}/{subject}/predictions.h5",
    output:
        report(
            "results/figures/{model}/traces/{subject}.png",
            category="{model}",
            subcategory="Predicted vs recorded",
            caption="../report/traces.rst",
        ),
    log:
        "results/logs/figures/{model}/traces_{subject}.log",
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        model=lambda wc: wc.model,
        subject=lambda wc: wc.subject,
        seconds=config["figures"]["traces_seconds"],
    script:
        "../scripts/figure_traces.py"


rule figure_model_comparison:
    input:
        scores=[
            f"results/encoding/{model}/{subject}/scores.h5"
            for model, subject in model_subject_pairs()
        ],
    output:
        report(
            "results/figures/model_comparison.png",
            category="Model comparison",
            caption="../report/model_comparison.rst",
        ),
    log:
        "results/logs/figures/model_comparison.log",
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        models=[model for model, _ in model_subject_pairs()],
        subjects=[subject for _, subject in model_subject_pairs()],
    script:
        "../scripts/figure_model_comparison.py"


# Variance partitioning of models with 2+ feature spaces (neurovid.partition).
rule figure_variance_partition:
    input:
        scores=lambda wc: expand(
            "results/encoding/{model}/{subject}/scores.h5",
            model=wc.model,
            subject=model_subjects(wc.model),
        ),
    output:
        bars=report(
            "results/figures/{model}/variance_partition.png",
            category="{model}",
            subcategory="Variance partitioning",
            caption="../report/variance_partition.rst",
        ),
        targets=report(
            "results/figures/{model}/variance_targets.png",
            category="{model}",
            subcategory="Variance partitioning",
            caption="../report/variance_targets.rst",
        ),
    log:
        "results/logs/figures/{model}/variance_partition.log",
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        model=lambda wc: wc.model,
        subjects=lambda wc: model_subjects(wc.model),
        parts=lambda wc: PARTITION_PARTS[wc.model],
    script:
        "../scripts/figure_variance_partition.py"


rule figure_variance_maps:
    input:
        maps=lambda wc: expand(
            "results/encoding/{model}/{subject}/{part}.nii.gz",
            model=wc.model,
            subject=fmri_subjects(wc.model),
            part=PARTITION_PARTS[wc.model],
        ),
    output:
        report(
            "results/figures/{model}/variance_maps.png",
            category="{model}",
            subcategory="Variance partitioning",
            caption="../report/variance_maps.rst",
        ),
    log:
        "results/logs/figures/{model}/variance_maps.log",
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        model=lambda wc: wc.model,
        subjects=lambda wc: fmri_subjects(wc.model),
        parts=lambda wc: PARTITION_PARTS[wc.model],
    script:
        "../scripts/figure_variance_maps.py"


# Per-PC group weight maps beside word clouds of the Kinetics classes (interpret_pcs).
rule figure_pc_maps:
    input:
        t="results/stats/{model}/pcs/t.nii.gz",
        fdr_mask="results/stats/{model}/pcs/fdr_mask.nii.gz",
        basis="results/stats/{model}/pcs/basis.h5",
        summary="results/stats/{model}/pcs/summary.json",
    output:
        report(
            "results/figures/{model}/pc_maps.png",
            category="{model}",
            subcategory="Group maps",
            caption="../report/pc_maps.rst",
        ),
    log:
        "results/logs/figures/{model}/pc_maps.log",
    conda:
        "../envs/figures.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        model=lambda wc: wc.model,
        pcs=lambda wc: PC_MODELS[wc.model],
        top_words=30,
        seed=config["seed"],
    script:
        "../scripts/figure_pc_maps.py"
