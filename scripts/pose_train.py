"""Train the DeepLabCut project's shuffle on its labelled frames: results/pose/model/project.

The output is one folder, the trained copy (config.yaml, training-datasets/,
dlc-models-pytorch/ and the marker trained.json), written atomically and naming no path
of this workflow (neurovid.pose.store_trained_project), so Snakemake's between-workflow
cache can serve it to other workflows. Runs in the DeepLabCut env like scripts/pose.py.
"""

from neurovid.io import atomic_dir, provenance
from neurovid.logs import script_logger
from neurovid.pose import (
    output_to_log,
    prepare_training_project,
    run_in_pose_env,
    store_trained_project,
    train_from_labels,
)


def main() -> None:
    log = script_logger(snakemake, "pose_train")
    settings = dict(snakemake.params.settings)
    train = dict(settings.get("train") or {})
    shuffle = int(settings.get("shuffle", 1))
    trainingsetindex = int(settings.get("trainingsetindex", 0))
    with atomic_dir(snakemake.output.project) as folder:
        config_path = prepare_training_project(snakemake.input.project, folder)
        log.info("training a copy of %s in %s", snakemake.input.project, folder)
        with output_to_log(log):
            snapshot = train_from_labels(
                config_path,
                shuffle=shuffle,
                trainingsetindex=trainingsetindex,
                net_type=train.get("net_type", "resnet_50"),
                epochs=int(train.get("epochs", 200)),
                from_scratch=bool(train.get("from_scratch", False)),
                max_frames=train.get("max_frames"),
                batch_size=train.get("batch_size"),
                device=settings.get("device", "auto"),
                seed=int(snakemake.params.seed),
                threads=snakemake.threads,
            )
        marker = store_trained_project(
            folder,
            snapshot,
            shuffle=shuffle,
            trainingsetindex=trainingsetindex,
            provenance=provenance(
                "pose_train",
                {**train, "shuffle": shuffle, "trainingsetindex": trainingsetindex},
                {"project": snakemake.input.project},
                ("deeplabcut", "torch", "pandas"),
            ),
        )
    log.info("trained %s in %s", marker["snapshot"], snakemake.output.project)


if not run_in_pose_env(snakemake, __file__):
    main()
