# Features: motion energy (pymoten), streamed over the standardized video.


rule motion_energy:
    input:
        video="results/video/{video}/standard.mp4",
        code=lib("video", "features/motion_energy"),
    output:
        "results/features/motion_energy/{video}.h5",
    params:
        settings=config["features"]["motion_energy"],
    log:
        "results/logs/motion_energy/{video}.log",
    benchmark:
        "results/benchmarks/motion_energy/{video}.tsv"
    threads: 1
    conda:
        "../envs/features.yaml"
    resources:
        mem_mb=2000,
        runtime=60,
    script:
        "../scripts/motion_energy.py"
