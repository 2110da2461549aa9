"""Neural ingest: fMRI NIfTI (resampling, masking, TR, NaN checks), spike/calcium tables, scripts/ingest.py."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from conftest import run_script
from snakemake.io import Namedlist

from neurovid import neural
from neurovid.errors import InputError
from neurovid.io import read_responses

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers


def small_mask(tmp_path: Path) -> tuple[nib.Nifti1Image, Path]:
    """A 3 mm mask on a 12x10x8 grid at the origin; a 6x5x4 block of it is 'brain'."""
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = [-18.0, -15.0, -12.0]
    data = np.zeros((12, 10, 8), dtype=np.uint8)
    data[3:9, 2:7, 2:6] = 1
    path = tmp_path / "mask.nii.gz"
    nib.Nifti1Image(data, affine).to_filename(path)
    return neural.load_mask(path), path


def bold(data: np.ndarray, affine: np.ndarray, tr: float | None = 2.0) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data.astype(np.float32), affine)
    if tr is not None and data.ndim == 4:
        img.header.set_zooms((*img.header.get_zooms()[:3], tr))
        img.header.set_xyzt_units("mm", "sec")
    return img


def coarse_linear(n_vols: int = 12) -> tuple[nib.Nifti1Image, callable]:
    """A 6 mm image that is linear in space (mm) plus a per-volume offset, covering the mask."""
    affine = np.diag([6.0, 6.0, 6.0, 1.0])
    affine[:3, 3] = [-48.0, -42.0, -36.0]
    shape = (17, 15, 13)

    def value(xyz: np.ndarray, t: np.ndarray) -> np.ndarray:
        return 100 + 2.0 * xyz[..., 0] - 1.0 * xyz[..., 1] + 0.5 * xyz[..., 2] + 10.0 * t

    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    xyz = nib.affines.apply_affine(affine, ijk)
    data = np.stack([value(xyz, np.full(shape, t)) for t in range(n_vols)], axis=-1)
    return bold(data, affine, tr=2.0), value


# --------------------------------------------------------------------------- masks


def test_bundled_gray_matter_mask() -> None:
    mask = neural.load_mask("mni152_gm", 3)
    assert mask.shape == (67, 79, 64)
    assert int(np.asarray(mask.dataobj).sum()) == 64292
    np.testing.assert_allclose(np.diag(mask.affine)[:3], [3, 3, 3])


def test_mask_file_must_be_3d_nifti(tmp_path: Path) -> None:
    four_d = tmp_path / "four_d.nii.gz"
    nib.Nifti1Image(np.ones((4, 4, 4, 3), np.uint8), np.eye(4)).to_filename(four_d)
    with pytest.raises(
        InputError,
        match=r"four_d.nii.gz: the mask has shape \(4, 4, 4, 3\); it must be a 3-D image",
    ):
        neural.load_mask(four_d)
    text = tmp_path / "mask.nii"
    text.write_text("not an image")
    with pytest.raises(InputError, match="cannot be read as a NIfTI image.*neural.fmri.mask"):
        neural.load_mask(text)


# --------------------------------------------------------------------------- fMRI


def test_coarse_image_is_resampled_to_the_mask_grid(tmp_path: Path) -> None:
    mask, _ = small_mask(tmp_path)
    img, value = coarse_linear(n_vols=12)
    path = tmp_path / "run.nii.gz"
    img.to_filename(path)

    rec = neural.ingest_fmri(path, mask_img=mask)

    ijk = np.argwhere(np.asarray(mask.dataobj) > 0)
    assert rec.responses.shape == (12, 6 * 5 * 4)
    np.testing.assert_array_equal(rec.voxel_ijk, ijk)
    np.testing.assert_array_equal(rec.mask, np.asarray(mask.dataobj))
    np.testing.assert_array_equal(rec.affine, mask.affine)
    assert rec.target_names[0] == "voxel_3_2_2"
    # A linear field is reproduced exactly by spline interpolation at the mask's voxel centres.
    xyz = nib.affines.apply_affine(mask.affine, ijk)
    expected = np.stack([value(xyz, np.full(len(xyz), t)) for t in range(12)])
    np.testing.assert_allclose(rec.responses, expected, rtol=0, atol=1e-2)
    np.testing.assert_allclose(rec.times, (np.arange(12) + 0.5) * 2.0)  # TR 2 s from the header
    assert rec.sampling_rate == 0.5 and rec.duration == 24.0
    assert rec.info["resampled"] is True and rec.info["tr_source"] == "header"


def test_same_grid_is_masked_without_resampling_and_sheet_tr_wins(tmp_path: Path) -> None:
    mask, _ = small_mask(tmp_path)
    rng = np.random.default_rng(0)
    data = rng.normal(1000, 10, (*mask.shape, 10)).astype(np.float32)
    path = tmp_path / "run.nii"
    bold(data, mask.affine, tr=2.0).to_filename(path)

    rec = neural.ingest_fmri(path, mask_img=mask, tr=1.5)

    inside = np.asarray(mask.dataobj) > 0
    np.testing.assert_array_equal(rec.responses, data[inside].T)
    np.testing.assert_allclose(rec.times, (np.arange(10) + 0.5) * 1.5)
    assert rec.info == {
        "tr": 1.5,
        "tr_source": "sheet",
        "resampled": False,
        "shape": [12, 10, 8, 10],
    }


def test_header_tr_in_milliseconds(tmp_path: Path) -> None:
    mask, _ = small_mask(tmp_path)
    img = bold(np.ones((*mask.shape, 10)), mask.affine, tr=None)
    img.header.set_zooms((3, 3, 3, 800.0))
    img.header.set_xyzt_units("mm", "msec")
    assert neural.header_tr(img) == pytest.approx(0.8)


def test_all_nan_voxels_fail_or_are_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    mask, _ = small_mask(tmp_path)
    data = np.full((*mask.shape, 10), 1000.0)
    data[4, 3, 2, :] = np.nan  # in the mask
    data[5, 3, 2, :] = np.nan
    path = tmp_path / "run.nii.gz"
    bold(data, mask.affine).to_filename(path)

    with pytest.raises(InputError) as err:
        neural.ingest_fmri(path, mask_img=mask)
    message = str(err.value)
    assert message.startswith(f"{path}: 2 of 120 in-mask voxels have no finite value in any volume")
    assert "voxel ijk (4, 3, 2) at (-6, -6, -6) mm" in message
    assert "set `neural.fmri.drop_nan_voxels: true`" in message

    with caplog.at_level(logging.WARNING, logger="neurovid.neural"):
        rec = neural.ingest_fmri(path, mask_img=mask, drop_nan_voxels=True)
    assert rec.responses.shape == (10, 118)
    assert not any((rec.voxel_ijk == ijk).all(axis=1).any() for ijk in ([4, 3, 2], [5, 3, 2]))
    assert rec.mask[4, 3, 2] == 0 and rec.mask.sum() == 118
    assert "dropping 2 of 120 in-mask voxels" in caplog.text


def test_nan_at_some_time_points_names_the_volumes(tmp_path: Path) -> None:
    mask, _ = small_mask(tmp_path)
    data = np.full((*mask.shape, 12), 1000.0)
    data[4, 3, 2, [3, 7]] = np.nan
    path = tmp_path / "run.nii.gz"
    bold(data, mask.affine).to_filename(path)
    with pytest.raises(
        InputError,
        match=r"1 in-mask voxels have NaN or infinite values in 2 of 12 volumes \(0-based volume indices: 3, 7\)",
    ):
        neural.ingest_fmri(path, mask_img=mask)


@pytest.mark.filterwarnings("ignore:Resampling binary images")  # the test image is constant
def test_mask_voxels_outside_the_field_of_view_are_reported(tmp_path: Path) -> None:
    mask, _ = small_mask(tmp_path)
    affine = np.diag([6.0, 6.0, 6.0, 1.0])
    affine[:3, 3] = [0.0, -42.0, -36.0]  # starts at x = 0 mm: misses the mask's left part
    path = tmp_path / "run.nii.gz"
    bold(np.ones((17, 15, 13, 10)), affine).to_filename(path)
    with pytest.raises(
        InputError,
        match=r"in-mask voxels have no finite value in any volume \(NaN or outside the image's field of view\)",
    ):
        neural.ingest_fmri(path, mask_img=mask)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda p, m: bold(np.ones(m.shape), m.affine).to_filename(p),
            r"the image is 3-D with shape \(12, 10, 8\); an fMRI run must be 4-D \(x, y, z, time\)\. Fix: give the whole run as one 4-D file",
        ),
        (
            lambda p, m: p.write_bytes(b"this is not a NIfTI file"),
            r"cannot be read as a NIfTI image .* Fix: give a 4-D NIfTI file",
        ),
        (
            lambda p, m: bold(np.ones((*m.shape, 10)), m.affine, tr=None).to_filename(p),
            r"\[tr\]: no TR: the sample sheet gives none and the header's pixdim\[4\]=1 has time unit 'unknown'\. Fix: set `tr` \(seconds\)",
        ),
        (
            lambda p, m: bold(np.ones((*m.shape, 5)), m.affine).to_filename(p),
            r"the run has only 5 volumes; at least 10 are needed",
        ),
    ],
    ids=["3d", "not-nifti", "no-tr", "few-volumes"],
)
def test_bad_fmri_inputs(tmp_path: Path, make, message: str) -> None:
    mask, _ = small_mask(tmp_path)
    path = tmp_path / "run.nii.gz"
    make(path, mask)
    with pytest.raises(InputError, match=message) as err:
        neural.ingest_fmri(path, mask_img=mask)
    assert str(err.value).startswith(str(path))


# --------------------------------------------------------------------------- tables


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_wide_table_with_time_column(tmp_path: Path) -> None:
    path = write(tmp_path / "rec.tsv", "time\tn1\tn2\n0.05\t1\t0.5\n0.15\t2\t1.5\n")
    rec = neural.ingest_table(path, modality="calcium", sampling_rate=10)
    np.testing.assert_array_equal(rec.responses, [[1, 0.5], [2, 1.5]])
    np.testing.assert_allclose(rec.times, [0.05, 0.15])
    assert list(rec.target_names) == ["n1", "n2"] and rec.sampling_rate == 10
    assert rec.responses.dtype == np.float32 and rec.modality == "calcium"


def test_wide_csv_without_time_uses_the_sampling_rate(tmp_path: Path) -> None:
    path = write(tmp_path / "rec.csv", "a,b,c\n0,1,2\n3,4,5\n6,7,8\n")
    rec = neural.ingest_table(path, modality="spikes", sampling_rate=4)
    np.testing.assert_allclose(rec.times, [0.125, 0.375, 0.625])
    np.testing.assert_array_equal(rec.responses[:, 2], [2, 5, 8])
    assert rec.duration == 0.75


def test_spike_times_are_binned(tmp_path: Path) -> None:
    path = write(
        tmp_path / "spikes.tsv",
        "unit\tspike_time\n2\t0.05\n2\t0.07\n10\t0.0\n2\t0.15\n2\t0.3\n10\t0.99\n",
    )
    rec = neural.ingest_table(path, modality="spikes", sampling_rate=10)
    # Units ordered numerically; 0.3 s lies exactly on an edge -> the later bin (3).
    assert list(rec.target_names) == ["2", "10"]
    expected = np.zeros((10, 2))
    expected[[0, 1, 3], 0] = [2, 1, 1]
    expected[[0, 9], 1] = [1, 1]
    np.testing.assert_array_equal(rec.responses, expected)
    np.testing.assert_allclose(rec.times, (np.arange(10) + 0.5) / 10)
    assert rec.info["length_from"] == "last spike"
    longer = neural.ingest_table(path, modality="spikes", sampling_rate=10, duration=2.0)
    assert longer.responses.shape == (20, 2) and longer.responses[10:].sum() == 0


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        (
            "time\tn1\tn2\n0.05\t1\t2\n0.15\t3\tabc\n",
            {},
            r"\[n2\]: row 3 \(data row 2\): 'abc' is not a number",
        ),
        (
            "time\tn1\tn2\n0.05\t1\t\n0.15\t3\tnan\n",
            {},
            r"\[n2\]: neuron column `n2` has no numeric value",
        ),
        (
            "time\tn1\n0.05\t1\n0.15\t\n0.25\t3\n",
            {},
            r"\[n1\]: neuron column `n1` is empty, NaN or infinite in 1 rows \(3\)",
        ),
        ("time\tn1\n0.05\t1\n0.15\t2\n0.35\t3\n", {}, r"\[time\]: `time` is unevenly spaced"),
        (
            "time\tn1\n0.05\t1\n0.15\t2\n",
            {"sampling_rate": 30},
            r"sampled at 10 Hz but the sample sheet says sampling_rate=30 Hz",
        ),
        (
            "n1\tn2\n1\t2\n3\t4\n",
            {},
            r"\[sampling_rate\]: has no `time` column and no sampling rate is given",
        ),
        (
            "unit\tspike_time\na\t0.1\n",
            {},
            r"\[sampling_rate\]: is a spike-times table .* no sampling rate",
        ),
        ("time\n0.05\n0.15\n", {}, r"has no neuron columns \(columns: time\)"),
        (
            "unit\tspike_time\na\t-1\n",
            {"sampling_rate": 10},
            r"\[spike_time\]: `spike_time` is empty, NaN or negative in rows 2",
        ),
    ],
    ids=[
        "non-numeric",
        "all-nan",
        "gap",
        "uneven",
        "rate-mismatch",
        "no-rate",
        "spikes-no-rate",
        "no-neurons",
        "negative-spike",
    ],
)
def test_bad_tables(tmp_path: Path, text: str, kwargs: dict, message: str) -> None:
    path = write(tmp_path / "rec.tsv", text)
    with pytest.raises(InputError, match=message) as err:
        neural.ingest_table(path, modality="spikes", **kwargs)
    assert str(err.value).startswith(str(path)) and "Fix:" in str(err.value)


def test_unknown_table_format_and_modality(tmp_path: Path) -> None:
    with pytest.raises(
        InputError, match=r"unknown table format \(the name must end in .tsv or .csv\)"
    ):
        neural.ingest_table(write(tmp_path / "rec.xlsx", "x"), modality="spikes", sampling_rate=10)
    path = write(tmp_path / "rec.tsv", "n1\n1\n2\n")
    with pytest.raises(
        InputError,
        match=r"rec.tsv \[modality\]: unknown modality 'eeg'\. Fix: use one of fmri, spikes, calcium",
    ):
        neural.ingest_recording(path, modality="eeg", sampling_rate=10)
    assert neural.ingest_recording(path, modality="calcium", sampling_rate=10).responses.shape == (
        2,
        1,
    )


def test_sheet_number() -> None:
    assert neural.sheet_number(float("nan")) is None
    assert neural.sheet_number(None) is None and neural.sheet_number("") is None
    assert neural.sheet_number(np.float64(2.0)) == 2.0


# --------------------------------------------------------------------------- script


def run_ingest(tmp_path: Path, recording: Path, modality: str, **params) -> Path:
    out = tmp_path / "results" / "neural" / "rec.h5"
    smk = SimpleNamespace(
        input=Namedlist(fromdict={"recording": str(recording), "code": []}),
        output=Namedlist([str(out)]),
        params=Namedlist(
            fromdict={
                "recording_id": "rec",
                "subject": "s1",
                "modality": modality,
                "tr": params.get("tr", float("nan")),
                "sampling_rate": params.get("sampling_rate", float("nan")),
                "fmri": params.get(
                    "fmri", {"mask": "mni152_gm", "resolution_mm": 3, "drop_nan_voxels": False}
                ),
            }
        ),
        log=Namedlist([str(tmp_path / "ingest.log")]),
        threads=1,
    )
    run_script(str(REPO / "scripts" / "ingest.py"), init_globals={"snakemake": smk})
    return out


def test_ingest_script_writes_the_contract_with_provenance(tmp_path: Path) -> None:
    _, mask_path = small_mask(tmp_path)
    img, _ = coarse_linear(n_vols=10)
    path = tmp_path / "run.nii.gz"
    img.to_filename(path)
    fmri = {"mask": str(mask_path), "resolution_mm": 3, "drop_nan_voxels": False}
    out = run_ingest(tmp_path, path, "fmri", tr=2.0, fmri=fmri)
    rs = read_responses(out)
    assert rs.responses.shape == (10, 120) and rs.voxel_ijk.shape == (120, 3)
    assert rs.mask.sum() == 120
    assert rs.attrs["recording_id"] == "rec" and rs.attrs["subject"] == "s1"
    assert rs.attrs["modality"] == "fmri" and rs.attrs["sampling_rate"] == 0.5
    assert rs.attrs["duration"] == 20.0 and rs.attrs["source"] == str(path)
    prov = rs.attrs["provenance"]
    assert prov["step"] == "ingest" and prov["params"]["tr"] == 2.0
    assert prov["inputs"]["recording"]["digest"].startswith("sha256:")
    assert prov["inputs"]["mask"]["path"] == str(mask_path)
    assert "10 samples x 120 targets at 0.5 Hz" in (tmp_path / "ingest.log").read_text()


def test_ingest_script_leaves_no_output_on_bad_input(tmp_path: Path) -> None:
    path = write(tmp_path / "rec.tsv", "time\tn1\n0.05\t1\n0.15\tx\n")
    with pytest.raises(InputError, match="'x' is not a number"):
        run_ingest(tmp_path, path, "spikes", sampling_rate=10.0)
    out_dir = tmp_path / "results" / "neural"
    assert not out_dir.exists() or not any(out_dir.iterdir())
    assert "ingest failed" in (tmp_path / "ingest.log").read_text()


def test_truncated_nifti_is_reported(tmp_path: Path) -> None:
    mask, _ = small_mask(tmp_path)
    rng = np.random.default_rng(0)
    path = tmp_path / "run.nii.gz"
    bold(rng.normal(size=(*mask.shape, 10)), mask.affine).to_filename(path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(
        InputError,
        match=r"the image data cannot be read .* Fix: re-export the file; it may be truncated",
    ):
        neural.ingest_fmri(path, mask_img=mask)
