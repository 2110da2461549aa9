# Neural ingest (fMRI NIfTI, spike/calcium tables -> one HDF5 contract) and
# alignment of features to each recording's timebase.


rule ingest:
    input:
        recording=recording_path,
        code=lib("neural"),
    output:
        "results/neural/{recording}.h5",
    log:
        "results/logs/ingest/{recording}.log",
    conda:
        "../envs/neural.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        recording_id=lambda wc: wc.recording,
        subject=lambda wc: RECORDINGS.at[wc.recording, "subject"],
        modality=lambda wc: RECORDINGS.at[wc.recording, "modality"],
        tr=lambda wc: RECORDINGS.at[wc.recording, "tr"] if "tr" in RECORDINGS else None,
        sampling_rate=lambda wc: (
            RECORDINGS.at[wc.recording, "sampling_rate"]
            if "sampling_rate" in RECORDINGS
            else None
        ),
        fmri=config["neural"]["fmri"],
    script:
        "../scripts/ingest.py"


rule align:
    input:
        responses="results/neural/{recording}.h5",
        features=lambda wc: expand(
            "results/features/{extractor}/{video}.h5",
            extractor=wc.extractor,
            video=timeline_videos(wc.recording),
        ),
        code=lib("align"),
    output:
        "results/aligned/{extractor}/{recording}.h5",
    log:
        "results/logs/align/{extractor}/{recording}.log",
    conda:
        "../envs/encoding.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        timeline=lambda wc: [
            [e.video_id, e.onset] for e in RECORDINGS.at[wc.recording, "timeline"]
        ],
    script:
        "../scripts/align.py"
