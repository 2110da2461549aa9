"""Train the Sensorium-style ViViT + (q)LoRA encoder on the configured mice; score held-out trials."""

import os
import shutil
from pathlib import Path

import torch

from neurovid.deep.sensorium import RunSource, load_neurovid_mouse, load_sensorium_mouse
from neurovid.deep.vivit_lora import fit_sensorium, settings_from_config, write_outputs
from neurovid.io import provenance
from neurovid.logs import script_logger

log = script_logger(snakemake, "train_sensorium")
torch.set_num_threads(snakemake.threads)
section = dict(snakemake.params.settings)
model_settings, data_settings, train_settings = settings_from_config(
    section, seed=int(snakemake.params.seed)
)
mice = [
    load_sensorium_mouse(
        folder, mouse, test_tiers=data_settings.test_tiers, train_tiers=data_settings.train_tiers
    )
    for mouse, folder in dict(section.get("folders") or {}).items()
]
for subject, runs in dict(snakemake.params.subjects).items():
    sources = [RunSource(r["recording"], r["responses"], r["stimulus"], r["videos"]) for r in runs]
    mice.append(
        load_neurovid_mouse(
            subject,
            sources,
            frame_size=tuple(section.get("frame_size", (36, 64))),
            trial_frames=int(section.get("trial_frames", 300)),
            test_tier=data_settings.test_tiers[0],
        )
    )
inputs = {
    f"{name}/{i}": path
    for name in ("tiers", "responses", "videos")
    for i, path in enumerate(snakemake.input.get(name, []))
}
record = provenance(
    "train_sensorium",
    {**section, "seed": int(snakemake.params.seed), "subjects": dict(snakemake.params.subjects)},
    inputs,
    ("torch", "transformers", "peft", "bitsandbytes"),
)
# Checkpoints live in training.partial/ while training (kept if the job dies, so a
# re-run resumes) and become the `training` output when everything is written.
training = Path(snakemake.output.training)
partial = training.with_name("training.partial")
result = fit_sensorium(
    mice, model_settings, data_settings, train_settings, partial, provenance=record, logger=log
)
write_outputs(
    result,
    partial,
    model_path=snakemake.output.model,
    metrics_path=snakemake.output.metrics,
    figure_path=snakemake.output.figure,
    summary_path=snakemake.output.summary,
    score_paths={Path(path).stem: path for path in snakemake.output.scores},
    provenance=record,
)
shutil.rmtree(training, ignore_errors=True)
os.replace(partial, training)
log.info("wrote %s", ", ".join(str(path) for path in snakemake.output))
