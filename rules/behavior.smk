# Behavior videos (kind: behavior): pose -> kinematics, per-frame behavior labels
# (fine-tuned ViT), two-stage action localization (pose features, then Qwen2-VL on
# each candidate segment's clip), evaluation against annotations, and figures.
# Pose comes from the sheet's `pose` column (DeepLabCut, SLEAP, LightningPose, NWB
# ndx-pose or CalMS21 JSON; neurovid.behavior.pose_io) or from DeepLabCut (rules/pose.smk).
# Every behavior video's pose and kinematics also go out as NWB (rule pose_nwb).


rule kinematics:
    input:
        pose=pose_file,
        probe="results/video/{video}/probe.json",
    output:
        csv="results/kinematics/{video}.csv",
        summary="results/kinematics/{video}.json",
    log:
        "results/logs/kinematics/{video}.log",
    conda:
        "../envs/behavior.yaml"
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        settings=config["behavior"]["kinematics"],
        sheet=lambda wc: sheet_geometry(wc.video),
        fps=lambda wc: sheet_value(wc.video, "fps"),
        pose=lambda wc: pose_options(wc.video),
        videos_sheet=config["videos"],
    script:
        "../scripts/kinematics.py"


# The body feature space `kinematics` (neurovid.body): speed, acceleration and position
# in cm per frame of the behavior video, on its clock; align places it on a recording
# at the sheet's behavior_offset_s.
rule kinematics_features:
    input:
        csv="results/kinematics/{video}.csv",
        summary="results/kinematics/{video}.json",
    output:
        "results/features/kinematics/{video}.h5",
    log:
        "results/logs/kinematics_features/{video}.log",
    conda:
        "../envs/behavior.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/kinematics_features.py"


rule calms21_annotations:
    input:
        calms21_annotations,
    output:
        "results/behavior/annotations/{video}.csv",
    log:
        "results/logs/behavior/calms21_annotations_{video}.log",
    conda:
        "../envs/behavior.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        sequence=lambda wc: sheet_value(wc.video, "sequence"),
    script:
        "../scripts/calms21_annotations.py"


rule pose_nwb:
    input:
        pose=pose_file,
        kinematics="results/kinematics/{video}.csv",
        probe="results/video/{video}/probe.json",
        video=video_path,
    output:
        "results/nwb/{video}.nwb",
    log:
        "results/logs/behavior/pose_nwb_{video}.log",
    conda:
        "../envs/behavior.yaml"
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        video_id=lambda wc: wc.video,
        fps=lambda wc: sheet_value(wc.video, "fps"),
        pose=lambda wc: pose_options(wc.video),
        subject=lambda wc: {
            k: sheet_value(wc.video, k) for k in ("subject", "species", "sex", "age")
        },
        videos_sheet=config["videos"],
    script:
        "../scripts/pose_nwb.py"


rule labeled_frames:
    input:
        unpack(labeled_frames_inputs),
    output:
        directory("results/behavior/classifier/frames"),
    log:
        "results/logs/behavior/labeled_frames.log",
    conda:
        "../envs/behavior.yaml"
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        videos=config["behavior"]["classifier"]["frames_from"],
        fps=lambda wc: [
            sheet_value(v, "fps")
            for v in config["behavior"]["classifier"]["frames_from"]
        ],
        per_class=config["behavior"]["classifier"]["frames_per_class"],
        seed=config["seed"],
    script:
        "../scripts/labeled_frames.py"


rule train_frame_classifier:
    input:
        frames=classifier_frames(),
        model=local_model(config["behavior"]["classifier"]["model"]),
    output:
        directory("results/behavior/classifier/model"),
    log:
        "results/logs/behavior/train_frame_classifier.log",
    # Between-workflow cache (rules/features.smk): a frames folder of your own
    # (`classifier.frames`) is not a file Snakemake can hash, so the model is cached only
    # when the workflow draws the frames itself (rule labeled_frames).
    cache: False if config["behavior"]["classifier"]["frames"] else "omit-software"
    conda:
        "../envs/behavior.yaml"
    threads: behavior_threads()
    resources:
        **gpu_resources(),
        mem_mb=8000,
        runtime=120,
    params:
        settings=config["behavior"]["classifier"],
        seed=config["seed"],
        software=env_pins("behavior"),
        precision=compute_precision(config["behavior"]["classifier"]["device"]),
    script:
        "../scripts/train_frame_classifier.py"


rule behavior_frames:
    input:
        video=video_path,
        model="results/behavior/classifier/model",
    output:
        csv="results/behavior/{video}.frames.csv",
        summary="results/behavior/{video}.frames.json",
    log:
        "results/logs/behavior/frames_{video}.log",
    benchmark:
        "results/benchmarks/behavior/frames_{video}.tsv"
    conda:
        "../envs/behavior.yaml"
    threads: behavior_threads()
    resources:
        **gpu_resources(),
        mem_mb=4000,
        runtime=60,
    params:
        settings=config["behavior"]["classifier"],
    script:
        "../scripts/behavior_frames.py"


rule train_actions:
    input:
        unpack(action_training_inputs),
        model=local_model(config["behavior"]["actions"]["embedder"]["model"]),
    output:
        # One multiext (a cached rule's several outputs must be one): stage1, stage2, summary.
        multiext(
            "results/behavior/actions/",
            stage1="stage1.joblib",
            stage2="stage2.joblib",
            summary="training.json",
        ),
    log:
        "results/logs/behavior/train_actions.log",
    cache: "omit-software"
    conda:
        "../envs/behavior.yaml"
    threads: behavior_threads()
    resources:
        **gpu_resources(),
        mem_mb=8000,
        runtime=120,
    params:
        videos=config["behavior"]["actions"]["train_videos"],
        fps=lambda wc: [
            sheet_value(v, "fps")
            for v in config["behavior"]["actions"]["train_videos"]
        ],
        pose=lambda wc: [
            pose_options(v) for v in config["behavior"]["actions"]["train_videos"]
        ],
        settings=config["behavior"]["actions"],
        software=env_pins("behavior"),
        precision=compute_precision(config["behavior"]["actions"]["embedder"]["device"]),
    script:
        "../scripts/train_actions.py"


rule actions:
    input:
        video=video_path,
        pose=pose_file,
        probe="results/video/{video}/probe.json",
        stage1="results/behavior/actions/stage1.joblib",
        stage2="results/behavior/actions/stage2.joblib",
        model=local_model(config["behavior"]["actions"]["embedder"]["model"]),
    output:
        csv="results/behavior/{video}.segments.csv",
        summary="results/behavior/{video}.segments.json",
    log:
        "results/logs/behavior/actions_{video}.log",
    benchmark:
        "results/benchmarks/behavior/actions_{video}.tsv"
    conda:
        "../envs/behavior.yaml"
    threads: behavior_threads()
    resources:
        **gpu_resources(),
        mem_mb=8000,
        runtime=60,
    params:
        settings=config["behavior"]["actions"],
        fps=lambda wc: sheet_value(wc.video, "fps"),
        pose=lambda wc: pose_options(wc.video),
    script:
        "../scripts/actions.py"


rule behavior_evaluation:
    input:
        unpack(evaluation_inputs),
    output:
        report(
            "results/behavior/evaluation.tsv",
            category="Behavior",
            subcategory="Evaluation",
            caption="../report/behavior_evaluation.rst",
        ),
        "results/behavior/evaluation.json",
    log:
        "results/logs/behavior/evaluation.log",
    conda:
        "../envs/behavior.yaml"
    params:
        videos=held_out_videos(),
        fps=[sheet_value(v, "fps") for v in held_out_videos()],
        iou=config["behavior"]["actions"]["iou"],
    script:
        "../scripts/behavior_evaluation.py"


rule figure_behavior:
    input:
        unpack(behavior_figure_inputs),
    output:
        ethogram=report(
            "results/figures/behavior/{video}/ethogram.png",
            category="Behavior",
            subcategory="{video}",
            caption="../report/behavior_ethogram.rst",
        ),
        trajectory=report(
            "results/figures/behavior/{video}/trajectory.png",
            category="Behavior",
            subcategory="{video}",
            caption="../report/behavior_trajectory.rst",
        ),
        speed=report(
            "results/figures/behavior/{video}/speed.png",
            category="Behavior",
            subcategory="{video}",
            caption="../report/behavior_speed.rst",
        ),
        segments=report(
            "results/figures/behavior/{video}/segments.png",
            category="Behavior",
            subcategory="{video}",
            caption="../report/behavior_segments.rst",
        ),
    log:
        "results/logs/figures/behavior/{video}.log",
    conda:
        "../envs/behavior.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        video=lambda wc: wc.video,
        fps=lambda wc: sheet_value(wc.video, "fps"),
    script:
        "../scripts/figure_behavior.py"


rule figure_confusion:
    input:
        model="results/behavior/classifier/model",
    output:
        report(
            "results/figures/behavior/confusion.png",
            category="Behavior",
            subcategory="Frame classifier",
            caption="../report/behavior_confusion.rst",
        ),
    log:
        "results/logs/figures/behavior/confusion.log",
    conda:
        "../envs/behavior.yaml"
    script:
        "../scripts/figure_confusion.py"
