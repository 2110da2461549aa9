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
        # the stimulus timeline's videos; a body feature space's behavior video or channels
        features=align_features,
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
        timeline=align_timeline,
        source=align_source,
        # body feature spaces (neurovid.body) must cover every sample
        require_cover=lambda wc: body.is_body_space(wc.extractor),
        field=lambda wc: body.timeline_field(wc.extractor),
    script:
        "../scripts/align.py"


# The recording's own behavior channels (NWB `nwb_behavior`, ingested into the responses
# file, or the sheet's `behavior` table) as the body feature space `behavior_channels`,
# on the response samples (neurovid.body; gaps filled).
rule behavior_channels:
    input:
        unpack(behavior_channel_inputs),
    output:
        "results/features/behavior_channels/{recording}.h5",
    log:
        "results/logs/behavior_channels/{recording}.log",
    conda:
        "../envs/neural.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        offset=lambda wc: behavior_offset(wc.recording),
        sheet=lambda wc: recording_sheet(wc.recording),
    script:
        "../scripts/behavior_channels.py"
