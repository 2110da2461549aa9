"""Per-PC group weight maps and Kinetics word clouds of a SlowFast fMRI model (neurovid.interpret).

Synthetic: stimulus logits on the real Kinetics-400 classes with two planted class
patterns; 4 subjects whose voxel weights (each through its own PCA, split over FIR
delays, next to another feature space) are +pattern 1 in region A, -pattern 1 in
region B and noise elsewhere.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO, dry_run, namedlist, planned_inputs, run_script
from PIL import Image

from neurovid import io
from neurovid.encoding import fit_pca
from neurovid.errors import InputError
from neurovid.features.slowfast import kinetics400_classes
from neurovid.interpret import (
    class_basis,
    class_weights,
    interpreted_pcs,
    space_columns,
)
from neurovid.pc_figures import top_classes

CLASSES = kinetics400_classes()
# Pattern 1: music (positive) against water sports, planted NEGATIVE and more strongly
# (z-scored, a class's loading grows with its share of signal: ~0.99 correlation with the
# factor for water, ~0.9 for music), so the sign convention (largest |loading| positive)
# flips it: water sports end up positive.
MUSIC = ["playing guitar", "playing drums", "playing violin", "playing piano", "playing cello"]
MUSIC += ["playing flute", "playing harp"]
WATER = ["surfing water", "windsurfing", "kitesurfing", "water skiing", "jetskiing"]
DANCE = ["salsa dancing", "tango dancing", "dancing ballet", "tap dancing", "swing dancing"]
DANCE += ["breakdancing", "belly dancing", "robot dancing"]
SHAPE = (5, 6, 7)
N_VOXELS, REGION = 60, 15  # A = voxels 0-14, B = 15-29, null = 30-59
ME_WIDTH = 5  # a second feature space before slowfast in the design
DELAY_SHARES = (0.25, 0.5, 0.25)
N_SUBJECTS = 4


def pattern(weights: dict[str, float]) -> np.ndarray:
    out = np.zeros(len(CLASSES))
    for name, value in weights.items():
        out[CLASSES.index(name)] = value
    return out


PATTERN1 = pattern({**{n: 0.35 for n in MUSIC}, **{n: -1.0 for n in WATER}})
PATTERN2 = pattern({n: 0.8 for n in DANCE})


def simulated_logits(rng: np.random.Generator, n: int) -> np.ndarray:
    f1, f2 = rng.standard_normal(n), rng.standard_normal(n)
    offset = np.linspace(-2.0, 2.0, len(CLASSES))
    noise = rng.standard_normal((n, len(CLASSES)))
    return offset + 6 * f1[:, None] * PATTERN1 + 3 * f2[:, None] * PATTERN2 + noise


def write_project(tmp_path: Path, *, layer: str = "logits") -> dict:
    """Features files of 3 videos, and per subject weights.h5, scores.h5 and the first
    run's aligned files, as the workflow writes them; returns the script's inputs."""
    rng = np.random.default_rng(15)
    classes = []
    for v in range(3):
        logits = simulated_logits(rng, 200).astype(np.float32)
        path = tmp_path / "features" / "slowfast" / f"clip{v}.h5"
        io.write_h5(
            path,
            {
                "features": logits,
                "times": np.arange(200) * 0.5,
                "logits": logits,
                "class_names": np.asarray(CLASSES),
            },
            {"layer": "logits"},
        )
        classes.append(str(path))
    # Voxel weights are planted along pattern 1 in the z-units of the stimulus logits.
    scale = class_basis(classes, 0.5).scale
    planted = PATTERN1 / scale / np.linalg.norm(PATTERN1 / scale)
    cells = rng.choice(np.prod(SHAPE), N_VOXELS, replace=False)
    ijk = np.stack(np.unravel_index(cells, SHAPE), axis=1).astype(np.int32)
    mask = np.zeros(SHAPE, dtype=bool)
    mask[tuple(ijk.T)] = True
    weights, scores, aligned, truth = [], [], [], []
    for s in range(N_SUBJECTS):
        subject = f"sub-{s + 1:02d}"
        # The subject's own design: 5 other features, then the slowfast logits; its own PCA.
        X = np.concatenate(
            [rng.standard_normal((500, ME_WIDTH)), simulated_logits(rng, 500)], axis=1
        )
        pca = fit_pca(X, 1.0)
        amplitude = rng.uniform(0.9, 1.1, N_VOXELS)
        beta = 0.1 * rng.standard_normal((ME_WIDTH + len(CLASSES), N_VOXELS))  # z-units
        beta[ME_WIDTH:, :REGION] += amplitude[:REGION] * planted[:, None]
        beta[ME_WIDTH:, REGION : 2 * REGION] -= amplitude[REGION : 2 * REGION] * planted[:, None]
        beta[ME_WIDTH:] /= scale[:, None]  # -> per raw logit
        alpha = np.full(N_VOXELS, 10.0)
        if s == 1:  # a constant voxel: not modelled (weights 0, alpha NaN) -> missing
            beta[:, 40] = 0.0
            alpha[40] = np.nan
        truth.append(beta[ME_WIDTH:])
        summed = pca.components @ (beta * pca.scale[:, None])  # [P, N]
        W = np.concatenate([share * summed for share in DELAY_SHARES])
        folder = tmp_path / "encoding" / subject
        io.write_h5(
            folder / "weights.h5",
            {
                "weights": W.astype(np.float32),
                "intercept": np.zeros(N_VOXELS, np.float32),
                "pca_components": pca.components.astype(np.float32),
                "pca_explained_variance_ratio": pca.explained_variance_ratio.astype(np.float32),
                "feature_mean": pca.mean.astype(np.float32),
                "feature_scale": pca.scale.astype(np.float32),
                "delays_samples": np.asarray([1, 2, 3], dtype=np.int32),
                "alpha": alpha.astype(np.float32),
                "target_names": np.asarray([f"v{i}" for i in range(N_VOXELS)]),
            },
        )
        io.write_h5(
            folder / "scores.h5",
            {
                "r": rng.uniform(0, 0.3, N_VOXELS).astype(np.float32),
                "mask": mask,
                "affine": np.diag([3.0, 3.0, 3.0, 1.0]),
                "voxel_ijk": ijk,
            },
        )
        for space, width, this_layer in (
            ("motion_energy", ME_WIDTH, ""),
            ("slowfast", len(CLASSES), layer),
        ):
            path = tmp_path / "aligned" / space / f"{subject}_run-1.h5"
            io.write_features(path, np.zeros((4, width)), np.arange(4) * 2.0, {"layer": this_layer})
            aligned.append(str(path))
        weights.append(str(folder / "weights.h5"))
        scores.append(str(folder / "scores.h5"))
    return {
        "weights": weights,
        "scores": scores,
        "classes": classes,
        "aligned": aligned,
        "ijk": ijk,
        "truth": truth,
        "subjects": [f"sub-{s + 1:02d}" for s in range(N_SUBJECTS)],
    }


def _script(path: str, **named) -> None:
    smk = type("Smk", (), {})()
    for key, value in named.items():
        setattr(smk, key, value)
    run_script(str(REPO / "scripts" / path), init_globals={"snakemake": smk})


PC_FILES = {
    "t": "t.nii.gz",
    "p": "p.nii.gz",
    "q": "q.nii.gz",
    "fdr_mask": "fdr_mask.nii.gz",
    "mean_w": "mean_w.nii.gz",
    "basis": "basis.h5",
    "loadings": "loadings.tsv",
    "summary": "summary.json",
}


def run_pc_stats(tmp_path: Path, project: dict) -> dict[str, Path]:
    out = {k: tmp_path / "stats" / "pcs" / f for k, f in PC_FILES.items()}
    _script(
        "pc_stats.py",
        input=namedlist(
            weights=project["weights"],
            scores=project["scores"],
            classes=project["classes"],
            aligned=project["aligned"],
        ),
        output=namedlist(**{k: str(v) for k, v in out.items()}),
        params=namedlist(
            subjects=project["subjects"],
            spaces=["motion_energy", "slowfast"],
            pca_variance=0.5,
            fdr_alpha=0.05,
            min_subjects=2,
        ),
        log=namedlist([str(tmp_path / "pc_stats.log")]),
    )
    return out


def test_the_group_basis_recovers_the_planted_patterns_with_a_fixed_sign(tmp_path: Path) -> None:
    project = write_project(tmp_path)
    basis = class_basis(project["classes"], 0.5)
    assert basis.class_names == CLASSES and basis.n_clips == 600
    # PC 1 is pattern 1 (in z-units), flipped so that its largest loading is positive:
    # the water sports (planted at -1.0) become the top positive classes, music negative.
    pc1 = basis.components[0]
    assert CLASSES[int(np.argmax(np.abs(pc1)))] in WATER and pc1.max() > 0
    z_pattern = PATTERN1 / basis.scale / np.linalg.norm(PATTERN1 / basis.scale)
    assert pc1 @ z_pattern < -0.95
    pc2 = basis.components[1]
    assert {CLASSES[i] for i in np.argsort(-pc2)[: len(DANCE)]} == set(DANCE)
    assert basis.explained_variance_ratio[0] > basis.explained_variance_ratio[1] > 0


def test_class_weights_undo_the_subject_pca_and_sum_the_delays(tmp_path: Path) -> None:
    project = write_project(tmp_path)
    columns = space_columns([("motion_energy", ME_WIDTH), ("slowfast", len(CLASSES))])
    assert (columns.start, columns.stop) == (ME_WIDTH, ME_WIDTH + 400)
    raw, modelled = class_weights(project["weights"][1], columns)
    assert raw.shape == (400, N_VOXELS) and not modelled[40] and modelled.sum() == N_VOXELS - 1
    np.testing.assert_allclose(raw, project["truth"][1], atol=2e-4)


def test_pc1_is_significant_where_planted_with_the_right_sign(tmp_path: Path) -> None:
    project = write_project(tmp_path)
    out = run_pc_stats(tmp_path, project)
    t_img, mask_img = nib.load(out["t"]), nib.load(out["fdr_mask"])
    summary = json.loads(out["summary"].read_text())
    k = summary["n_pcs"]
    assert t_img.shape == (*SHAPE, k) and mask_img.shape == (*SHAPE, k) and k >= 2
    assert summary["n_subjects"] == N_SUBJECTS and summary["alternative"] == "two-sided"
    ijk = project["ijk"]
    t = t_img.get_fdata()[tuple(ijk.T)][:, 0]  # PC 1 at the 60 voxels
    significant = mask_img.get_fdata()[tuple(ijk.T)][:, 0] > 0
    a, b, null = slice(0, REGION), slice(REGION, 2 * REGION), slice(2 * REGION, None)
    # Region A weighs +pattern 1 = the music side = NEGATIVE on the sign-fixed PC 1;
    # region B (more response to water sports) is positive.
    assert significant[a].all() and (t[a] < 0).all()
    assert significant[b].all() and (t[b] > 0).all()
    assert significant[null].sum() <= 2  # FDR 5%: at most a stray voxel outside the regions
    assert np.abs(t[a]).min() > 3 * np.nanmedian(np.abs(t[null]))
    pc1 = summary["pcs"][0]
    assert pc1["n_positive"] >= REGION and pc1["n_negative"] >= REGION
    assert pc1["n_voxels"] == N_VOXELS  # the constant voxel of one subject: 3 subjects left
    q = nib.load(out["q"]).get_fdata()[tuple(ijk.T)][:, 0]
    assert (q[a] < 0.05).all() and (q[b] < 0.05).all()
    # Outside the mask: no test.
    assert np.isnan(t_img.get_fdata()[..., 0]).sum() == np.prod(SHAPE) - N_VOXELS
    # PC 2 (dance) was not planted in any voxel.
    assert summary["pcs"][1]["n_significant"] <= 2
    mean_w = nib.load(out["mean_w"]).get_fdata()[tuple(ijk.T)][:, 0]
    assert (mean_w[a] < 0).all() and (mean_w[b] > 0).all()
    loadings = (out["loadings"]).read_text().splitlines()
    assert loadings[0].split("\t")[:3] == ["class_name", "pc1", "pc2"] and len(loadings) == 401
    assert json.loads(out["summary"].read_text())["provenance"]["step"] == "pc_stats"


def test_word_clouds_name_the_top_kinetics_classes_beside_the_maps(tmp_path: Path) -> None:
    project = write_project(tmp_path)
    out = run_pc_stats(tmp_path, project)
    png = tmp_path / "figures" / "pc_maps.png"
    _script(
        "figure_pc_maps.py",
        input=namedlist(
            t=str(out["t"]),
            fdr_mask=str(out["fdr_mask"]),
            basis=str(out["basis"]),
            summary=str(out["summary"]),
        ),
        output=namedlist([str(png)]),
        params=namedlist(model="sf_lasso", pcs=2, top_words=12, seed=0),
        log=namedlist([str(tmp_path / "figure.log")]),
    )
    image = Image.open(png)
    assert image.size[0] > 800
    plotted = json.loads(image.info["Description"])["plotted"]
    assert sorted(plotted) == ["PC1", "PC2"]
    positive, negative = (dict(plotted["PC1"][side]) for side in ("positive", "negative"))
    assert set(positive) <= set(CLASSES) and set(negative) <= set(CLASSES)
    assert set(list(positive)[: len(WATER)]) == set(WATER)  # the largest, drawn largest
    assert set(list(negative)[: len(MUSIC)]) == set(MUSIC)
    assert list(positive.values()) == sorted(positive.values(), reverse=True)
    assert {word for word, _ in plotted["PC2"]["positive"][: len(DANCE)]} == set(DANCE)


def test_top_classes_by_sign() -> None:
    loadings = np.array([0.5, -0.9, 0.1, 0.0, -0.2])
    names = ["a", "b", "c", "d", "e"]
    assert top_classes(loadings, names, 1, 5) == {"a": 0.5, "c": 0.1}
    assert list(top_classes(loadings, names, -1, 1)) == ["b"]


def test_a_model_fit_on_the_pooled_features_is_refused(tmp_path: Path) -> None:
    project = write_project(tmp_path, layer="head.proj input (pooled pre-head)")
    with pytest.raises(InputError) as err:
        run_pc_stats(tmp_path, project)
    message = str(err.value)
    assert "aligned/slowfast/sub-01_run-1.h5 [layer]" in message
    assert "the model was fit on the SlowFast layer 'head.proj input (pooled pre-head)'" in message
    assert "Fix: set features.slowfast.feature: logits" in message
    assert not (tmp_path / "stats" / "pcs").exists()


def test_which_models_are_interpreted_and_the_errors_for_the_others() -> None:
    model = {"features": ["slowfast"], "estimator": "lasso", "interpret_pcs": 4}
    logits = {"feature": "logits"}
    assert interpreted_pcs("m", model, logits) == 4
    assert interpreted_pcs("m", {**model, "interpret_pcs": 0}, {"feature": "pooled"}) == 0
    assert interpreted_pcs("m", {"features": ["me"], "estimator": "ridge"}, {}) == 0
    with pytest.raises(InputError) as err:
        interpreted_pcs("m", {**model, "features": ["motion_energy"]}, logits)
    assert str(err.value).startswith("config.yaml [encoding.models.m.interpret_pcs]")
    assert "Fix: add slowfast to the model's features" in str(err.value)
    with pytest.raises(InputError, match=re.escape("estimator 'lstm' has no linear weights")):
        interpreted_pcs("m", {**model, "estimator": "lstm"}, logits)
    with pytest.raises(InputError) as err:
        interpreted_pcs("m", model, {"feature": "pooled"})
    assert str(err.value).startswith("config.yaml [features.slowfast.feature]")
    assert "Fix: set features.slowfast.feature: logits" in str(err.value)


def test_the_figure_has_a_report_caption_and_rules() -> None:
    caption = REPO / "report" / "pc_maps.rst"
    assert "two-sided one-sample t-test" in caption.read_text()
    figures = (REPO / "rules" / "figures.smk").read_text()
    assert 'caption="../report/pc_maps.rst"' in figures
    assert "rule pc_stats:" in (REPO / "rules" / "stats.smk").read_text()


def test_a_model_with_interpret_pcs_plans_the_pc_rules(tmp_path: Path) -> None:
    import sys

    import yaml

    sys.path.insert(0, str(REPO / "bench"))
    from _workflow import copy_workflow, without_demo_bids

    work = copy_workflow(tmp_path / "wf")
    for name in ("A.mp4", "B.mp4", "s1.nii.gz", "s2.nii.gz"):
        (work / name).write_bytes(b"")
    (work / "videos.tsv").write_text(
        "video_id\tpath\tkind\nA\tA.mp4\tstimulus\nB\tB.mp4\tstimulus\n"
    )
    (work / "recordings.tsv").write_text(
        "recording_id\tsubject\tmodality\tpath\tstimulus\tsampling_rate\n"
        "s1r1\tsub-1\tfmri\ts1.nii.gz\tA@0;B@30\t0.5\n"
        "s2r1\tsub-2\tfmri\ts2.nii.gz\tA@0;B@30\t0.5\n"
    )
    config = yaml.safe_load(without_demo_bids((work / "config.yaml").read_text()))
    config.update(videos="videos.tsv", recordings="recordings.tsv")
    config["features"]["slowfast"]["feature"] = "logits"
    model = {
        "features": ["slowfast"],
        "estimator": "lasso",
        "alphas": [0.1],
        "pca_variance": 0.95,
        "modalities": ["fmri"],
        "interpret_pcs": 3,
    }
    config["encoding"]["models"] = {"sf": model}
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    done = dry_run(work, ["results/figures/sf/pc_maps.png"])
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    jobs = {rule: inputs for (rule, _), inputs in planned_inputs(out).items()}
    assert sorted(jobs["pc_stats"]) == sorted(
        [
            f"results/encoding/sf/{s}/{f}.h5"
            for s in ("sub-1", "sub-2")
            for f in ("weights", "scores")
        ]
        + ["results/features/slowfast/A.h5", "results/features/slowfast/B.h5"]
        + ["results/aligned/slowfast/s1r1.h5", "results/aligned/slowfast/s2r1.h5"]
    )
    assert "figure_pc_maps" in jobs
    # A model that cannot be interpreted stops the workflow when it starts.
    config["features"]["slowfast"]["feature"] = "pooled"
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    done = dry_run(work, [])
    assert done.returncode != 0
    assert "config.yaml [features.slowfast.feature]" in done.stdout + done.stderr
