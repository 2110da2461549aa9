# Input functions and wildcard constraints of the demo's rules (rules/demo.smk).


def demo_timeline(wildcards):
    """[[video_id, onset], ...] a demo recording simulates: the sheet's `demo_stimulus`
    plan where set (NWB rows, whose `stimulus` names a table of the file the demo
    writes), else the recording's stimulus timeline (sheet or BIDS rows)."""
    plan = recording_value(wildcards.recording, "demo_stimulus")
    if not (isinstance(plan, str) and plan.strip()):
        return stimulus_timeline(wildcards)
    where = f"{config['recordings']} [demo_stimulus] of {wildcards.recording}"
    events = sheets.parse_stimulus(plan, set(VIDEO_ROWS), where=where)
    return [[e.video_id, e.onset] for e in events]


def demo_timeline_features(wildcards):
    return [
        ancient(f"results/features/motion_energy/{video}.h5")
        for video, _ in demo_timeline(wildcards)
    ]


def demo_timeline_audio(wildcards):
    """The sound features (audio_mel) of the videos an fMRI run shows: the auditory ROI's drive."""
    return [
        ancient(f"results/features/audio_mel/{video}.h5")
        for video, _ in demo_timeline(wildcards)
    ]


def demo_reference_features(wildcards, space="motion_energy"):
    """A subject's truth is standardized on the first video of its first run."""
    first_run = SimpleNamespace(recording=SUBJECT_RUNS[wildcards.subject][0])
    return ancient(f"results/features/{space}/{demo_timeline(first_run)[0][0]}.h5")


def demo_reference_audio(wildcards):
    """fMRI subjects: the sound features of the reference video (the auditory ROI's truth)."""
    if subject_modality(wildcards.subject) != "fmri":
        return []
    return [demo_reference_features(wildcards, "audio_mel")]


def demo_mouse_recordings(extension):
    """Wildcard constraint: the sheet's mouse recordings whose path ends in `extension`."""
    ids = [
        rec
        for rec, row in RECORDING_ROWS.items()
        if row["modality"] != "fmri" and str(row["path"]).endswith(extension)
    ]
    return "|".join(ids) or "(?!)"


def demo_behavior_offset(recording):
    """The sheet's behavior_offset_s of a demo mouse run (its treadmill log's clock), 0 if empty."""
    return float(recording_cell(recording, "behavior_offset_s") or 0.0)
