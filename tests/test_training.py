"""Training engine: resume equals an uninterrupted run, early stopping, fingerprints, loss curve."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from neurovid.deep.training import (
    TrainSettings,
    plot_loss_curve,
    train_model,
)
from neurovid.errors import InputError

N_SAMPLES, N_IN, N_OUT, BATCH = 64, 6, 3, 16


def make_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(N_IN, N_OUT, generator=gen)
    x = torch.randn(N_SAMPLES + 32, N_IN, generator=gen)
    y = x @ w + 0.3 * torch.randn(N_SAMPLES + 32, N_OUT, generator=gen)
    return x[:N_SAMPLES], y[:N_SAMPLES], x[N_SAMPLES:], y[N_SAMPLES:]


def make_model() -> torch.nn.Module:
    torch.manual_seed(123)
    # Dropout draws from the global RNG: resuming must restore it to be bit-identical.
    return torch.nn.Sequential(
        torch.nn.Linear(N_IN, 16),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.2),
        torch.nn.Linear(16, N_OUT),
    )


class Task:
    """The callables train_model needs; ``fail_at`` raises mid-epoch to simulate a crash."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.x, self.y, self.xv, self.yv = make_data()
        self.fail_at = fail_at

    def batches(self, epoch: int, gen: torch.Generator):
        order = torch.randperm(N_SAMPLES, generator=gen)
        for i, start in enumerate(range(0, N_SAMPLES, BATCH)):
            if epoch == self.fail_at and i == 2:
                raise KeyboardInterrupt("simulated interruption")
            idx = order[start : start + BATCH]
            yield self.x[idx], self.y[idx]

    @staticmethod
    def step(model: torch.nn.Module, batch) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(model(x), y)

    def val(self, model: torch.nn.Module) -> float:
        return float(torch.nn.functional.mse_loss(model(self.xv), self.yv))

    def extra(self, model: torch.nn.Module) -> dict[str, float]:
        return {"val_mae": float((model(self.xv) - self.yv).abs().mean())}


def train(out: Path, settings: TrainSettings, task: Task | None = None, model=None):
    task = task or Task()
    model = model if model is not None else make_model()
    result = train_model(
        model, task.step, task.batches, task.val, settings, out, extra_metrics=task.extra
    )
    return model, result


def deterministic_columns(table: pd.DataFrame) -> pd.DataFrame:
    return table.drop(columns=["seconds"])


SETTINGS = TrainSettings(max_epochs=6, patience=10, lr=3e-2, seed=7, device="cpu")


def assert_same_run(a: Path, b: Path, model_a, model_b) -> None:
    for (name, ta), (_, tb) in zip(
        model_a.state_dict().items(), model_b.state_dict().items(), strict=True
    ):
        assert torch.equal(ta, tb), name
    csv_a, csv_b = pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv")
    pd.testing.assert_frame_equal(
        deterministic_columns(csv_a), deterministic_columns(csv_b), check_exact=True
    )
    last_a = torch.load(a / "last.pt", weights_only=True)
    last_b = torch.load(b / "last.pt", weights_only=True)
    for key in last_a["model"]:
        assert torch.equal(last_a["model"][key], last_b["model"][key]), key


def test_resume_after_a_crash_equals_the_uninterrupted_run(tmp_path: Path) -> None:
    full, cut = tmp_path / "full", tmp_path / "cut"
    model_full, result_full = train(full, SETTINGS)
    assert result_full.epochs_run == 6 and result_full.resumed_from is None
    assert list(result_full.history.columns) == [
        "epoch",
        "train_loss",
        "val_loss",
        "best_val_loss",
        "lr",
        "seconds",
        "val_mae",
    ]
    # The loss falls on this learnable task (a sanity check that training happened).
    assert result_full.history["val_loss"].iloc[-1] < 0.5 * result_full.history["val_loss"].iloc[0]

    with pytest.raises(KeyboardInterrupt):
        train(cut, SETTINGS, Task(fail_at=4))
    # Epoch 4 died mid-way: the files hold epoch 3, consistently.
    assert pd.read_csv(cut / "metrics.csv")["epoch"].tolist() == [1, 2, 3]
    assert torch.load(cut / "last.pt", weights_only=True)["epoch"] == 3
    assert not list(cut.glob(".*tmp*"))

    model_cut, result_cut = train(cut, SETTINGS)
    assert result_cut.resumed_from == 3 and result_cut.epochs_run == 6
    assert result_cut.best_epoch == result_full.best_epoch
    assert_same_run(full, cut, model_full, model_cut)
    pd.testing.assert_frame_equal(
        deterministic_columns(result_full.history),
        deterministic_columns(result_cut.history),
        check_exact=True,
    )


def test_extending_max_epochs_continues_the_same_run(tmp_path: Path) -> None:
    full, short = tmp_path / "full", tmp_path / "short"
    model_full, _ = train(full, SETTINGS)
    _, first = train(short, TrainSettings(**{**SETTINGS.__dict__, "max_epochs": 2}))
    assert first.epochs_run == 2 and not first.stopped_early
    model_short, second = train(short, SETTINGS)  # max_epochs is not fingerprinted
    assert second.resumed_from == 2
    assert_same_run(full, short, model_full, model_short)
    summary = json.loads((short / "summary.json").read_text())
    assert summary["resumed_from"] == 2 and summary["epochs_run"] == 6


class CraftedVal(Task):
    """Validation losses read from a list, one per epoch."""

    def __init__(self, curve: list[float]) -> None:
        super().__init__()
        self.curve, self.calls = curve, 0

    def val(self, model: torch.nn.Module) -> float:
        self.calls += 1
        return self.curve[self.calls - 1]


def test_early_stopping_stops_after_patience_epochs_and_restores_the_best(tmp_path: Path) -> None:
    curve = [5.0, 4.0, 3.0, 3.5, 3.2, 3.0, 1.0, 1.0]  # best at 3; 4, 5, 6 do not improve
    settings = TrainSettings(max_epochs=8, patience=3, lr=1e-2, device="cpu")
    model, result = train(tmp_path / "a", settings, CraftedVal(curve))
    assert (result.best_epoch, result.epochs_run, result.stopped_early) == (3, 6, True)
    assert result.best_val_loss == 3.0
    assert result.history["best_val_loss"].tolist() == [5.0, 4.0, 3.0, 3.0, 3.0, 3.0]
    best = torch.load(tmp_path / "a" / "best.pt", weights_only=True)
    last = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    assert best["epoch"] == 3 and last["epoch"] == 6
    for key, value in model.state_dict().items():
        assert torch.equal(value, best["model"][key]), key
    assert not torch.equal(model[0].weight, last["model"]["0.weight"])
    # A stopped run stays stopped when called again, even with more epochs allowed.
    again = TrainSettings(**{**settings.__dict__, "max_epochs": 20})
    _, rerun = train(tmp_path / "a", again, CraftedVal(curve))
    assert rerun.epochs_run == 6 and rerun.resumed_from == 6 and rerun.best_epoch == 3

    # min_delta: 2.95 and 2.9 are not better than 3.0 by more than 0.1; 2.5 is.
    curve = [3.0, 2.95, 2.9, 2.5, 2.45, 2.44, 2.43]
    settings = TrainSettings(max_epochs=7, patience=3, min_delta=0.1, lr=1e-2, device="cpu")
    _, result = train(tmp_path / "b", settings, CraftedVal(curve))
    assert (result.best_epoch, result.epochs_run, result.stopped_early) == (4, 7, True)


def test_a_checkpoint_from_other_settings_is_refused(tmp_path: Path) -> None:
    short = TrainSettings(**{**SETTINGS.__dict__, "max_epochs": 1})
    train(tmp_path, short)
    changed = TrainSettings(**{**short.__dict__, "lr": 1e-3, "max_epochs": 2})
    with pytest.raises(InputError, match="other training settings") as err:
        train(tmp_path, changed)
    assert str(tmp_path / "last.pt") in str(err.value) and "delete" in str(err.value)
    wider = torch.nn.Sequential(torch.nn.Linear(N_IN, N_OUT))  # other parameter shapes
    with pytest.raises(InputError, match="model shapes"):
        train(tmp_path, short, model=wider)
    # A caller fingerprint (data, model config) must match too.
    task = Task()
    with pytest.raises(InputError, match="fingerprint"):
        train_model(
            make_model(), task.step, task.batches, task.val, short, tmp_path,
            fingerprint={"data": "other"},
        )  # fmt: skip


def test_bad_settings_and_devices_are_input_errors() -> None:
    with pytest.raises(InputError, match="patience must be >= 1"):
        TrainSettings(patience=0)
    with pytest.raises(InputError, match="device must be auto, cpu or cuda"):
        TrainSettings(device="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_a_gpu_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no CUDA GPU"):
        train(tmp_path, TrainSettings(device="cuda", max_epochs=1))


def test_loss_curve_png_carries_the_plotted_values(tmp_path: Path) -> None:
    _, result = train(tmp_path, TrainSettings(**{**SETTINGS.__dict__, "max_epochs": 4}))
    png = tmp_path / "loss.png"
    plot_loss_curve(tmp_path / "metrics.csv", png, {"step": "test"}, title="fold 1")
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] > 200
        meta = json.loads(image.text["Description"])
    table = pd.read_csv(tmp_path / "metrics.csv")
    assert meta["step"] == "test"
    assert meta["plotted"]["epoch"] == [1, 2, 3, 4]
    assert meta["plotted"]["val_loss"] == table["val_loss"].tolist()
    assert meta["plotted"]["train_loss"] == result.history["train_loss"].tolist()
    assert meta["plotted"]["best_epoch"] == result.best_epoch
    with pytest.raises(InputError, match="not a training metrics table"):
        (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
        plot_loss_curve(tmp_path / "bad.csv", tmp_path / "bad.png", {})
