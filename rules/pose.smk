# Pose: DeepLabCut 3 (PyTorch engine) in its own env (envs/pose.yaml: DLC needs pandas<3).
# Config `pose:`; off while `pose.project` is empty. Helpers (rules/common.smk):
# pose_settings(), pose_train_settings(), pose_source(), pose_labels(), pose_model(),
# pose_video.


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
# labelled frames, in a copy: one folder, results/pose/model/project (the user's project is
# not written to); the pose rule then analyses with that copy.
# Between-workflow cache (rules/features.smk): the folder names no path of this workflow
# (project_path: ., relative paths, marker trained.json; neurovid.pose.store_trained_project)
# and the pose rule analyses a private working copy of it (neurovid.pose.private_project),
# so a model served as a symlink into the shared cache is never written to. The key: the
# project's config.yaml and labels (by content), the training settings, the seed, the code
# digest and the pose env's pins. "omit-software", as the other cached rules: the
# `software` param puts the pins in the key whether DeepLabCut runs in envs/pose.yaml
# (--sdm conda) or in .venv-pose (constraints-pose.txt, the same pins), where `True`
# ("all") would hash the env file under --sdm conda only. No `benchmark:` (forbidden with
# `cache:`); the log has the training's progress and time.
rule pose_train:
    input:
        project=pose_source(),
        labels=pose_labels(),
    output:
        project=directory("results/pose/model/project"),
    log:
        "results/logs/pose/train.log",
    cache: "omit-software"
    conda:
        "../envs/pose.yaml"
    threads: 2
    resources:
        **gpu_resources(),
        mem_mb=12000,
        runtime=720,
    params:
        settings=pose_train_settings(),
        seed=config["seed"],
        software=env_pins("pose"),
    script:
        "../scripts/pose_train.py"
