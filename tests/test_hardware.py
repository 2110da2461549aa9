"""GPU detection without torch: what `gpu: auto` and the ridge backend's `auto` see."""

from __future__ import annotations

import pytest

from neurovid import hardware


def test_gpu_visible_needs_a_driver_and_devices_not_hidden(tmp_path, monkeypatch):
    node = tmp_path / "nvidiactl"
    monkeypatch.setattr(hardware, "GPU_DRIVER_NODES", (str(tmp_path / "missing"),))
    assert hardware.gpu_visible({}) is False
    node.write_text("")
    monkeypatch.setattr(hardware, "GPU_DRIVER_NODES", (str(tmp_path / "missing"), str(node)))
    assert hardware.gpu_visible({}) is True
    assert hardware.gpu_visible({"CUDA_VISIBLE_DEVICES": "0,1"}) is True
    assert hardware.gpu_visible({"CUDA_VISIBLE_DEVICES": ""}) is False  # every device hidden
    assert hardware.gpu_visible({"CUDA_VISIBLE_DEVICES": "-1"}) is False


def test_gpu_setting_auto_follows_the_machine_and_booleans_win(tmp_path, monkeypatch):
    monkeypatch.setattr(hardware, "GPU_DRIVER_NODES", (str(tmp_path / "missing"),))
    assert hardware.gpu_setting("auto", {}) is False
    assert hardware.gpu_setting(None, {}) is False
    assert hardware.gpu_setting(True, {}) is True  # a cluster: the GPUs are on the nodes
    (tmp_path / "missing").write_text("")
    assert hardware.gpu_setting("auto", {}) is True
    assert hardware.gpu_setting(False, {}) is False
    with pytest.raises(ValueError, match="config gpu must be true, false or auto, got 'yes'"):
        hardware.gpu_setting("yes", {})
