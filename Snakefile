# neurovid: videos and recordings -> features -> encoding models -> group maps -> report.
# Run the demo:  snakemake --profile profiles/workstation
# Your data:     point `videos` / `recordings` in config.yaml at your sample sheets.


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/demo.smk"
include: "rules/video.smk"
include: "rules/features.smk"
include: "rules/neural.smk"
include: "rules/encoding.smk"
include: "rules/stats.smk"
include: "rules/figures.smk"
include: "rules/pose.smk"
include: "rules/behavior.smk"
include: "rules/deep.smk"
include: "rules/retina.smk"
include: "rules/summary.smk"


report: "report/workflow.rst"


rule all:
    default_target: True
    input:
        all_targets(),


# Every script rule's `code` param: the digest of the library its script imports
# (rules/common.smk), so that editing a module re-runs the jobs that run it.
declare_code(workflow.rules)
