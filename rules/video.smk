# Video stage: probe -> standardized video (-> optional frames folder).


rule probe:
    input:
        video=video_path,
    output:
        "results/video/{video}/probe.json",
    log:
        "results/logs/probe/{video}.log",
    conda:
        "../envs/video.yaml"
    resources:
        mem_mb=500,
        runtime=10,
    script:
        "../scripts/probe.py"


rule standardize:
    input:
        video=video_path,
        probe="results/video/{video}/probe.json",
    output:
        "results/video/{video}/standard.mp4",
    log:
        "results/logs/standardize/{video}.log",
    benchmark:
        "results/benchmarks/standardize/{video}.tsv"
    conda:
        "../envs/video.yaml"
    threads: 2
    resources:
        mem_mb=1000,
        runtime=60,
    params:
        fps=config["video"]["fps"],
        width=config["video"]["width"],
        height=config["video"]["height"],
        color=config["video"]["color"],
        # ffmpeg / x264 pins: part of the between-workflow cache key of every feature job
        software=env_pins("video"),
        crf=config["video"]["crf"],
        fps_override=lambda wc: video_value(wc.video, "fps"),
    script:
        "../scripts/standardize.py"


rule frames:
    input:
        video="results/video/{video}/standard.mp4",
    output:
        directory("results/video/{video}/frames"),
    log:
        "results/logs/frames/{video}.log",
    conda:
        "../envs/video.yaml"
    resources:
        mem_mb=500,
        runtime=30,
    script:
        "../scripts/frames.py"
