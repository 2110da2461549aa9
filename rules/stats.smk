# Group statistics: one-sample t-test of Fisher-z score maps across subjects, FDR.


rule group_stats:
    input:
        maps=lambda wc: expand(
            "results/encoding/{model}/{subject}/r.nii.gz",
            model=wc.model,
            subject=fmri_subjects(wc.model),
        ),
    output:
        t="results/stats/{model}/t.nii.gz",
        p="results/stats/{model}/p.nii.gz",
        q="results/stats/{model}/q.nii.gz",
        fdr_mask="results/stats/{model}/fdr_mask.nii.gz",
        mean_r="results/stats/{model}/mean_r.nii.gz",
        n_subjects="results/stats/{model}/n_subjects.nii.gz",
        summary="results/stats/{model}/summary.json",
    log:
        "results/logs/group_stats/{model}.log",
    conda:
        "../envs/stats.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        subjects=lambda wc: fmri_subjects(wc.model),
        fdr_alpha=config["stats"]["fdr_alpha"],
        alternative=config["stats"]["alternative"],
        min_subjects=config["stats"]["min_subjects"],
    script:
        "../scripts/group_stats.py"


# Per-PC group maps of a SlowFast model with `interpret_pcs` (neurovid.interpret): one
# PCA of the stimulus videos' class logits, each subject's final weights projected on it,
# a two-sided t-test per PC (FDR); 4-D maps, PC on the 4th axis.
rule pc_stats:
    input:
        weights=lambda wc: expand(
            "results/encoding/{model}/{subject}/weights.h5",
            model=wc.model,
            subject=fmri_subjects(wc.model),
        ),
        scores=lambda wc: expand(
            "results/encoding/{model}/{subject}/scores.h5",
            model=wc.model,
            subject=fmri_subjects(wc.model),
        ),
        classes=lambda wc: expand(
            "results/features/slowfast/{video}.h5", video=stimulus_videos()
        ),
        aligned=pc_design_inputs,
    output:
        t="results/stats/{model}/pcs/t.nii.gz",
        p="results/stats/{model}/pcs/p.nii.gz",
        q="results/stats/{model}/pcs/q.nii.gz",
        fdr_mask="results/stats/{model}/pcs/fdr_mask.nii.gz",
        mean_w="results/stats/{model}/pcs/mean_w.nii.gz",
        basis="results/stats/{model}/pcs/basis.h5",
        loadings="results/stats/{model}/pcs/loadings.tsv",
        summary="results/stats/{model}/pcs/summary.json",
    log:
        "results/logs/pc_stats/{model}.log",
    conda:
        "../envs/encoding.yaml"
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        subjects=lambda wc: fmri_subjects(wc.model),
        spaces=lambda wc: MODELS[wc.model]["features"],
        pca_variance=lambda wc: MODELS[wc.model]["pca_variance"],
        fdr_alpha=config["stats"]["fdr_alpha"],
        min_subjects=config["stats"]["min_subjects"],
    script:
        "../scripts/pc_stats.py"
