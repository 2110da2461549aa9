"""Train the DeepLabCut project's shuffle on its labelled frames, in a copy under results/pose/model/.

Writes the trained copy (config.yaml, training-datasets/, dlc-models-pytorch/; the
labels are linked) and a JSON marker naming its config and snapshot, which the pose
rule takes as input. Runs in the DeepLabCut env like scripts/pose.py.
"""

from pathlib import Path

from neurovid.io import provenance, write_json
from neurovid.logs import script_logger
from neurovid.pose import (
    output_to_log,
    prepare_training_project,
    run_in_pose_env,
    train_from_labels,
)


def main() -> None:
    log = script_logger(snakemake, "pose_train")
    settings = dict(snakemake.params.settings)
    train = dict(settings.get("train") or {})
    shuffle = int(settings.get("shuffle", 1))
    trainingsetindex = int(settings.get("trainingsetindex", 0))
    config_path = prepare_training_project(snakemake.input.project, snakemake.output.project)
    log.info("training a copy of %s in %s", snakemake.input.project, config_path.parent)
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
    write_json(
        snakemake.output.marker,
        {
            "config": str(config_path),
            "shuffle": shuffle,
            "trainingsetindex": trainingsetindex,
            "snapshot": str(snapshot),
            "provenance": provenance(
                "pose_train",
                {**train, "shuffle": shuffle, "trainingsetindex": trainingsetindex},
                {"project": snakemake.input.project, "snapshot": Path(snapshot)},
                ("deeplabcut", "torch", "pandas"),
            ),
        },
    )
    log.info("trained %s", snapshot)


if not run_in_pose_env(snakemake, __file__):
    main()
