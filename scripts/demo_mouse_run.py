"""One simulated mouse run (spikes or calcium) of the demo as a table -> results/demo/mice/{recording}.tsv
(+ .truth.h5), and its running speed as the rig's treadmill log ({recording}.behavior.tsv)."""

from neurovid import io
from neurovid.demo import responses
from neurovid.logs import script_logger

log = script_logger(snakemake, "demo_mouse_run")
p = snakemake.params
events, _, table, run_truth = responses.simulate_mouse_files(
    p.timeline,
    list(snakemake.input.features),
    snakemake.input.truth,
    modality=p.modality,
    sampling_rate=float(p.sampling_rate),
    tail_s=float(p.tail_s),
    seed=list(p.seed),
)
log.info("simulated %d samples x %d neurons (%s)", len(table), table.shape[1] - 1, p.modality)
params = {
    "timeline": p.timeline,
    "modality": p.modality,
    "sampling_rate": float(p.sampling_rate),
    "tail_s": float(p.tail_s),
    "seed": list(p.seed),
    "behavior_offset_s": float(p.behavior_offset_s),
}
inputs = {"truth": snakemake.input.truth}
inputs.update(
    {f"features_{e.video_id}": f for e, f in zip(events, snakemake.input.features, strict=True)}
)
attrs = {"provenance": io.provenance("demo_mouse_run", params, inputs), "modality": p.modality}
io.write_table(snakemake.output.table, table, provenance=attrs["provenance"])
treadmill = responses.treadmill_table(
    run_truth["times"], run_truth["running_speed"], float(p.behavior_offset_s)
)
io.write_table(snakemake.output.behavior, treadmill, provenance=attrs["provenance"])
io.write_h5(snakemake.output.truth, run_truth, attrs, compression="gzip")
log.info(
    "wrote %s, %s and %s",
    snakemake.output.table,
    snakemake.output.behavior,
    snakemake.output.truth,
)
