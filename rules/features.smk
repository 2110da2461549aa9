# Features: motion energy (pymoten) and learned extractors (torch), streamed over the standardized video.


rule motion_energy:
    input:
        video="results/video/{video}/standard.mp4",
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
    benchmark:
        "results/benchmarks/vit/{video}.tsv"
    conda:
        "../envs/features.yaml"
    threads: 2
    resources:
        **gpu_resources(),
        mem_mb=6000,
        runtime=120,
    params:
        settings=extractor_settings("vit"),
    script:
        "../scripts/vit_features.py"


rule vivit_features:
    input:
        video="results/video/{video}/standard.mp4",
    output:
        "results/features/vivit/{video}.h5",
    log:
        "results/logs/vivit/{video}.log",
    benchmark:
        "results/benchmarks/vivit/{video}.tsv"
    conda:
        "../envs/features.yaml"
    threads: 2
    resources:
        **gpu_resources(),
        mem_mb=8000,
        runtime=240,
    params:
        settings=extractor_settings("vivit"),
    script:
        "../scripts/vivit_features.py"


rule slowfast_features:
    input:
        video="results/video/{video}/standard.mp4",
    output:
        "results/features/slowfast/{video}.h5",
    log:
        "results/logs/slowfast/{video}.log",
    benchmark:
        "results/benchmarks/slowfast/{video}.tsv"
    conda:
        "../envs/features.yaml"
    threads: 2
    resources:
        **gpu_resources(),
        mem_mb=8000,
        runtime=240,
    params:
        settings=extractor_settings("slowfast"),
    script:
        "../scripts/slowfast_features.py"


rule qwen2vl_features:
    input:
        video="results/video/{video}/standard.mp4",
    output:
        "results/features/qwen2vl/{video}.h5",
    log:
        "results/logs/qwen2vl/{video}.log",
    benchmark:
        "results/benchmarks/qwen2vl/{video}.tsv"
    conda:
        "../envs/features.yaml"
    threads: 2
    resources:
        **gpu_resources(),
        mem_mb=24000,
        runtime=480,
    params:
        settings=extractor_settings("qwen2vl"),
    script:
        "../scripts/qwen2vl_features.py"
