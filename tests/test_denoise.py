"""fMRI denoising (neurovid.denoise): drift, motion, censoring, parcels; censoring in encoding."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from neurovid import denoise, encoding, io, neural
from neurovid.denoise import DenoiseSettings
from neurovid.errors import InputError

TR = 2.0
MOTION = denoise.MOTION_PARAMS


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def _smooth(rng: np.random.Generator, n: int, k: int = 5) -> np.ndarray:
    x = rng.normal(size=n + k)
    return np.convolve(x, np.ones(k) / k, mode="valid")[:n]


def _motion(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """fMRIPrep-style motion columns: 6 random walks + derivatives, squares (24)."""
    table = {}
    for name in MOTION:
        base = np.cumsum(rng.normal(scale=0.05, size=n))
        deriv = np.r_[np.nan, np.diff(base)]
        table[name] = base
        table[f"{name}_derivative1"] = deriv
        table[f"{name}_power2"] = base**2
        table[f"{name}_derivative1_power2"] = deriv**2
    return pd.DataFrame(table)


def _artefact(table: pd.DataFrame, rng: np.random.Generator, n_targets: int) -> np.ndarray:
    """A motion artefact in every target: a random mix of the 24 parameters."""
    X = table.bfill().to_numpy()  # first-row n/a as the cleaning fills it
    X = (X - X.mean(0)) / X.std(0)
    return X @ rng.normal(size=(X.shape[1], n_targets))


def _write_confounds(path: Path, table: pd.DataFrame) -> Path:
    table.to_csv(path, sep="\t", index=False, na_rep="n/a")
    return path


# --------------------------------------------------------------------------- cleaning


def test_detrend_and_high_pass_remove_planted_drift():
    rng = np.random.default_rng(0)
    n = 240
    t = np.arange(n) * TR
    signal = np.sin(2 * np.pi * t / 24.0)  # 0.042 Hz, far above 1/128 Hz
    drift = 3 * (t / t[-1]) + 2 * (t / t[-1]) ** 2 + 1.5 * np.cos(2 * np.pi * t / 480.0)
    Y = (signal + drift + 0.1 * rng.normal(size=n) + 100.0)[:, None]
    off = DenoiseSettings(detrend_order=None, high_pass_s=None)
    on = DenoiseSettings(detrend_order=2, high_pass_s=128.0)
    raw = denoise.clean_run(Y, TR, off)[:, 0]
    clean = denoise.clean_run(Y, TR, on)[:, 0]
    print(f"r(raw, signal) {_corr(raw, signal):.3f}, r(cleaned, signal) {_corr(clean, signal):.3f}")
    assert _corr(raw, signal) < 0.5
    assert _corr(clean, signal) > 0.98
    assert abs(clean.mean()) < 1e-6  # the mean is gone
    # What is left beyond the signal is about the noise, not the drift (drift std ~1.2).
    assert np.std(clean - signal) < 0.15


def test_motion_24_regression_removes_artefact_keeps_signal(tmp_path):
    rng = np.random.default_rng(1)
    n, n_targets = 300, 8
    table = _motion(rng, n)
    signal = np.stack([_smooth(rng, n, 2) for _ in range(n_targets)], axis=1)
    signal /= signal.std(0)
    Y = signal + 2.0 * _artefact(table, rng, n_targets)
    path = _write_confounds(tmp_path / "confounds.tsv", table)
    rs = {}
    for motion in (0, 6, 24):
        settings = DenoiseSettings(detrend_order=0, high_pass_s=None, motion=motion)
        out = denoise.denoise_run(Y, TR, settings, confounds_path=path)
        rs[motion] = np.mean([_corr(out.responses[:, j], signal[:, j]) for j in range(n_targets)])
    print("mean r with the planted signal by motion strategy:", rs)
    assert rs[0] < 0.3
    assert rs[24] > 0.9
    assert rs[24] > rs[6] + 0.5  # the artefact lives in the derivatives and squares too
    # The artefact is gone entirely: what is left is the signal's part orthogonal to the
    # 24 parameters (ordinary least squares with an intercept).
    X = np.c_[np.ones(n), table.bfill().to_numpy()]
    expected = signal - X @ np.linalg.lstsq(X, signal, rcond=None)[0]
    assert np.allclose(out.responses, expected, atol=1e-4)


def test_cleaning_regresses_confounds_on_kept_volumes_only(tmp_path):
    """Censored volumes do not bias the confound fit, and hold 0."""
    rng = np.random.default_rng(2)
    n = 120
    table = _motion(rng, n)
    fd = np.abs(rng.normal(scale=0.1, size=n))
    fd[[30, 31, 77]] = 2.0
    table["framewise_displacement"] = np.r_[np.nan, fd[1:]]
    signal = _smooth(rng, n)[:, None]
    Y = signal + table[["trans_x"]].to_numpy()
    Y[[30, 31, 77]] += 50.0  # spikes at the high-motion volumes
    path = _write_confounds(tmp_path / "c.tsv", table)
    settings = DenoiseSettings(detrend_order=0, high_pass_s=None, motion=6, fd_threshold_mm=0.5)
    out = denoise.denoise_run(Y, TR, settings, confounds_path=path)
    assert out.censored.sum() == 3 and out.censored[[30, 31, 77]].all()
    assert np.all(out.responses[out.censored] == 0)
    kept = ~out.censored
    assert _corr(out.responses[kept, 0], signal[kept, 0]) > 0.95
    assert out.info["n_censored"] == 3 and out.info["censored_volumes"] == [30, 31, 77]


# --------------------------------------------------------------------------- encoding


def _simulated_subject(denoised: bool, rng_seed: int = 3) -> float:
    """Held-out mean r of a planted feature response under drift + motion artefacts."""
    rng = np.random.default_rng(rng_seed)
    n, n_runs, n_dims, n_targets = 160, 4, 6, 10
    W = rng.normal(size=(n_dims, n_targets))
    runs = []
    t = np.arange(n) * TR
    for k in range(n_runs):
        X = np.stack([_smooth(rng, n, 3) for _ in range(n_dims)], axis=1).astype(np.float32)
        signal = X @ W
        signal /= signal.std(0)
        table = _motion(rng, n)
        drift = np.outer(
            3 * t / t[-1] + np.cos(2 * np.pi * t / 400.0), rng.uniform(1, 3, n_targets)
        )
        Y = signal + 2.0 * drift + 1.5 * _artefact(table, rng, n_targets)
        Y += 0.5 * rng.normal(size=Y.shape)
        if denoised:
            settings = DenoiseSettings(detrend_order=2, high_pass_s=128.0, motion=24)
            Y = denoise.clean_run(Y, TR, settings, denoise.confound_matrix(table, list(table), "c"))
        Y = encoding.zscore_runs(Y, [n])
        runs.append((f"run{k}", X, Y))
    result = encoding.encode_subject(
        runs, estimator="ridge", alphas=[1, 10, 100, 1000], pca_variance=1.0, delays=[0]
    )
    return float(np.nanmean(result.r))


def test_denoising_raises_held_out_r_of_planted_signal():
    off, on = _simulated_subject(False), _simulated_subject(True)
    print(f"held-out mean r: denoising off {off:.3f}, on {on:.3f}")
    assert on > off + 0.2
    assert on > 0.5


def _write_run(tmp: Path, name: str, data: np.ndarray) -> Path:
    path = tmp / f"{name}.nii.gz"
    img = nib.Nifti1Image(data.astype(np.float32), np.diag([3.0, 3.0, 3.0, 1.0]))
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = TR
    img.to_filename(path)
    return path


def _mask(tmp: Path, shape=(3, 3, 2)) -> nib.Nifti1Image:
    path = tmp / "mask.nii.gz"
    nib.Nifti1Image(np.ones(shape, np.uint8), np.diag([3.0, 3.0, 3.0, 1.0])).to_filename(path)
    return neural.load_mask(path)


def _ingest(tmp, name, data, settings, confounds=None, atlas=None) -> Path:
    """What scripts/ingest.py does: read, denoise, write results/neural/{name}.h5."""
    out = tmp / "neural" / f"{name}.h5"
    rec = neural.ingest_fmri(_write_run(tmp, name, data), mask_img=_mask(tmp), tr=TR)
    rec = denoise.denoise_recording(
        rec, settings, confounds_path=confounds, atlas=atlas, recording_id=name
    )
    attrs = {"recording_id": name, "subject": "s1", "modality": "fmri"}
    attrs.update(sampling_rate=rec.sampling_rate, ingest=rec.info)
    rec.write(out, attrs)
    return out


def test_censored_counts_in_neural_file_and_in_encoding_rows(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    n, censor = 60, {"r1": [5, 6], "r2": [], "r3": [40, 41, 42, 59]}
    settings = DenoiseSettings(motion=6, fd_threshold_mm=0.5, high_pass_s=64.0)
    responses, features = [], []
    for run, bad in censor.items():
        table = _motion(rng, n)
        fd = np.full(n, 0.1)
        fd[bad] = 1.5
        table["framewise_displacement"] = np.r_[np.nan, fd[1:]]
        conf = _write_confounds(tmp_path / f"{run}_confounds.tsv", table)
        X = rng.normal(size=(n, 4))
        data = rng.normal(size=(3, 3, 2, n)) + (X @ rng.normal(size=4))[None, None, None, :]
        responses.append(_ingest(tmp_path, run, data + 100, settings, confounds=conf))
        fpath = tmp_path / "aligned" / f"{run}.h5"
        io.write_features(fpath, X, (np.arange(n) + 0.5) * TR, {"recording": run})
        features.append(fpath)
        rs = io.read_responses(responses[-1])
        assert rs.censored.dtype == bool and rs.censored.sum() == len(bad)
        assert np.flatnonzero(rs.censored).tolist() == bad
        assert rs.attrs["ingest"]["denoise"]["n_censored"] == len(bad)
        assert rs.attrs["ingest"]["denoise"]["columns"] == MOTION

    data = encoding.load_subject(list(censor), responses, features, ["me"], zscore=True)
    assert data.censored_counts == {"r1": 2, "r2": 0, "r3": 4}
    for (_, _, Y), c in zip(data.runs, data.censored, strict=True):  # z-scored on kept rows
        assert np.allclose(Y[~c].mean(0), 0, atol=1e-5) and np.allclose(Y[~c].std(0), 1, atol=1e-4)

    seen: dict[str, list[int]] = {"pca": [], "fit": [], "score": []}
    real_fit, real_score, real_pca = (
        encoding.fit_estimator,
        encoding.score_predictions,
        encoding.fit_feature_model,
    )

    def fit(estimator, X, Y, *args, **kwargs):
        seen["fit"].append(len(X))
        assert len(Y) == len(X)
        return real_fit(estimator, X, Y, *args, **kwargs)

    def score(y_true, y_pred):
        seen["score"].append(len(y_true))
        return real_score(y_true, y_pred)

    def pca(X_fit, *args, **kwargs):
        seen["pca"].append(len(X_fit))
        return real_pca(X_fit, *args, **kwargs)

    monkeypatch.setattr(encoding, "fit_estimator", fit)
    monkeypatch.setattr(encoding, "score_predictions", score)
    monkeypatch.setattr(encoding, "fit_feature_model", pca)
    result = encoding.encode_subject(
        data.runs,
        estimator="ridge",
        alphas=[1, 100],
        pca_variance=1.0,
        delays=[0, 1, 2],
        censored=data.censored,
    )
    kept = {run: n - len(bad) for run, bad in censor.items()}  # 58, 60, 56
    runs = list(censor)
    # Outer folds fit on the other two runs' kept rows, then the refit on all three.
    fits = [sum(kept[r] for r in runs if r != held) for held in runs] + [sum(kept.values())]
    assert seen["fit"] == fits
    assert seen["score"] == [kept[r] for r in runs]
    assert set(fits) <= set(seen["pca"])  # PCA fit on kept rows (and inner splits of them)
    assert max(seen["pca"]) == sum(kept.values())
    assert result.n_train == fits[:3] and result.n_test == [kept[r] for r in runs]
    assert result.predictions[0].shape[0] == n  # censored samples are still predicted


def test_no_censoring_gives_the_same_scores_as_before():
    rng = np.random.default_rng(5)
    runs = [(f"r{k}", rng.normal(size=(40, 3)), rng.normal(size=(40, 4))) for k in range(3)]
    kwargs = dict(estimator="ridge", alphas=[1, 10], pca_variance=1.0, delays=[0, 1])
    plain = encoding.encode_subject(runs, **kwargs)
    masked = encoding.encode_subject(runs, censored=[np.zeros(40, bool)] * 3, **kwargs)
    assert np.array_equal(plain.r_folds, masked.r_folds)
    assert np.array_equal(plain.weights, masked.weights)


# --------------------------------------------------------------------------- bad input


def _run_data(n=30):
    return np.random.default_rng(6).normal(size=(3, 3, 2, n)) + 100


def test_confounds_rows_must_match_volumes(tmp_path):
    conf = _write_confounds(tmp_path / "c.tsv", _motion(np.random.default_rng(0), 29))
    with pytest.raises(InputError) as err:
        _ingest(tmp_path, "r1", _run_data(30), DenoiseSettings(motion=6), confounds=conf)
    msg = str(err.value)
    assert str(conf) in msg and "29 rows but the run has 30 volumes" in msg and "Fix:" in msg
    assert not (tmp_path / "neural" / "r1.h5").exists()


def test_more_regressors_than_a_short_run_can_take_is_refused(tmp_path):
    conf = _write_confounds(tmp_path / "c.tsv", _motion(np.random.default_rng(0), 30))
    with pytest.raises(InputError) as err:  # 30 volumes - (24 motion + 1 drift) < 10
        _ingest(tmp_path, "r1", _run_data(30), DenoiseSettings(motion=24), confounds=conf)
    msg = str(err.value)
    assert f"{conf} [denoise]" in msg and "keeps 30 volumes but its denoising regresses 25" in msg
    assert "motion: 6" in msg and not (tmp_path / "neural" / "r1.h5").exists()
    _ingest(tmp_path, "r1", _run_data(30), DenoiseSettings(motion=6), confounds=conf)  # 8: fine


def test_strategy_naming_missing_columns(tmp_path):
    table = _motion(np.random.default_rng(0), 30)[MOTION]
    table["a_comp_cor_00"] = 0.0
    conf = _write_confounds(tmp_path / "c.tsv", table)
    settings = DenoiseSettings(motion=24, acompcor=2, extra_confounds=("csf",))
    with pytest.raises(InputError) as err:
        _ingest(tmp_path, "r1", _run_data(), settings, confounds=conf)
    msg = str(err.value)
    assert f"{conf} [trans_x_derivative1]" in msg
    assert "needs 20 column(s) the confounds table lacks" in msg
    assert "a_comp_cor_01, csf" in msg and "It has: trans_x, trans_y" in msg
    assert "motion: 6" in msg  # the fix
    assert not (tmp_path / "neural" / "r1.h5").exists()


def test_fd_censoring_needs_framewise_displacement(tmp_path):
    conf = _write_confounds(tmp_path / "c.tsv", _motion(np.random.default_rng(0), 30))
    settings = DenoiseSettings(motion=6, fd_threshold_mm=0.5)
    with pytest.raises(InputError) as err:
        _ingest(tmp_path, "r1", _run_data(), settings, confounds=conf)
    msg = str(err.value)
    assert f"{conf} [framewise_displacement]" in msg
    assert "needs the column framewise_displacement" in msg
    assert "fd_threshold_mm: null" in msg
    assert not (tmp_path / "neural" / "r1.h5").exists()


def test_missing_confounds_file_skips_or_errors(tmp_path, caplog):
    settings = DenoiseSettings(motion=24, fd_threshold_mm=0.5)
    with caplog.at_level(logging.WARNING, logger="neurovid.denoise"):
        path = _ingest(tmp_path, "r1", _run_data(), settings)
    assert "r1: no confounds file; motion: 24; fd_threshold_mm: 0.5 skipped" in caplog.text
    info = io.read_responses(path).attrs["ingest"]["denoise"]
    assert info["skipped"] == ["motion: 24", "fd_threshold_mm: 0.5"] and info["confounds"] is None
    strict = DenoiseSettings(motion=24, require_confounds=True)
    with pytest.raises(InputError) as err:
        _ingest(tmp_path, "r2", _run_data(), strict)
    msg = str(err.value)
    assert "recordings.tsv [confounds]: recording 'r2' has no confounds file" in msg
    assert "motion: 24" in msg and "`confounds` column" in msg
    assert not (tmp_path / "neural" / "r2.h5").exists()


def test_settings_from_config():
    s = DenoiseSettings.from_config(
        {"motion": "none", "acompcor": 0, "fd_threshold_mm": None, "extra_confounds": ["csf"]}
    )
    assert s.motion == 0 and s.confound_strategies() == ["extra_confounds: ['csf']"]
    assert DenoiseSettings.from_config({"motion": 24}).motion == 24
    with pytest.raises(InputError, match=r"neural.fmri.denoise.motion\]: motion: 12"):
        DenoiseSettings.from_config({"motion": 12})


# --------------------------------------------------------------------------- parcels


def _atlas(tmp: Path, shape, affine, labels: np.ndarray) -> dict[str, str]:
    path = tmp / "atlas.nii.gz"
    nib.Nifti1Image(labels.astype(np.int16), affine).to_filename(path)
    names = tmp / "atlas.tsv"
    pd.DataFrame({"index": [1, 2], "name": ["V1", "MT"]}).to_csv(names, sep="\t", index=False)
    return {"labels": str(path), "names": str(names)}


def test_parcels_one_target_per_label_with_their_mean(tmp_path):
    rng = np.random.default_rng(7)
    data = rng.normal(size=(3, 3, 2, 20)) + 10
    labels = np.zeros((3, 3, 2), int)
    labels[0] = 1  # 6 voxels
    labels[1:, :, 0] = 2  # 6 voxels; labels[1:, :, 1] background
    # The atlas at 1.5 mm (twice as fine): nearest resampling onto the 3 mm data grid.
    fine = np.repeat(np.repeat(np.repeat(labels, 2, 0), 2, 1), 2, 2)
    atlas = _atlas(tmp_path, fine.shape, np.diag([1.5, 1.5, 1.5, 1.0]), fine)
    off = DenoiseSettings(detrend_order=None, high_pass_s=None)
    rs = io.read_responses(_ingest(tmp_path, "r1", data, off, atlas=atlas))
    assert rs.target_names.tolist() == ["V1", "MT"]
    assert rs.responses.shape == (20, 2) and rs.voxel_ijk is None
    assert np.allclose(rs.responses[:, 0], data[labels == 1].mean(0), atol=1e-4)
    assert np.allclose(rs.responses[:, 1], data[labels == 2].mean(0), atol=1e-4)
    assert rs.attrs["ingest"]["atlas"]["n_parcels"] == 2
    # What score maps paint parcels over: the labels on the data grid, and each target's.
    assert rs.mask is None and np.array_equal(rs.parcels, labels)
    assert rs.target_labels.tolist() == [1, 2] and np.allclose(rs.affine, np.diag([3, 3, 3, 1]))


def test_parcels_need_a_name_for_every_label(tmp_path):
    labels = np.zeros((3, 3, 2), int)
    labels[0], labels[1], labels[2] = 1, 2, 3
    atlas = _atlas(tmp_path, labels.shape, np.diag([3.0, 3.0, 3.0, 1.0]), labels)
    with pytest.raises(InputError) as err:
        _ingest(tmp_path, "r1", _run_data(), DenoiseSettings(), atlas=atlas)
    assert f"{atlas['names']} [index]: label(s) 3 of" in str(err.value)
    assert not (tmp_path / "neural" / "r1.h5").exists()


def test_ingest_inputs_add_confounds_and_atlas_when_given():
    config = {"neural": {"fmri": {"atlas": None}}}
    row = {"path": "r1.nii.gz", "modality": "fmri", "confounds": float("nan")}
    assert denoise.ingest_inputs(row, config) == {"recording": "r1.nii.gz"}
    row["confounds"] = "sub-01_desc-confounds_timeseries.tsv"
    config["neural"]["fmri"]["atlas"] = {"labels": "a.nii.gz", "names": "a.tsv"}
    assert denoise.ingest_inputs(row, config) == {
        "recording": "r1.nii.gz",
        "confounds": "sub-01_desc-confounds_timeseries.tsv",
        "atlas_labels": "a.nii.gz",
        "atlas_names": "a.tsv",
    }
    spikes = {"path": "m1.tsv", "modality": "spikes"}
    assert denoise.ingest_inputs(spikes, config) == {"recording": "m1.tsv"}
