# The results summary a scientist reads first (neurovid.summary): per model and subject the
# held-out scores, the group map's significant voxels and peaks, the variance partition, and
# the behavior scores; the report's front page (report/workflow.rst includes front.rst).


rule summary:
    input:
        unpack(summary_inputs),
    output:
        # First in the report's category list; its caption and the front page show front.rst.
        table=report(
            "results/summary/summary.tsv",
            category="0. Summary",
            caption="../report/summary.rst",
        ),
        sidecar="results/summary/summary.json",
        front="results/summary/front.rst",
    log:
        "results/logs/summary.log",
    conda:
        "../envs/summary.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        models=[model for model, _ in model_subject_pairs()],
        subjects=[subject for _, subject in model_subject_pairs()],
        stats_models=summary_stats_models(),
        figures=lambda wc: report_figures(),
    script:
        "../scripts/summary.py"
