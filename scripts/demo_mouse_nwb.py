"""One simulated spiking mouse run of the demo as NWB -> results/demo/mice/{recording}.nwb (+ .truth.h5):
units (spike times), running speed, stimulus presentations, on a clock that starts before the recording."""

from neurovid import io
from neurovid.demo import nwb, responses
from neurovid.logs import script_logger

log = script_logger(snakemake, "demo_mouse_nwb")
p = snakemake.params
events, feature_sets, table, run_truth = responses.simulate_mouse_files(
    p.timeline,
    list(snakemake.input.features),
    snakemake.input.truth,
    modality="spikes",
    sampling_rate=float(p.sampling_rate),
    tail_s=float(p.tail_s),
    seed=list(p.seed),
)
log.info("simulated %d samples x %d neurons", len(table), table.shape[1] - 1)
params = {
    "timeline": p.timeline,
    "sampling_rate": float(p.sampling_rate),
    "tail_s": float(p.tail_s),
    "start_s": float(p.start_s),
    "seed": list(p.seed),
}
inputs = {"truth": snakemake.input.truth}
inputs.update(
    {f"features_{e.video_id}": f for e, f in zip(events, snakemake.input.features, strict=True)}
)
prov = io.provenance("demo_mouse_nwb", params, inputs, ("pynwb",))
names = list(table.columns[1:])
nwb.write_mouse_nwb(
    snakemake.output.nwb,
    subject=p.subject,
    recording=p.recording,
    counts=table[names].to_numpy(),
    names=names,
    running_speed=run_truth["running_speed"],
    events=events,
    durations={v: fs.duration for v, fs in feature_sets.items()},
    sampling_rate=float(p.sampling_rate),
    start_s=float(p.start_s),
    seed=list(p.seed),
    provenance=prov,
)
attrs = {"provenance": prov, "modality": "spikes", "start_s": float(p.start_s)}
io.write_h5(snakemake.output.truth, run_truth, attrs, compression="gzip")
log.info("wrote %s and %s", snakemake.output.nwb, snakemake.output.truth)
