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
