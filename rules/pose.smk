# Pose: DeepLabCut 3 (PyTorch engine) in its own env (envs/pose.yaml: DLC needs pandas<3).
# Config `pose:`; off while `pose.project` is empty. Helpers (rules/common.smk):
# pose_settings(), pose_source(), pose_labels(), pose_model(), pose_video.


rule pose:
    input:
        video=pose_video,
        model=pose_model(),
    output:
        h5="results/pose/{video}.h5",
        csv="results/pose/{video}.csv",
    log:
        "results/logs/pose/{video}.log",
    benchmark:
        "results/benchmarks/pose/{video}.tsv"
    conda:
        "../envs/pose.yaml"
    threads: 2
    resources:
        **gpu_resources(),
        mem_mb=6000,
        runtime=120,
    params:
        settings=pose_settings(),
    script:
        "../scripts/pose.py"


# Optional (pose.train.enabled): create_training_dataset + train_network on the project's
# labelled frames, in a copy under results/pose/model/project (the user's project is not
# written to); the pose rule then analyses with that copy.
# Not marked `cache:` (between-workflow cache, rules/features.smk): its two outputs would
# have to become one directory (pose_model() in rules/common.smk and the marker reader in
# neurovid.pose), and the trained copy names absolute paths of this workflow directory.
rule pose_train:
    input:
        project=pose_source(),
        labels=pose_labels(),
    output:
        project=directory("results/pose/model/project"),
        marker="results/pose/model/trained.json",
    log:
        "results/logs/pose/train.log",
    benchmark:
        "results/benchmarks/pose/train.tsv"
    conda:
        "../envs/pose.yaml"
    threads: 2
    resources:
        **gpu_resources(),
        mem_mb=12000,
        runtime=720,
    params:
        settings=pose_settings(),
        seed=config["seed"],
    script:
        "../scripts/pose_train.py"
