"""The results summary (neurovid.summary) on small synthetic results, and its front page."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from neurovid import io, summary
from neurovid.behavior.evaluation import evaluate
from neurovid.errors import InputError
from neurovid.stats import write_nifti

REPO = Path(__file__).resolve().parents[1]
SHAPE = (5, 4, 3)
AFFINE = np.array(
    [[2.0, 0, 0, -10.0], [0, 2.0, 0, -20.0], [0, 0, 2.0, 4.0], [0, 0, 0, 1]], dtype=np.float64
)


def fmri_scores(path: Path, seed: int, *, partitioned: bool = True) -> dict[str, np.ndarray]:
    """An fMRI scores.h5 over every voxel of SHAPE but one, as encode writes it."""
    rng = np.random.default_rng(seed)
    mask = np.ones(SHAPE, dtype=np.uint8)
    mask[0, 0, 0] = 0
    ijk = np.argwhere(mask > 0).astype(np.int32)
    n = len(ijk)
    arrays: dict[str, np.ndarray] = {
        "r": rng.uniform(-0.1, 0.6, n).astype(np.float32),
        "r2": rng.uniform(-0.05, 0.3, n).astype(np.float32),
        "ev": rng.uniform(-0.05, 0.5, n).astype(np.float32),
        "r2_repeats": rng.uniform(-0.05, 0.3, n).astype(np.float32),
        "mask": mask,
        "affine": AFFINE,
        "voxel_ijk": ijk,
        "target_names": np.array([f"v{i}" for i in range(n)]),
    }
    arrays["r"][3] = np.nan  # a constant voxel: no score
    attrs = {"modality": "fmri", "estimator": "ridge", "model": "m", "subject": path.parent.name}
    if partitioned:
        for part in ("unique_me", "unique_mel", "shared"):
            arrays[part] = rng.uniform(-0.02, 0.1, n).astype(np.float32)
        attrs["partition_spaces"] = ["me", "mel"]
    io.write_h5(path, arrays, attrs)
    return arrays


def mouse_scores(path: Path) -> dict[str, np.ndarray]:
    r = np.linspace(-0.2, 0.8, 25).astype(np.float32)
    io.write_h5(path, {"r": r, "r2": r**2}, {"modality": "spikes", "estimator": "ridge"})
    return {"r": r}


def group_files(root: Path) -> tuple[dict[str, Path], np.ndarray, np.ndarray]:
    """results/stats/m/: t with two clusters, fdr_mask = t > 3, mean_r, summary.json."""
    t = np.zeros(SHAPE, dtype=np.float32)
    t[1:3, 1:3, 0] = [[4.0, 5.0], [6.0, 4.5]]  # cluster 1, peak 6 at (2, 1, 0)
    t[4, 3, 2] = 3.5  # cluster 2: one voxel
    t[4, 0, 2] = 2.0  # not significant
    fdr = (t > 3).astype(np.uint8)
    mean_r = np.full(SHAPE, 0.05, dtype=np.float32)
    mean_r[2, 1, 0], mean_r[4, 3, 2] = 0.42, 0.31
    files = {k: root / f"{k}.nii.gz" for k in ("t", "fdr_mask", "mean_r")}
    for key, volume in (("t", t), ("fdr_mask", fdr), ("mean_r", mean_r)):
        write_nifti(files[key], nib.Nifti1Image(volume, AFFINE))
    files["summary"] = root / "summary.json"
    stats = {"n_subjects": 2, "n_voxels": 59, "n_significant": int(fdr.sum()), "fdr_alpha": 0.05}
    io.write_json(
        files["summary"], {**stats, "t_threshold": 3.5, "max_t": 6.0, "alternative": "greater"}
    )
    return files, t, fdr


def behavior_files(root: Path) -> tuple[Path, Path]:
    truth = pd.DataFrame(
        {"start_frame": [0, 20], "stop_frame": [10, 30], "label": ["rearing", "grooming"]}
    )
    pred = pd.DataFrame(
        {"start_frame": [0, 40], "stop_frame": [10, 50], "label": ["rearing", "grooming"]}
    )
    table = evaluate(pred, truth, 60).assign(video="v1")
    evaluation = root / "evaluation.tsv"
    io.write_table(evaluation, table[["video", *table.columns[:-1]]])
    metrics = root / "metrics.tsv"
    pd.DataFrame(
        {
            "class": ["grooming", "other", "rearing", "macro"],
            "precision": [0.5, 0.9, 0.8, 0.7333],
            "recall": [0.25, 1.0, 0.8, 0.6833],
            "f1": [1 / 3, 0.947368, 0.8, 0.693567],
            "support": [4, 18, 5, 27],
            "split": "held out in time",
        }
    ).to_csv(metrics, sep="\t", index=False)
    return evaluation, metrics


@pytest.fixture()
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setattr(summary, "MIN_CLUSTER_VOXELS", 1)  # the fixture's clusters are tiny
    subjects = {
        s: fmri_scores(tmp_path / "m" / s / "scores.h5", i)
        for i, s in enumerate(["sub-01", "sub-02"])
    }
    mouse = mouse_scores(tmp_path / "m" / "mouse-1" / "scores.h5")
    files, t, fdr = group_files(tmp_path / "stats")
    evaluation, metrics = behavior_files(tmp_path)
    scores = [("m", s, tmp_path / "m" / s / "scores.h5") for s in [*subjects, "mouse-1"]]
    made = summary.summarize(
        scores, {"m": files}, evaluation=evaluation, classifier_metrics=metrics
    )
    return {
        "summary": made,
        "subjects": subjects,
        "mouse": mouse,
        "t": t,
        "fdr": fdr,
        "tmp": tmp_path,
    }


def test_top_decile_and_ceiling_by_hand() -> None:
    r = np.array([0.1, np.nan, 0.9, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0, 0.05])
    # 11 finite values: ceil(1.1) = 2 best -> (0.9 + 0.8) / 2
    assert summary.top_decile_mean(r) == pytest.approx(0.85)
    assert math.isnan(summary.top_decile_mean(np.array([np.nan])))
    ev = np.array([0.5, 0.0, -0.1, 0.25, np.nan])
    r2 = np.array([0.1, 0.3, 0.2, 0.05, 0.1])
    assert summary.ceiling_fraction(r2, ev) == pytest.approx(0.15 / 0.75)
    assert math.isnan(summary.ceiling_fraction(r2, np.zeros(5)))


def test_encoding_rows_have_the_scores_numbers(results: dict) -> None:
    table = results["summary"].encoding.set_index("subject")
    assert list(table.index) == ["sub-01", "sub-02", "mouse-1"]
    for subject, arrays in results["subjects"].items():
        row = table.loc[subject]
        r = arrays["r"].astype(np.float64)
        finite = r[np.isfinite(r)]
        best = np.sort(finite)[::-1][: int(np.ceil(len(finite) / 10))]
        assert row["n_targets"] == len(finite) == 58
        assert row["mean_r"] == pytest.approx(finite.mean(), rel=1e-6)
        assert row["top_decile_r"] == pytest.approx(best.mean(), rel=1e-6)
        ev, r2 = arrays["ev"].astype(np.float64), arrays["r2_repeats"].astype(np.float64)
        assert row["ceiling_fraction"] == pytest.approx(
            r2[ev > 0].sum() / ev[ev > 0].sum(), rel=1e-5
        )
        # the subject's voxels in the group FDR mask, and their means
        ijk = arrays["voxel_ijk"]
        significant = results["fdr"][ijk[:, 0], ijk[:, 1], ijk[:, 2]] > 0
        assert row["n_significant"] == significant.sum() == 5
        assert row["mean_r_significant"] == pytest.approx(np.nanmean(r[significant]), rel=1e-6)
        for part in ("unique_me", "unique_mel", "shared"):
            values = arrays[part].astype(np.float64)
            assert row[part] == pytest.approx(values.mean(), rel=1e-6)
            assert row[f"{part}_significant"] == pytest.approx(values[significant].mean(), rel=1e-6)
    mouse = table.loc["mouse-1"]
    assert mouse["modality"] == "spikes" and mouse["n_targets"] == 25
    assert mouse["top_decile_r"] == pytest.approx(
        np.sort(results["mouse"]["r"])[-3:].mean(), rel=1e-6
    )
    assert math.isnan(mouse["ceiling_fraction"]) and math.isnan(mouse["n_significant"])
    assert math.isnan(mouse["unique_me"])


def test_clusters_smaller_than_the_minimum_are_no_peak_region(tmp_path: Path) -> None:
    files, _, _ = group_files(tmp_path)  # clusters of 4 and 1 significant voxels
    assert summary.MIN_CLUSTER_VOXELS == 5
    assert summary.cluster_peaks(files["t"], files["fdr_mask"]).empty


def test_group_and_peaks(results: dict) -> None:
    made = results["summary"]
    group = made.group.iloc[0]
    assert (group["model"], group["n_subjects"], group["n_voxels_tested"]) == ("m", 2, 59)
    assert group["n_significant"] == int(results["fdr"].sum()) == 5
    peaks = made.peaks
    assert list(peaks["rank"]) == [1, 2]
    first, second = peaks.iloc[0], peaks.iloc[1]
    # the largest t's voxel (2, 1, 0) and the lone voxel (4, 3, 2), in mm
    assert [first["x"], first["y"], first["z"]] == list((AFFINE @ [2, 1, 0, 1])[:3])
    assert [second["x"], second["y"], second["z"]] == list((AFFINE @ [4, 3, 2, 1])[:3])
    assert first["peak_t"] == pytest.approx(6.0) and second["peak_t"] == pytest.approx(3.5)
    assert first["cluster_size_mm3"] == 4 * 8 and second["cluster_size_mm3"] == 8
    assert first["mean_r"] == pytest.approx(0.42) and second["mean_r"] == pytest.approx(0.31)


def test_behavior_f1_precision_recall(results: dict) -> None:
    table = results["summary"].behavior
    frames = table[table["stage"] == "frames"].set_index("label")["f1"]
    # other: 40 true frames, 40 predicted, 30 in common -> 0.75; rearing exact; grooming missed
    assert frames.to_dict() == pytest.approx(
        {"other": 0.75, "rearing": 1.0, "grooming": 0.0, "macro": 1.75 / 3}
    )
    segments = table[table["stage"] == "segments (IoU >= 0.5)"].set_index("label")
    assert segments.loc["all", ["precision", "recall", "f1", "n"]].tolist() == [0.5, 0.5, 0.5, 2]
    assert segments.loc["rearing", ["precision", "recall"]].tolist() == [1.0, 1.0]
    assert segments.loc["grooming", ["precision", "recall"]].tolist() == [0.0, 0.0]
    assert "other" not in segments.index
    classifier = table[table["stage"] == "classifier"].set_index("label")
    assert classifier.loc["macro", "f1"] == pytest.approx(0.693567)
    assert classifier.loc["grooming", ["precision", "recall", "n"]].tolist() == [0.5, 0.25, 4]


def test_written_table_sidecar_and_front_page(results: dict) -> None:
    tmp, made = results["tmp"], results["summary"]
    figures = [
        "results/figures/model_comparison.png",
        "results/figures/m/score_hist.png",
        "results/figures/m/glass_brain.png",
        "results/figures/m/traces/sub-01.png",
        "results/figures/m/variance_maps.png",
        "results/figures/behavior/confusion.png",
    ]
    paths = {"table": tmp / "summary" / "summary.tsv", "front": tmp / "summary" / "front.rst"}
    summary.write_summary(made, paths, io.provenance("summary"), figures)
    table = pd.read_csv(paths["table"], sep="\t")
    assert table["mean_r"].tolist() == pytest.approx(made.encoding["mean_r"].tolist(), rel=1e-5)
    sidecar = json.loads((tmp / "summary" / "summary.json").read_text())
    assert sidecar["provenance"]["step"] == "summary"
    assert sidecar["group"][0]["n_significant"] == 5 and len(sidecar["peaks"]) == 2
    assert sidecar["encoding"][2]["ceiling_fraction"] is None  # NaN -> null
    assert {row["stage"] for row in sidecar["behavior"]} == {
        "frames",
        "segments (IoU >= 0.5)",
        "classifier",
    }
    assert not list((tmp / "summary").glob(".*tmp*"))  # atomic: no temporaries left

    text = paths["front"].read_text()
    sub1 = made.encoding.iloc[0]
    for number in (
        sub1["mean_r"],
        sub1["top_decile_r"],
        sub1["ceiling_fraction"],
        sub1["mean_r_significant"],
    ):
        assert f"{number:.3f}" in text
    assert f"{sub1['unique_me']:.4f}" in text and f"{sub1['unique_mel_significant']:.4f}" in text
    assert "**5** of 59 tested voxels significant" in text
    assert "6.00" in text and "-6, -18, 4" in text  # the first peak: t and mm
    assert "0.583" in text and "0.694" in text  # macro F1s: localizer frames, classifier
    link = "<javascript:app.showResultInfo('results/figures/m/traces/sub-01.png')>`__"
    assert f"`traces/sub-01.png {link}" in text
    assert "app.showResultInfo('results/figures/m/glass_brain.png')" in text
    assert "app.showResultInfo('results/figures/behavior/confusion.png')" in text
    assert "no anatomical atlas" in text

    from docutils.core import publish_parts

    html = publish_parts(text, writer="html", settings_overrides={"report_level": 2})["html_body"]
    assert "System Message" not in html, html  # valid RST
    assert f"<td>{sub1['mean_r']:.3f}</td>" in html


def test_bad_inputs_name_file_and_field(results: dict, tmp_path: Path) -> None:
    bad = tmp_path / "bad_evaluation.tsv"
    pd.DataFrame({"video": ["v1"], "label": ["all"]}).to_csv(bad, sep="\t", index=False)
    with pytest.raises(InputError, match=r"bad_evaluation.tsv \[precision\]: lacks the column"):
        summary.behavior_table(bad)
    small = tmp_path / "fdr_small.nii.gz"
    write_nifti(small, nib.Nifti1Image(np.ones((2, 2, 2), dtype=np.uint8), AFFINE))
    scores = results["tmp"] / "m" / "sub-01" / "scores.h5"
    with pytest.raises(InputError, match=r"fdr_small.nii.gz \[shape\]: grid \(2, 2, 2\) differs"):
        summary.encoding_row(scores, "m", "sub-01", np.ones((2, 2, 2)), small)
    with pytest.raises(InputError, match=r"summary.json \[n_voxels\]: lacks n_voxels"):
        io.write_json(tmp_path / "summary.json", {"n_subjects": 2})
        summary.group_row("m", tmp_path / "summary.json")


TINY_SNAKEFILE = """
configfile: "config.yaml"


report: "{repo}/report/workflow.rst"


rule summary:
    input:
        "front.rst",
        "summary.tsv",
    output:
        table=report(
            "results/summary/summary.tsv",
            category="0. Summary",
            caption="{repo}/report/summary.rst",
        ),
        front="results/summary/front.rst",
    shell:
        "cp {{input[0]}} {{output.front}} && cp {{input[1]}} {{output.table}}"
"""


def test_the_report_front_page_shows_the_summary(results: dict, tmp_path: Path) -> None:
    # A one-rule workflow with the real report/workflow.rst and caption: Snakemake's
    # report renders front.rst on its landing page (workflow description).
    work = tmp_path / "work"
    work.mkdir()
    made = results["summary"]
    summary.write_summary(
        made,
        {"table": work / "summary.tsv", "front": work / "front.rst"},
        io.provenance("summary"),
        ["results/figures/m/glass_brain.png"],
    )
    (work / "Snakefile").write_text(TINY_SNAKEFILE.format(repo=REPO))
    (work / "config.yaml").write_text("encoding:\n  models:\n    m: {}\n")
    snakemake = [str(Path(sys.executable).parent / "snakemake"), "--cores", "1", "--quiet"]
    for args in ([], ["--report", "report.html"]):
        done = subprocess.run(
            [*snakemake, *args], cwd=work, capture_output=True, text=True, timeout=300, check=False
        )
        assert done.returncode == 0, done.stderr[-3000:]
    html = (work / "report.html").read_text()
    description = html.split('<script id="workflow-desc">')[1].split("</script>")[0]
    assert "Results summary" in description and "Methods" in description
    assert f"{made.encoding.iloc[0]['mean_r']:.3f}" in description
    assert "showResultInfo(\\u0027results/figures/m/glass_brain.png" in description or (
        "showResultInfo('results/figures/m/glass_brain.png" in description
    )
    assert "1 model(s)" in description


def test_a_body_model_without_a_stimulus_fit_keeps_its_ev_but_claims_no_fraction(
    tmp_path: Path,
) -> None:
    from neurovid.summary import encoding_row

    path = tmp_path / "m" / "mouse-1" / "scores.h5"
    path.parent.mkdir(parents=True)
    ev = np.array([0.2, 0.4, np.nan], dtype=np.float32)
    io.write_h5(
        path, {"r": np.array([0.3, 0.5, 0.1], np.float32), "ev": ev}, {"modality": "spikes"}
    )
    row = encoding_row(path, "m", "mouse-1")
    assert row["mean_ev"] == pytest.approx(0.3) and np.isnan(row["ceiling_fraction"])
