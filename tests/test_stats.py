"""Group statistics: Fisher z, t-test, BH-FDR, score maps and the group test on tiny NIfTIs."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import scipy.stats
from conftest import namedlist, run_script

from neurovid.errors import InputError
from neurovid.io import write_h5
from neurovid.stats import (
    GroupResult,
    fdr_bh,
    fisher_z,
    group_test,
    one_sample_t,
    scores_to_images,
    write_nifti,
)

REPO = Path(__file__).resolve().parents[1]
AFFINE = np.array([[3.0, 0, 0, -9], [0, 3.0, 0, -9], [0, 0, 3.0, -6], [0, 0, 0, 1]])
GROUP_MAPS = ("t", "p", "q", "fdr_mask", "mean_r", "n_subjects")


def test_fisher_z_by_hand_clips_and_keeps_nan() -> None:
    z = fisher_z(np.array([0.0, 0.5, -0.5, 1.0, -1.0, np.nan]))
    np.testing.assert_allclose(z[:3], [0.0, 0.5493061443340549, -0.5493061443340549])
    assert np.isfinite(z[3]) and z[3] == pytest.approx(8.4, abs=0.1) and z[4] == -z[3]
    assert np.isnan(z[5])


def test_one_sample_t_by_hand() -> None:
    # Column 0: 1, 2, 3 -> mean 2, sd 1, t = 2 / (1/sqrt 3) = 2 sqrt 3; with 2 df the
    # one-sided p is 1/2 - t / (2 sqrt(t^2 + 2)) = 1/2 - sqrt(3/14).
    # Column 2: subject 2 missing -> tested on 1, 3 only: mean 2, sd sqrt 2, t = 2; with
    # 1 df (Cauchy) the one-sided p is 1/2 - arctan(2) / pi.
    z = np.array([[1.0, 2.0, 1.0, -1.0], [2.0, 2.0, np.nan, -2.0], [3.0, 2.0, 3.0, -3.0]])
    t, p = one_sample_t(z, "greater")
    assert t[0] == pytest.approx(2 * np.sqrt(3))
    assert p[0] == pytest.approx(0.5 - np.sqrt(3 / 14))
    assert np.isnan(t[1]) and np.isnan(p[1])  # no variance
    assert t[2] == pytest.approx(2.0) and p[2] == pytest.approx(0.5 - np.arctan(2) / np.pi)
    assert t[3] == pytest.approx(-2 * np.sqrt(3)) and p[3] == pytest.approx(0.5 + np.sqrt(3 / 14))
    t2, p2 = one_sample_t(z, "two-sided")
    assert p2[0] == pytest.approx(1 - 2 * np.sqrt(3 / 14)) and p2[3] == pytest.approx(p2[0])
    t3, p3 = one_sample_t(z, "greater", min_subjects=3)  # column 2 has only 2 subjects
    assert np.isnan(t3[2]) and np.isnan(p3[2]) and t3[0] == t[0] and p3[3] == p[3]
    with pytest.raises(ValueError, match="min_subjects >= 2, got 1"):
        one_sample_t(z, min_subjects=1)


def test_fdr_bh_by_hand_ignores_nan() -> None:
    # Sorted 0.005, 0.01, 0.03, 0.04 (m = 4): p * m / rank = 0.02, 0.02, 0.04, 0.04.
    q = fdr_bh(np.array([0.01, 0.04, np.nan, 0.03, 0.005]))
    np.testing.assert_allclose(q, [0.02, 0.04, 1.0, 0.04, 0.02])
    # Step-up monotonicity: 0.5 * 3 / 2 = 0.75 > q of rank 3 = 0.6.
    np.testing.assert_allclose(fdr_bh(np.array([0.01, 0.5, 0.6])), [0.03, 0.6, 0.6])


def r_maps(tmp_path: Path, n_subjects: int = 5, seed: int = 0) -> tuple[list[Path], np.ndarray]:
    """Subject r maps on a 4x4x3 grid: mask = x < 3 (NaN outside, as score_maps writes);
    signal (mean r 0.3) where x == 0.

    The noise is centred across subjects, so null voxels have a mean of exactly 0.
    """
    rng = np.random.default_rng(seed)
    mask = np.zeros((4, 4, 3), bool)
    mask[:3] = True
    signal = np.zeros_like(mask)
    signal[0] = True
    noise = rng.normal(0.0, 0.05, (n_subjects, *mask.shape))
    noise -= noise.mean(axis=0)
    paths = []
    for s in range(n_subjects):
        r = np.where(mask, noise[s], np.nan)
        r[signal] += 0.3
        paths.append(tmp_path / f"sub-{s + 1:02d}_r.nii.gz")
        nib.save(nib.Nifti1Image(r.astype(np.float32), AFFINE), paths[-1])
    return paths, signal


def test_group_test_finds_the_signal_voxels(tmp_path: Path) -> None:
    paths, signal = r_maps(tmp_path)
    result = group_test(paths, fdr_alpha=0.05, alternative="greater", model="m")
    assert set(result.images) == set(GROUP_MAPS)
    n_subjects = np.asarray(result.images["n_subjects"].dataobj)
    assert np.all(n_subjects[:3] == 5) and np.all(n_subjects[3] == 0)
    fdr_mask = np.asarray(result.images["fdr_mask"].dataobj)
    assert fdr_mask.dtype == np.uint8
    np.testing.assert_array_equal(fdr_mask.astype(bool), signal)
    t = result.images["t"].get_fdata()
    q = result.images["q"].get_fdata()
    assert np.all(np.isnan(t[3])) and np.all(q[3] == 1)  # outside the mask: not tested
    np.testing.assert_allclose(result.images["t"].affine, AFFINE)
    s = result.summary
    assert s["n_subjects"] == 5 and s["n_voxels"] == 3 * 4 * 3 and s["min_subjects"] == 2
    assert s["n_voxels_too_few_subjects"] == 0 and s["voxels_by_n_subjects"] == {
        "1": 0,
        "2": 0,
        "3": 0,
        "4": 0,
        "5": 36,
    }
    assert (
        s["n_significant"] == signal.sum() == 12
        and s["alternative"] == "greater"
        and s["model"] == "m"
    )
    assert s["t_threshold"] == pytest.approx(np.nanmin(t[signal]), rel=1e-6)
    mean_r = result.images["mean_r"].get_fdata()
    assert np.all(np.abs(mean_r[signal] - 0.3) < 0.1)


def test_group_test_rejects_a_map_on_another_grid(tmp_path: Path) -> None:
    paths, _ = r_maps(tmp_path, n_subjects=3)
    moved = tmp_path / "moved.nii.gz"
    shifted = AFFINE.copy()
    shifted[0, 3] += 3.0  # one voxel along x
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.float32), shifted), moved)
    with pytest.raises(InputError) as err:
        group_test([*paths, moved], fdr_alpha=0.05)
    assert str(err.value).startswith(f"{moved} [affine]: grid differs from {paths[0]}")
    assert "resample all subjects to one template grid, the common space" in str(err.value)
    with pytest.raises(InputError, match="at least 2 subjects' maps, got 1"):
        group_test(paths[:1], fdr_alpha=0.05)


# Three subjects on one 6x1x1 grid whose brain masks differ. Voxel by voxel: the r of
# each subject, None = outside its mask, nan = inside its mask but no score (constant voxel).
MASKED_R = {
    "sub-01": [0.2, 0.3, 0.6, None, None, np.nan],
    "sub-02": [0.3, 0.5, None, None, 0.1, 0.2],
    "sub-03": [0.4, None, None, None, 0.1, 0.4],
}
# v0: all three; v1: sub-01 and sub-02; v2: sub-01 only; v3: nobody; v4: two equal values
# (no variance); v5: sub-02 and sub-03 (sub-01 has it in its mask, but no finite r).
COUNTS = [3, 2, 1, 0, 2, 2]


def masked_r_maps(tmp_path: Path) -> list[Path]:
    """r.nii.gz of each subject in MASKED_R, made the pipeline's way: scores.h5 -> score_maps."""
    paths = []
    for subject, values in MASKED_R.items():
        inside = [i for i, v in enumerate(values) if v is not None]
        mask = np.zeros((6, 1, 1), np.uint8)
        mask[inside] = 1
        r = np.array([values[i] for i in inside], np.float32)
        scores = tmp_path / subject / "scores.h5"
        write_h5(
            scores,
            {
                "r": r,
                "r2": r**2,
                "mask": mask,
                "affine": AFFINE,
                "voxel_ijk": np.array([[i, 0, 0] for i in inside], np.int32),
            },
        )
        r_img, _ = scores_to_images(scores)
        paths.append(tmp_path / subject / "r.nii.gz")
        write_nifti(paths[-1], r_img)
    return paths


def voxels(result: GroupResult, name: str) -> np.ndarray:
    return np.asarray(result.images[name].dataobj).reshape(-1)


def ttest(values: list[float]) -> tuple[float, float]:
    """scipy's own one-sided t and p of the Fisher z of ``values``: the reference."""
    ref = scipy.stats.ttest_1samp(fisher_z(np.array(values)), 0.0, alternative="greater")
    return float(ref.statistic), float(ref.pvalue)


def test_group_test_uses_exactly_the_subjects_whose_mask_has_the_voxel(tmp_path: Path) -> None:
    result = group_test(masked_r_maps(tmp_path), fdr_alpha=0.05, alternative="greater")
    np.testing.assert_array_equal(voxels(result, "n_subjects"), COUNTS)
    assert result.images["n_subjects"].get_data_dtype() == np.int16
    t, p, q = voxels(result, "t"), voxels(result, "p"), voxels(result, "q")
    expected = {0: ttest([0.2, 0.3, 0.4]), 1: ttest([0.3, 0.5]), 5: ttest([0.2, 0.4])}
    for v, (ref_t, ref_p) in expected.items():
        assert t[v] == pytest.approx(ref_t, rel=1e-6) and p[v] == pytest.approx(ref_p, rel=1e-6)
    assert t[1] == pytest.approx(3.5816262, rel=1e-6)  # arctanh of 0.3, 0.5; df = 1
    assert t[5] == pytest.approx(2.8353782, rel=1e-6)  # arctanh of 0.2, 0.4; df = 1
    # The old behaviour, missing = r 0, tests 0.3, 0.5, 0 at v1 and 0.6, 0, 0 at v2 instead
    # (the old code gave t = 4.891, 1.801, 1.0, nan, 2.0, nan on these maps):
    assert ttest([0.3, 0.5, 0.0])[0] == pytest.approx(1.8005144, rel=1e-6)
    assert ttest([0.6, 0.0, 0.0])[0] == pytest.approx(1.0)
    assert np.all(np.isnan(t[[2, 3, 4]])) and np.all(q[[2, 3, 4]] == 1)
    # The FDR family is the three tested voxels, not all six, nor the old code's four (v0, v1,
    # v2 and v4 with zeros for the missing subjects; it dropped v5 for sub-01's NaN).
    # p sorted: v0 0.0197, v1 0.0867, v5 0.1079 -> q = 3 p0, min(3/2 p1, p5), p5.
    np.testing.assert_allclose(
        q[[0, 1, 5]], scipy.stats.false_discovery_control(p[[0, 1, 5]]), rtol=1e-6
    )
    np.testing.assert_allclose(q[[0, 1, 5]], [3 * p[0], p[5], p[5]], rtol=1e-6)
    np.testing.assert_allclose(q[[0, 1, 5]], [0.0590292, 0.1079281, 0.1079281], rtol=1e-5)
    mean_r = voxels(result, "mean_r")
    np.testing.assert_allclose(mean_r[[0, 1, 2, 4, 5]], [0.3, 0.4, 0.6, 0.1, 0.3], rtol=1e-6)
    assert np.isnan(mean_r[3])
    s = result.summary
    assert (s["min_subjects"], s["n_voxels"], s["n_voxels_any_subject"]) == (2, 3, 5)
    assert (s["n_voxels_too_few_subjects"], s["n_voxels_constant"]) == (1, 1)
    assert s["voxels_by_n_subjects"] == {"1": 1, "2": 3, "3": 1}


def test_group_test_min_subjects_skips_voxels_that_too_few_subjects_have(tmp_path: Path) -> None:
    paths = masked_r_maps(tmp_path)
    result = group_test(paths, fdr_alpha=0.05, min_subjects=3)
    t, p, q = voxels(result, "t"), voxels(result, "p"), voxels(result, "q")
    assert t[0] == pytest.approx(ttest([0.2, 0.3, 0.4])[0], rel=1e-6)
    assert np.all(np.isnan(t[1:])) and np.all(np.isnan(p[1:])) and np.all(q[1:] == 1)
    assert q[0] == pytest.approx(p[0], rel=1e-6)  # a family of one
    np.testing.assert_array_equal(voxels(result, "n_subjects"), COUNTS)
    s = result.summary
    assert (s["n_voxels"], s["n_voxels_too_few_subjects"], s["n_voxels_constant"]) == (1, 4, 0)
    with pytest.raises(InputError) as err:
        group_test(paths, fdr_alpha=0.05, min_subjects=4)
    assert str(err.value) == (
        "config.yaml [stats.min_subjects]: min_subjects = 4, but a voxel's t-test needs at "
        "least 2 subjects and the group has 3. Fix: set `stats.min_subjects` to a number "
        "from 2 to 3."
    )


def test_group_test_rejects_a_subject_scored_on_another_grid(tmp_path: Path) -> None:
    paths = masked_r_maps(tmp_path)
    scores = tmp_path / "sub-04" / "scores.h5"
    shifted = AFFINE.copy()
    shifted[:3, :3] *= 2 / 3  # a 2 mm subject among 3 mm ones
    write_h5(
        scores,
        {
            "r": np.array([0.1], np.float32),
            "r2": np.array([0.01], np.float32),
            "mask": np.ones((6, 1, 1), np.uint8),
            "affine": shifted,
            "voxel_ijk": np.array([[0, 0, 0]], np.int32),
        },
    )
    other = tmp_path / "sub-04" / "r.nii.gz"
    write_nifti(other, scores_to_images(scores)[0])
    with pytest.raises(InputError) as err:
        group_test([*paths, other], fdr_alpha=0.05)
    message = str(err.value)
    assert message.startswith(f"{other} [affine]: grid differs from {paths[0]}: shape (6, 1, 1)")
    assert message.endswith(
        "Fix: resample all subjects to one template grid, the common space of the group "
        "(same fmri mask and resolution_mm in config.yaml), and re-run."
    )


def test_scores_to_images_and_score_maps_script(tmp_path: Path) -> None:
    mask = np.zeros((3, 3, 2), np.uint8)
    ijk = np.array([[0, 0, 0], [1, 2, 1], [2, 1, 0]], dtype=np.int32)
    mask[tuple(ijk.T)] = 1
    scores = tmp_path / "scores.h5"
    write_h5(
        scores,
        {
            "r": np.array([0.5, np.nan, -0.1], np.float32),
            "r2": np.array([0.25, np.nan, -0.3], np.float32),
            "mask": mask,
            "affine": AFFINE,
            "voxel_ijk": ijk,
        },
    )
    r_img, r2_img = scores_to_images(scores)
    r = r_img.get_fdata()
    assert r.shape == (3, 3, 2) and r[0, 0, 0] == 0.5 and r[2, 1, 0] == pytest.approx(-0.1)
    assert np.isnan(r[1, 2, 1]) and np.all(np.isnan(r[mask == 0]))  # missing, not r = 0
    assert r2_img.get_fdata()[0, 0, 0] == 0.25
    np.testing.assert_allclose(r_img.affine, AFFINE)

    smk = type("Smk", (), {})()
    smk.input = namedlist(scores=str(scores), code=[])
    smk.output = namedlist(
        r=str(tmp_path / "out" / "r.nii.gz"), r2=str(tmp_path / "out" / "r2.nii.gz")
    )
    smk.log = namedlist([str(tmp_path / "score_maps.log")])
    smk.wildcards = namedlist(model="m", subject="sub-01")
    smk.threads = 1
    run_script(str(REPO / "scripts" / "score_maps.py"), init_globals={"snakemake": smk})
    np.testing.assert_array_equal(nib.load(smk.output.r).get_fdata(), r)
    sidecar = json.loads((tmp_path / "out" / "r.json").read_text())
    assert sidecar["provenance"]["step"] == "score_maps"
    assert sidecar["provenance"]["inputs"]["scores"]["path"] == str(scores)
    first = Path(smk.output.r).read_bytes()
    run_script(str(REPO / "scripts" / "score_maps.py"), init_globals={"snakemake": smk})
    assert Path(smk.output.r).read_bytes() == first  # deterministic gzip, no timestamps

    no_mask = tmp_path / "spikes.h5"
    write_h5(no_mask, {"r": np.zeros(3, np.float32), "r2": np.zeros(3, np.float32)})
    with pytest.raises(InputError, match="mask, affine, voxel_ijk missing"):
        scores_to_images(no_mask)


def test_group_stats_script_writes_maps_and_summary(tmp_path: Path) -> None:
    paths, signal = r_maps(tmp_path, n_subjects=4, seed=1)
    out = tmp_path / "stats"
    smk = type("Smk", (), {})()
    smk.input = namedlist(maps=[str(p) for p in paths], code=[])
    smk.output = namedlist(
        **{n: str(out / f"{n}.nii.gz") for n in GROUP_MAPS}, summary=str(out / "summary.json")
    )
    smk.params = namedlist(
        subjects=["sub-01", "sub-02", "sub-03", "sub-04"],
        fdr_alpha=0.05,
        alternative="greater",
        min_subjects=2,
    )
    smk.wildcards = namedlist(model="me_ridge")
    smk.log = namedlist([str(tmp_path / "group.log")])
    smk.threads = 1
    run_script(str(REPO / "scripts" / "group_stats.py"), init_globals={"snakemake": smk})
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == "me_ridge" and summary["subjects"][0] == "sub-01"
    assert summary["n_subjects"] == 4 and summary["fdr_alpha"] == 0.05
    assert summary["n_significant"] == int(signal.sum())
    assert summary["provenance"]["step"] == "group_stats"
    assert summary["provenance"]["params"]["min_subjects"] == 2
    assert summary["min_subjects"] == 2 and summary["n_voxels"] == 36
    assert summary["n_voxels_too_few_subjects"] == 0
    counts = np.asarray(nib.load(out / "n_subjects.nii.gz").dataobj)
    assert counts.dtype == np.int16 and set(np.unique(counts)) == {0, 4}
    np.testing.assert_array_equal(counts[:3], 4)
    mask = np.asarray(nib.load(out / "fdr_mask.nii.gz").dataobj)
    np.testing.assert_array_equal(mask.astype(bool), signal)
    p = nib.load(out / "p.nii.gz").get_fdata()
    q = nib.load(out / "q.nii.gz").get_fdata()
    assert np.all(q[signal] >= p[signal]) and np.all(q[signal] < 0.05)


def test_group_stats_script_leaves_no_output_on_a_grid_mismatch(tmp_path: Path) -> None:
    paths, _ = r_maps(tmp_path, n_subjects=2)
    other = tmp_path / "other.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), AFFINE), other)
    out = tmp_path / "stats"
    smk = type("Smk", (), {})()
    smk.input = namedlist(maps=[*map(str, paths), str(other)], code=[])
    smk.output = namedlist(
        **{n: str(out / f"{n}.nii.gz") for n in GROUP_MAPS}, summary=str(out / "summary.json")
    )
    smk.params = namedlist(
        subjects=["a", "b", "c"], fdr_alpha=0.05, alternative="greater", min_subjects=2
    )
    smk.wildcards = namedlist(model="m")
    smk.log = namedlist([str(tmp_path / "group.log")])
    smk.threads = 1
    with pytest.raises(InputError, match=r"shape \(4, 4, 4\) vs \(4, 4, 3\)"):
        run_script(str(REPO / "scripts" / "group_stats.py"), init_globals={"snakemake": smk})
    assert not out.exists() or not any(out.iterdir())
    assert "other.nii.gz [affine]: grid differs" in (tmp_path / "group.log").read_text()
