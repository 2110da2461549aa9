"""Kinematics from DLC output: analytic trajectories, gaps, scale, zones, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neurovid.behavior.kinematics import compute_kinematics, write_kinematics
from neurovid.demo.behavior import (
    BODYPARTS,
    BehaviorTruth,
    dlc_dataframe,
    path_length,
    simulate_open_field,
    write_dlc_pose,
)
from neurovid.errors import InputError

FPS = 30.0
PX_PER_CM = 5.0
SCALE = {"arena_cm": 40.0, "arena_px": 200.0}  # 5 px per cm
# Body parts at fixed offsets around the tracked point (rigid translation): centroid = point.
OFFSETS = np.array([[8.0, 0.0], [2.0, 4.0], [2.0, -4.0], [-12.0, 0.0]])


def write_track(
    path: Path, xy_px: np.ndarray, likelihood: np.ndarray | None = None
) -> tuple[Path, pd.DataFrame]:
    """A DLC file of a rigid body whose centroid follows ``xy_px`` [T, 2], no noise."""
    truth = BehaviorTruth(
        fps=FPS,
        bodyparts=BODYPARTS,
        pose=xy_px[:, None, :] + OFFSETS[None],
        labels=np.full(len(xy_px), "other"),
        size=(640, 480),
        arena_px=(0.0, 0.0, 200.0, 200.0),
        arena_cm=40.0,
    )
    table = dlc_dataframe(truth, noise_px=0.0, dropout=0.0)
    if likelihood is not None:
        scorer = table.columns.get_level_values("scorer")[0]
        for part in BODYPARTS:
            table[(scorer, part, "likelihood")] = likelihood
    table.to_hdf(path, key="df_with_missing", format="table", mode="w")
    return path, table


def circle(seconds: float, speed_cm_s: float, radius_px: float) -> np.ndarray:
    t = np.arange(int(seconds * FPS)) / FPS
    omega = speed_cm_s * PX_PER_CM / radius_px
    return np.c_[320 + radius_px * np.cos(omega * t), 240 + radius_px * np.sin(omega * t)]


def test_circle_at_constant_speed(tmp_path: Path) -> None:
    speed, radius_px = 10.0, 60.0
    path, _ = write_track(tmp_path / "circle.h5", circle(6, speed, radius_px))
    table, summary = compute_kinematics(path, FPS, **SCALE)
    assert len(table) == 180 and table["time_s"].iloc[1] == pytest.approx(1 / FPS)
    assert np.allclose(table["speed_cm_per_s"], speed, rtol=0.02)
    centripetal = speed**2 / (radius_px / PX_PER_CM)
    inner = slice(5, -5)  # central differences are one-sided at the ends
    assert np.allclose(table["acceleration_cm_per_s2"][inner], centripetal, rtol=0.02)
    assert np.abs(table["tangential_acceleration_cm_per_s2"][inner]).max() < 0.02 * centripetal
    assert summary["distance_cm"] == pytest.approx(speed * 179 / FPS, rel=0.02)
    assert summary["mean_speed_cm_per_s"] == pytest.approx(speed, rel=0.02)
    assert summary["time_moving_s"] == pytest.approx(6.0)
    assert summary["px_per_cm"] == PX_PER_CM
    assert np.allclose(table["x_cm"], table["x_px"] / PX_PER_CM)


def test_constant_acceleration(tmp_path: Path) -> None:
    accel = 4.0  # cm/s^2, from rest along x
    t = np.arange(int(5 * FPS)) / FPS
    xy = np.c_[100 + 0.5 * accel * t**2 * PX_PER_CM, np.full_like(t, 200.0)]
    path, _ = write_track(tmp_path / "accel.h5", xy)
    table, summary = compute_kinematics(path, FPS, bodypart="tailbase", **SCALE)
    fast = table["speed_cm_per_s"] > 2.0
    assert np.allclose(table["speed_cm_per_s"][fast], accel * t[fast], rtol=0.02)
    inner = slice(5, -5)
    assert np.allclose(table["acceleration_cm_per_s2"][inner], accel, rtol=0.02)
    assert np.allclose(table["tangential_acceleration_cm_per_s2"][inner], accel, rtol=0.02)
    assert summary["distance_cm"] == pytest.approx(0.5 * accel * t[-1] ** 2, rel=0.02)
    assert summary["max_speed_cm_per_s"] == pytest.approx(accel * t[-1], rel=0.02)


def test_a_stop_and_arena_zones(tmp_path: Path) -> None:
    # 10 cm/s for 2 s, still for 2 s, 10 cm/s for 2 s, along y = 100 through a 200 px arena.
    n = int(2 * FPS)
    step = 10.0 * PX_PER_CM / FPS
    x = np.r_[np.arange(n) * step, np.full(n, n * step), n * step + np.arange(1, n + 1) * step]
    xy = np.c_[20 + x, np.full_like(x, 100.0)]
    path, _ = write_track(tmp_path / "stop.h5", xy)
    box = (0.0, 0.0, 200.0, 200.0)
    table, summary = compute_kinematics(path, FPS, arena_box_px=box, **SCALE)
    still = slice(n + 10, 2 * n - 10)
    assert table["speed_cm_per_s"][still].abs().max() < 0.05
    assert table["speed_cm_per_s"][10 : n - 10].to_numpy() == pytest.approx(10.0, rel=0.02)
    assert summary["distance_cm"] == pytest.approx(40.0, rel=0.02)
    # Smoothing (9 frames) blurs each of the two stop edges by at most 2 frames.
    assert summary["time_moving_s"] == pytest.approx(4.0, abs=4.5 / FPS)
    assert table["distance_cm"].iloc[n + 30] == pytest.approx(20.0, rel=0.02)  # flat while still
    # Centre square: x, y in [50, 150] px; the track is at y = 100.
    expected = np.where((xy[:, 0] >= 50) & (xy[:, 0] <= 150), "centre", "border")
    assert (table["zone"].to_numpy() == expected).mean() > 0.98
    assert summary["time_in_centre_s"] == pytest.approx((expected == "centre").sum() / FPS, abs=0.1)
    assert summary["time_in_centre_s"] + summary["time_in_border_s"] == pytest.approx(6.0)
    assert summary["arena_box_px"] == list(box) and summary["arena_box_source"] == "given"


def test_short_gap_is_interpolated_long_gap_stays_nan(tmp_path: Path) -> None:
    xy = circle(6, 10.0, 60.0)
    likelihood = np.full(len(xy), 0.99)
    likelihood[40:43] = 0.01  # 3 frames: filled
    likelihood[100:130] = 0.01  # 30 frames: stays missing
    path, table_in = write_track(tmp_path / "gaps.h5", xy, likelihood)
    scorer = table_in.columns.get_level_values("scorer")[0]
    rng = np.random.default_rng(0)
    lost = likelihood < 0.6
    for part in BODYPARTS:  # what a detector reports where it has lost the part
        column = (scorer, part, "x")
        table_in[column] = table_in[column].to_numpy() + np.where(
            lost, rng.normal(0, 30, len(xy)), 0.0
        )
    table_in.to_hdf(path, key="df_with_missing", format="table", mode="w")
    table, summary = compute_kinematics(path, FPS, max_gap=5, likelihood_cutoff=0.6, **SCALE)
    filled = table.loc[38:45, ["x_px", "y_px"]].to_numpy()
    assert np.abs(filled - xy[38:46]).max() < 0.5
    assert (
        table.loc[100:129, "x_px"].isna().all()
        and table.loc[100:129, "speed_cm_per_s"].isna().all()
    )
    assert table.loc[[99, 130], "x_px"].notna().all()  # the gap does not spread
    assert summary["valid_fraction"] == pytest.approx(1 - 32 / 180, abs=0.01)
    assert summary["low_likelihood_points"] == 4 * 33
    assert summary["missing_points_after_interpolation"] == 4 * 30
    # Travel inside the gap is unknown, so it is not counted.
    assert summary["distance_cm"] == pytest.approx(10.0 * (179 - 31) / FPS, rel=0.02)


def test_demo_trajectory_gives_its_true_distance(tmp_path: Path) -> None:
    truth = simulate_open_field(60, fps=FPS, seed=0)
    write_dlc_pose(truth, tmp_path / "demo.h5", noise_px=1.0, dropout=0.02, seed=0)
    true_cm = path_length(truth.centroid()) / truth.px_per_cm
    table, summary = compute_kinematics(
        tmp_path / "demo.h5", FPS, arena_cm=truth.arena_cm, arena_px=truth.arena_px[2]
    )
    assert summary["distance_cm"] == pytest.approx(true_cm, rel=0.02)
    assert summary["path_length_cm"] > summary["distance_cm"]  # jitter at rest excluded
    assert summary["valid_fraction"] > 0.99  # overlapping dropouts can exceed max_gap
    # The arena placed on the track's extent lands within a few pixels of the true one.
    assert np.allclose(summary["arena_box_px"], truth.arena_px, atol=25)
    # Reference length: snout-tailbase median = 8 cm body length gives the same scale.
    _, by_body = compute_kinematics(
        tmp_path / "demo.h5", FPS, reference_cm=8.0, reference_bodyparts=("snout", "tailbase")
    )
    assert by_body["px_per_cm"] == pytest.approx(truth.px_per_cm, rel=0.02)
    assert by_body["distance_cm"] == pytest.approx(true_cm, rel=0.03)


def test_outputs_carry_units_and_provenance(tmp_path: Path) -> None:
    path, _ = write_track(tmp_path / "c.h5", circle(2, 10.0, 60.0))
    table, summary = compute_kinematics(path, FPS, arena_box_px=(260, 180, 120, 120), **SCALE)
    write_kinematics(
        table, summary, tmp_path / "k.csv", tmp_path / "k.json", {"step": "kinematics"}
    )
    header = (tmp_path / "k.csv").read_text().splitlines()[0].split(",")
    assert header == [
        "frame",
        "time_s",
        "x_px",
        "y_px",
        "x_cm",
        "y_cm",
        "speed_cm_per_s",
        "acceleration_cm_per_s2",
        "tangential_acceleration_cm_per_s2",
        "distance_cm",
        "moving",
        "zone",
    ]
    back = pd.read_csv(tmp_path / "k.csv")
    assert np.allclose(back["speed_cm_per_s"], table["speed_cm_per_s"], rtol=1e-5)
    saved = json.loads((tmp_path / "k.json").read_text())
    assert saved["provenance"] == {"step": "kinematics"}
    assert saved["distance_cm"] == pytest.approx(summary["distance_cm"])
    assert not list(tmp_path.glob(".*tmp*"))


def test_bad_input_errors(tmp_path: Path) -> None:
    path, _ = write_track(tmp_path / "p.h5", circle(2, 10.0, 60.0))
    with pytest.raises(InputError) as err:
        compute_kinematics(
            path, FPS, expected_bodyparts=["nose", "leftear", "rightear", "tailbase"], **SCALE
        )
    message = str(err.value)
    assert "[kinematics.bodyparts]" in message and str(path) in message
    assert "missing nose" in message and "unexpected snout" in message
    with pytest.raises(
        InputError, match=r"\[kinematics.bodypart\].*'tail' is not in the pose file"
    ):
        compute_kinematics(path, FPS, bodypart="tail", **SCALE)
    sheet = tmp_path / "videos.tsv"
    with pytest.raises(
        InputError,
        match=r"videos.tsv \[arena_cm\]: no pixel -> cm scale.*Fix: add arena_cm and arena_px",
    ):
        compute_kinematics(path, FPS, sheet=sheet)
    with pytest.raises(InputError, match=r"\[arena_cm/arena_px\].*arena_px=None"):
        compute_kinematics(path, FPS, arena_cm=40.0)
    with pytest.raises(InputError, match=r"\[kinematics.reference_bodyparts\].*nose"):
        compute_kinematics(path, FPS, reference_cm=8.0, reference_bodyparts=("nose", "tailbase"))
    with pytest.raises(InputError, match="does not exist"):
        compute_kinematics(tmp_path / "absent.h5", FPS, **SCALE)
    (tmp_path / "junk.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="cannot read it as DeepLabCut output"):
        compute_kinematics(tmp_path / "junk.csv", FPS, **SCALE)
