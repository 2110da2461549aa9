# Features: motion energy (pymoten), streamed over the standardized video.


rule motion_energy:
    input:
        video="results/video/{video}/standard.mp4",
        code=lib("video", "features/motion_energy"),
    output:
        "results/features/motion_energy/{video}.h5",
    log:
        "results/logs/motion_energy/{video}.log",
    benchmark:
        "results/benchmarks/motion_energy/{video}.tsv"
    conda:
        "../envs/features.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        settings=config["features"]["motion_energy"],
    script:
        "../scripts/motion_energy.py"
