# Neural ingest (fMRI NIfTI, spike/calcium tables -> one HDF5 contract) and
# alignment of features to each recording's timebase.
import neurovid.denoise as denoise


rule ingest:
    input:
        # the recording, its `confounds` table when the sheet gives one, atlas files
        unpack(lambda wc: denoise.ingest_inputs(RECORDING_ROWS[wc.recording], config)),
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
        subject=lambda wc: recording_value(wc.recording, "subject"),
        modality=lambda wc: recording_value(wc.recording, "modality"),
        tr=lambda wc: recording_value(wc.recording, "tr"),
        sampling_rate=lambda wc: recording_value(wc.recording, "sampling_rate"),
        fmri=config["neural"]["fmri"],
        nwb=nwb_params,
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
        timeline=stimulus_timeline,
        source=lambda wc: timeline_source(wc.recording),
    script:
        "../scripts/align.py"
