# Features: motion energy (pymoten) and learned extractors (torch), streamed over the standardized video.
#
# Between-workflow cache (README: "Sharing features and models between projects"): these
# rules, and the trained behavior models (rules/behavior.smk), carry `cache:`, so that
# `snakemake --cache` with $SNAKEMAKE_OUTPUT_CACHE set takes their outputs from any
# workflow directory that computed them from the same inputs and parameters. Snakemake
# keys an entry on a hash of the script's text, the params (here `settings`, the library
# digest `code` of rules/common.smk and `software`), the input files no rule makes, and
# the same hash of every upstream job (the standardized video's, down to the raw file).
# Snakemake forbids `benchmark:` on a cached rule (a cache hit has no run time to record);
# the log records each job's progress. "omit-software": the envs are pinned, and the
# `software` param puts their pins in the hash however the software is deployed (this
# venv, --sdm conda), where "all" would hash the env file only under --sdm conda, text
# and comments included, and so split the cache between deployments. (Naming rules on the
# command line or in a profile, `--cache motion_energy ...`, which SLURM runs need, makes
# Snakemake cache them in mode "all" instead.)


rule motion_energy:
    input:
        video="results/video/{video}/standard.mp4",
    output:
        "results/features/motion_energy/{video}.h5",
    log:
        "results/logs/motion_energy/{video}.log",
    cache: "omit-software"
    conda:
        "../envs/features.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        settings=config["features"]["motion_energy"],
        software=env_pins("features"),
    script:
        "../scripts/motion_energy.py"


# Motion SVD (Facemap's method) of a face/body video, on request (not in
# `features.extractors`). It reads the standardized video: a constant frame rate (the
# behavior camera's dropped frames and variable rate are resampled, so `times` are on the
# same clock as the other features of the video) and a fixed, small frame size (the
# fit's cost and memory scale with its pixels); `roi` is in its pixels.
rule motion_svd:
    input:
        video="results/video/{video}/standard.mp4",
    output:
        "results/features/motion_svd/{video}.h5",
    log:
        "results/logs/motion_svd/{video}.log",
    cache: "omit-software"
    conda:
        "../envs/features.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        settings=extractor_settings("motion_svd"),
        software=env_pins("features"),
    script:
        "../scripts/motion_svd.py"


# Learned extractors (torch): streamed decode -> model -> HDF5, on the GPU when the
# job sees one (bf16 autocast), else on the CPU (fp32, `threads`). Enable them in
# config `features.extractors` or an encoding model's `features`.


rule vit_features:
    input:
        video="results/video/{video}/standard.mp4",
    output:
        "results/features/vit/{video}.h5",
    log:
        "results/logs/vit/{video}.log",
    cache: "omit-software"
    conda:
        "../envs/features.yaml"
    threads: 2
    resources:
        **gpu_resources(),
        mem_mb=6000,
        runtime=120,
    params:
        settings=extractor_settings("vit"),
        software=env_pins("features"),
        precision=compute_precision(extractor_settings("vit").get("device", "auto")),
    script:
        "../scripts/vit_features.py"


rule vivit_features:
    input:
        video="results/video/{video}/standard.mp4",
    output:
        "results/features/vivit/{video}.h5",
    log:
        "results/logs/vivit/{video}.log",
    cache: "omit-software"
    conda:
        "../envs/features.yaml"
    threads: 2
    resources:
        **gpu_resources(),
        mem_mb=8000,
        runtime=240,
    params:
        settings=extractor_settings("vivit"),
        software=env_pins("features"),
        precision=compute_precision(extractor_settings("vivit").get("device", "auto")),
    script:
        "../scripts/vivit_features.py"


rule slowfast_features:
    input:
        video="results/video/{video}/standard.mp4",
    output:
        "results/features/slowfast/{video}.h5",
    log:
        "results/logs/slowfast/{video}.log",
    cache: "omit-software"
    conda:
        "../envs/features.yaml"
    threads: 2
    resources:
        **gpu_resources(),
        mem_mb=8000,
        runtime=240,
    params:
        settings=extractor_settings("slowfast"),
        software=env_pins("features"),
        precision=compute_precision(
            extractor_settings("slowfast").get("device", "auto")
        ),
    script:
        "../scripts/slowfast_features.py"


rule qwen2vl_features:
    input:
        video="results/video/{video}/standard.mp4",
    output:
        "results/features/qwen2vl/{video}.h5",
    log:
        "results/logs/qwen2vl/{video}.log",
    cache: "omit-software"
    conda:
        "../envs/features.yaml"
    threads: 2
    resources:
        **gpu_resources(),
        mem_mb=24000,
        runtime=480,
    params:
        settings=extractor_settings("qwen2vl"),
        software=env_pins("features"),
        precision=compute_precision(extractor_settings("qwen2vl").get("device", "auto")),
    script:
        "../scripts/qwen2vl_features.py"


# Sound of the stimulus (src/neurovid/features/audio.py): the audio track of the ORIGINAL
# video (the sheet's path; standard.mp4 has no audio), on the standardized video's clock
# (time 0 = the original's first video frame), rows while their centre is inside the
# standardized video (`clock`). A video without an audio track fails with an error naming
# it; these rules run only for videos of models or `extractors` that name the space.


rule audio_mel:
    input:
        video=video_path,
        clock="results/video/{video}/standard.mp4",
    output:
        "results/features/audio_mel/{video}.h5",
    log:
        "results/logs/audio_mel/{video}.log",
    cache: "omit-software"
    conda:
        "../envs/features.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        settings=extractor_settings("audio_mel"),
        software=env_pins("features"),
    script:
        "../scripts/audio_mel.py"


rule audio_encoder:
    input:
        video=video_path,
        clock="results/video/{video}/standard.mp4",
    output:
        "results/features/audio_encoder/{video}.h5",
    log:
        "results/logs/audio_encoder/{video}.log",
    cache: "omit-software"
    conda:
        "../envs/features.yaml"
    threads: 2
    resources:
        **gpu_resources(),
        mem_mb=6000,
        runtime=120,
    params:
        settings=extractor_settings("audio_encoder"),
        software=env_pins("features"),
        precision=compute_precision(
            extractor_settings("audio_encoder").get("device", "auto")
        ),
    script:
        "../scripts/audio_encoder.py"
