"""Group statistics: Fisher z, t-test, BH-FDR, score maps and the group test on tiny NIfTIs."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import namedlist, run_script

from neurovid.errors import InputError
from neurovid.io import write_h5
from neurovid.stats import fdr_bh, fisher_z, group_test, one_sample_t, scores_to_images

REPO = Path(__file__).resolve().parents[1]
AFFINE = np.array([[3.0, 0, 0, -9], [0, 3.0, 0, -9], [0, 0, 3.0, -6], [0, 0, 0, 1]])


def test_fisher_z_by_hand_clips_and_keeps_nan() -> None:
    z = fisher_z(np.array([0.0, 0.5, -0.5, 1.0, -1.0, np.nan]))
    np.testing.assert_allclose(z[:3], [0.0, 0.5493061443340549, -0.5493061443340549])
    assert np.isfinite(z[3]) and z[3] == pytest.approx(8.4, abs=0.1) and z[4] == -z[3]
    assert np.isnan(z[5])


def test_one_sample_t_by_hand() -> None:
    # Column 0: 1, 2, 3 -> mean 2, sd 1, t = 2 / (1/sqrt 3) = 2 sqrt 3; with 2 df the
    # one-sided p is 1/2 - t / (2 sqrt(t^2 + 2)) = 1/2 - sqrt(3/14).
    z = np.array([[1.0, 2.0, 1.0, -1.0], [2.0, 2.0, np.nan, -2.0], [3.0, 2.0, 3.0, -3.0]])
    t, p = one_sample_t(z, "greater")
    assert t[0] == pytest.approx(2 * np.sqrt(3))
    assert p[0] == pytest.approx(0.5 - np.sqrt(3 / 14))
    assert np.isnan(t[1]) and np.isnan(p[1])  # no variance
    assert np.isnan(t[2]) and np.isnan(p[2])  # NaN in a subject
    assert t[3] == pytest.approx(-2 * np.sqrt(3)) and p[3] == pytest.approx(0.5 + np.sqrt(3 / 14))
    t2, p2 = one_sample_t(z, "two-sided")
    assert p2[0] == pytest.approx(1 - 2 * np.sqrt(3 / 14)) and p2[3] == pytest.approx(p2[0])


def test_fdr_bh_by_hand_ignores_nan() -> None:
    # Sorted 0.005, 0.01, 0.03, 0.04 (m = 4): p * m / rank = 0.02, 0.02, 0.04, 0.04.
    q = fdr_bh(np.array([0.01, 0.04, np.nan, 0.03, 0.005]))
    np.testing.assert_allclose(q, [0.02, 0.04, 1.0, 0.04, 0.02])
    # Step-up monotonicity: 0.5 * 3 / 2 = 0.75 > q of rank 3 = 0.6.
    np.testing.assert_allclose(fdr_bh(np.array([0.01, 0.5, 0.6])), [0.03, 0.6, 0.6])


def r_maps(tmp_path: Path, n_subjects: int = 5, seed: int = 0) -> tuple[list[Path], np.ndarray]:
    """Subject r maps on a 4x4x3 grid: mask = x < 3; signal (mean r 0.3) where x == 0.

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
        r = np.where(mask, noise[s], 0.0)
        r[signal] += 0.3
        paths.append(tmp_path / f"sub-{s + 1:02d}_r.nii.gz")
        nib.save(nib.Nifti1Image(r.astype(np.float32), AFFINE), paths[-1])
    return paths, signal


def test_group_test_finds_the_signal_voxels(tmp_path: Path) -> None:
    paths, signal = r_maps(tmp_path)
    result = group_test(paths, fdr_alpha=0.05, alternative="greater", model="m")
    assert set(result.images) == {"t", "p", "q", "fdr_mask", "mean_r"}
    fdr_mask = np.asarray(result.images["fdr_mask"].dataobj)
    assert fdr_mask.dtype == np.uint8
    np.testing.assert_array_equal(fdr_mask.astype(bool), signal)
    t = result.images["t"].get_fdata()
    q = result.images["q"].get_fdata()
    assert np.all(np.isnan(t[3])) and np.all(q[3] == 1)  # outside the mask: not tested
    np.testing.assert_allclose(result.images["t"].affine, AFFINE)
    s = result.summary
    assert s["n_subjects"] == 5 and s["n_voxels"] == 3 * 4 * 3
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
    assert "resample all subjects to one template grid" in str(err.value)
    with pytest.raises(InputError, match="at least 2 subjects' maps, got 1"):
        group_test(paths[:1], fdr_alpha=0.05)


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
    assert np.isnan(r[1, 2, 1]) and np.count_nonzero(r[mask == 0]) == 0
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
    names = ("t", "p", "q", "fdr_mask", "mean_r")
    smk = type("Smk", (), {})()
    smk.input = namedlist(maps=[str(p) for p in paths], code=[])
    smk.output = namedlist(
        **{n: str(out / f"{n}.nii.gz") for n in names}, summary=str(out / "summary.json")
    )
    smk.params = namedlist(
        subjects=["sub-01", "sub-02", "sub-03", "sub-04"], fdr_alpha=0.05, alternative="greater"
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
    names = ("t", "p", "q", "fdr_mask", "mean_r")
    smk = type("Smk", (), {})()
    smk.input = namedlist(maps=[*map(str, paths), str(other)], code=[])
    smk.output = namedlist(
        **{n: str(out / f"{n}.nii.gz") for n in names}, summary=str(out / "summary.json")
    )
    smk.params = namedlist(subjects=["a", "b", "c"], fdr_alpha=0.05, alternative="greater")
    smk.wildcards = namedlist(model="m")
    smk.log = namedlist([str(tmp_path / "group.log")])
    smk.threads = 1
    with pytest.raises(InputError, match=r"shape \(4, 4, 4\) vs \(4, 4, 3\)"):
        run_script(str(REPO / "scripts" / "group_stats.py"), init_globals={"snakemake": smk})
    assert not out.exists() or not any(out.iterdir())
    assert "other.nii.gz [affine]: grid differs" in (tmp_path / "group.log").read_text()
