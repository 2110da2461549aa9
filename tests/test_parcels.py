"""fMRI parcel targets get score maps and group statistics (neural.fmri.atlas).

Ingest stores the parcels on the data grid (``parcels``, ``affine``, ``target_labels``),
encoding copies them into scores.h5, :func:`neurovid.stats.scores_to_images` paints each
parcel's score over its voxels, and :func:`neurovid.stats.group_test` tests per parcel.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import scipy.stats

from neurovid import denoise, encoding, io, neural, stats
from neurovid.denoise import DenoiseSettings
from neurovid.errors import InputError

TR = 2.0
AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])
SHAPE = (4, 3, 2)


def _labels() -> np.ndarray:
    """Three parcels of 6, 6 and 4 voxels; label 9 has a name but lies outside the mask."""
    labels = np.zeros(SHAPE, int)
    labels[0] = 1
    labels[1] = 2
    labels[2, :2] = 5
    labels[3, 0, 0] = 9
    return labels


def _ingest(tmp: Path, name: str, data: np.ndarray) -> Path:
    """What scripts/ingest.py does with ``neural.fmri.atlas`` set."""
    atlas_path, names = tmp / "atlas.nii.gz", tmp / "atlas.tsv"
    if not atlas_path.exists():
        nib.Nifti1Image(_labels().astype(np.int16), AFFINE).to_filename(atlas_path)
        table = {"index": [1, 2, 5, 9], "name": ["V1", "MT", "A1", "out"]}
        pd.DataFrame(table).to_csv(names, sep="\t", index=False)
        mask = np.ones(SHAPE, np.uint8)
        mask[3] = 0  # label 9 falls outside the analysis mask: dropped
        nib.Nifti1Image(mask, AFFINE).to_filename(tmp / "mask.nii.gz")
    run = tmp / f"{name}.nii.gz"
    img = nib.Nifti1Image(data.astype(np.float32), AFFINE)
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = TR
    img.to_filename(run)
    rec = neural.ingest_fmri(run, mask_img=neural.load_mask(tmp / "mask.nii.gz"), tr=TR)
    off = DenoiseSettings(detrend_order=None, high_pass_s=None)
    rec = denoise.denoise_recording(
        rec, off, atlas={"labels": str(atlas_path), "names": str(names)}, recording_id=name
    )
    out = tmp / "neural" / f"{name}.h5"
    attrs = {"recording_id": name, "subject": "s1", "modality": "fmri"}
    rec.write(out, {**attrs, "sampling_rate": rec.sampling_rate})
    return out


def test_parcel_scores_painted_over_their_voxels_from_ingest_to_maps(tmp_path):
    rng = np.random.default_rng(0)
    n, runs, responses, features = 40, ["r1", "r2", "r3"], [], []
    for run in runs:
        X = rng.normal(size=(n, 3))
        data = rng.normal(size=(*SHAPE, n)) + 50
        data[_labels() == 1] += X @ [2.0, 0.0, 1.0]  # V1 follows the features
        responses.append(_ingest(tmp_path, run, data))
        fpath = tmp_path / "aligned" / f"{run}.h5"
        io.write_features(fpath, X, (np.arange(n) + 0.5) * TR, {"recording": run})
        features.append(fpath)
    rs = io.read_responses(responses[0])
    expected = np.where(np.isin(_labels(), [1, 2, 5]), _labels(), 0)  # 9: outside the mask
    assert rs.target_names.tolist() == ["V1", "MT", "A1"]
    assert rs.target_labels.tolist() == [1, 2, 5] and np.array_equal(rs.parcels, expected)
    assert rs.mask is None and rs.voxel_ijk is None

    data = encoding.load_subject(runs, responses, features, ["me"], zscore=True)
    result = encoding.encode_subject(
        data.runs, estimator="ridge", alphas=[1, 10], pca_variance=1.0, delays=[0]
    )
    out = tmp_path / "enc"
    paths = {
        k: out / f"{k}.{ext}"
        for k, ext in [
            ("scores", "h5"),
            ("table", "tsv"),
            ("metrics", "tsv"),
            ("predictions", "h5"),
            ("weights", "h5"),
        ]
    }
    encoding.write_outputs(result, data, paths, attrs={"model": "m"}, top_k=2)
    arrays, _ = io.read_h5(paths["scores"])
    assert np.array_equal(arrays["parcels"], expected) and "voxel_ijk" not in arrays
    assert arrays["target_labels"].tolist() == [1, 2, 5]
    assert pd.read_csv(paths["table"], sep="\t")["label"].tolist() == [1, 2, 5]

    r_img, r2_img = stats.scores_to_images(paths["scores"])
    assert r_img.header["descrip"].item() == stats.PARCEL_MAP.encode()
    for img, values in ((r_img, result.r), (r2_img, result.r2)):
        volume = np.asarray(img.dataobj)
        for label, value in zip([1, 2, 5], values, strict=True):
            assert np.all(volume[expected == label] == np.float32(value))
        assert np.isnan(volume[expected == 0]).all()  # background and label 9
    assert result.r[0] > 0.8  # V1 carries the signal


def test_paint_parcels_leaves_unscored_labels_nan():
    parcels = np.array([[[0, 3], [3, 7]], [[7, 7], [4, 0]]])
    volume = stats.paint_parcels(parcels, np.array([7, 3]), np.array([0.5, -0.25]))
    assert volume[parcels == 7].tolist() == [0.5] * 3
    assert volume[parcels == 3].tolist() == [-0.25] * 2
    assert np.isnan(volume[(parcels == 0) | (parcels == 4)]).all()  # 4: no target


def _scores(path: Path, r: np.ndarray, parcels: np.ndarray | None = None) -> Path:
    labels = np.array([1, 2, 3])
    geometry = {"parcels": parcels, "affine": AFFINE, "target_labels": labels}
    if parcels is None:  # voxel targets: the first three voxels
        ijk = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]], dtype=np.int32)
        geometry = {"mask": np.ones(SHAPE, np.uint8), "affine": AFFINE, "voxel_ijk": ijk}
    io.write_h5(path, {"r": r, "r2": r**2, **geometry}, {})
    return path


def test_group_stats_test_each_parcel_once_and_paint_it(tmp_path):
    parcels = np.zeros(SHAPE, int)
    parcels[0], parcels[1], parcels[2:, 0] = 1, 2, 3  # 6, 6 and 4 voxels
    r = np.array([[0.3, 0.02, 0.1], [0.25, -0.05, 0.2], [0.35, 0.04, 0.05], [0.3, 0.0, 0.12]])
    maps = []
    for s, values in enumerate(r):
        scores = _scores(tmp_path / f"s{s}.h5", values, parcels)
        (img,) = stats.scores_to_images(scores, ["r"])
        stats.write_nifti(tmp_path / f"s{s}_r.nii.gz", img)
        maps.append(tmp_path / f"s{s}_r.nii.gz")
    result = stats.group_test(maps, fdr_alpha=0.05)
    t_parcel, p_parcel = scipy.stats.ttest_1samp(stats.fisher_z(r), 0, alternative="greater")
    q_parcel = scipy.stats.false_discovery_control(p_parcel)  # the family: 3 parcels
    t, q = (np.asarray(result.images[k].dataobj) for k in ("t", "q"))
    for k, label in enumerate([1, 2, 3]):
        assert np.allclose(t[parcels == label], t_parcel[k], rtol=1e-5)
        assert np.allclose(q[parcels == label], q_parcel[k], rtol=1e-5)
    assert np.isnan(t[parcels == 0]).all() and (q[parcels == 0] == 1).all()
    s = result.summary
    assert s["units"] == "parcels" and s["n_tests"] == 3 and s["n_voxels"] == 16
    fdr = np.asarray(result.images["fdr_mask"].dataobj)
    assert fdr.sum() == 6 * (q_parcel[0] < 0.05) + 6 * (q_parcel[1] < 0.05) + 4 * (
        q_parcel[2] < 0.05
    )
    assert q_parcel[0] < 0.05  # parcel 1 is significant in this toy group


def test_group_stats_refuse_a_mix_of_parcel_and_voxel_maps(tmp_path):
    parcels = np.zeros(SHAPE, int)
    parcels[0], parcels[1], parcels[2] = 1, 2, 3
    maps = []
    for s, grid in enumerate([parcels, None, parcels]):
        scores = _scores(tmp_path / f"s{s}.h5", np.array([0.1, 0.2, 0.3]) * (s + 1), grid)
        (img,) = stats.scores_to_images(scores, ["r"])
        stats.write_nifti(tmp_path / f"s{s}_r.nii.gz", img)
        maps.append(tmp_path / f"s{s}_r.nii.gz")
    voxel = np.asarray(nib.load(maps[1]).dataobj)
    assert voxel[0, 0, 0] == np.float32(0.2) and np.isnan(voxel[0, 1, 0])  # voxel targets
    with pytest.raises(InputError) as err:
        stats.group_test(maps, fdr_alpha=0.05)
    msg = str(err.value)
    assert str(maps[1]) in msg and "is a voxel map but" in msg and "neural.fmri.atlas" in msg


def test_summary_counts_a_parcel_significant_when_its_voxels_are(tmp_path):
    from neurovid import summary

    parcels = np.zeros(SHAPE, int)
    parcels[0], parcels[1], parcels[2] = 1, 2, 3
    fdr_mask = (parcels == 2).astype(np.uint8)
    arrays = {"parcels": parcels, "target_labels": np.array([3, 2, 1])}
    hit = summary.significant_targets(arrays, fdr_mask, "scores.h5", "fdr_mask.nii.gz")
    assert hit.tolist() == [False, True, False]
