"""Generate a natural-like demo movie (pink-noise scenes, camera motion, moving objects)."""

import time

from neurovid.demo.stimuli import generate_movie, movie_seed
from neurovid.io import provenance
from neurovid.logs import script_logger

log = script_logger(snakemake, "demo_movie")
size = snakemake.params.size
params = {
    "seconds": snakemake.params.seconds,
    "width": size["width"],
    "height": size["height"],
    "fps": size["fps"],
    "seed": list(snakemake.params.seed),
}
log.info(
    "generating %s: %s (integer seed %d)", snakemake.output[0], params, movie_seed(params["seed"])
)
start = time.perf_counter()
n = generate_movie(
    snakemake.output[0],
    **params,
    metadata=provenance("demo_movie", params, packages=("imageio-ffmpeg",)),
)
log.info("wrote %d frames in %.1f s", n, time.perf_counter() - start)
