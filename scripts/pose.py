"""DeepLabCut pose of one video: results/pose/{video}.h5 and .csv, in DeepLabCut's own format.

The model is pose_train's trained folder (often a symlink into the shared between-workflow
cache) or the user's project; DeepLabCut analyses a private working copy of it and never
writes to it (neurovid.pose.analyze_video). Runs in the DeepLabCut env: the conda env
(--sdm conda), else it hands itself to the pose interpreter (.venv-pose,
$NEUROVID_POSE_PYTHON; neurovid.pose.run_in_pose_env).
"""

import numpy as np

from neurovid.io import provenance
from neurovid.logs import script_logger
from neurovid.pose import (
    analyze_video,
    check_project,
    load_project,
    output_to_log,
    project_bodyparts,
    project_config_of,
    read_dlc_pose,
    run_in_pose_env,
)


def main() -> None:
    log = script_logger(snakemake, "pose")
    settings = dict(snakemake.params.settings)
    project = project_config_of(snakemake.input.model)
    shuffle = int(settings.get("shuffle", 1))
    trainingsetindex = int(settings.get("trainingsetindex", 0))
    snapshot = check_project(project, shuffle, settings.get("snapshot"), trainingsetindex)
    record = provenance(
        "pose",
        settings,
        {"video": snakemake.input.video, "project": project, "snapshot": snapshot},
        ("deeplabcut", "torch", "pandas"),
    )
    with output_to_log(log):
        h5_path, csv_path = analyze_video(
            project,
            snakemake.input.video,
            snakemake.output.h5,
            shuffle=shuffle,
            snapshot=settings.get("snapshot"),
            trainingsetindex=trainingsetindex,
            batch_size=settings.get("batch_size"),
            device=settings.get("device", "auto"),
            threads=snakemake.threads,
            provenance=record,
        )
    pose, bodyparts, scorer = read_dlc_pose(h5_path, project_bodyparts(load_project(project)))
    log.info("wrote %s and %s: %d frames, scorer %s", h5_path, csv_path, len(pose), scorer)
    for k, name in enumerate(bodyparts):
        log.info("%s: median likelihood %.3f", name, float(np.nanmedian(pose[:, k, 2])))


if not run_in_pose_env(snakemake, __file__):
    main()
