"""The built-in demo end to end: generated scene, node process, Fast DDS, scored output."""

import math

import pytest
import torch

pytest.importorskip("rclpy", reason="rclpy is installed by make setup")
pytest.importorskip("event_camera_msgs.msg", reason="event_camera_msgs is built by make setup")

from spikems_ros.ros.demo import run_demo  # noqa: E402
from spikems_ros.snn.network import SpikeMSNetwork  # noqa: E402
from spikems_ros.snn.weights import save_weights  # noqa: E402


@pytest.mark.ros
def test_demo_replays_every_event(tmp_path, monkeypatch):
    # One PyTorch thread per process: the test and the node share two cores.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    generator = torch.Generator().manual_seed(3)
    network = SpikeMSNetwork()
    with torch.no_grad():
        for layer in network.layers:
            bound = 0.6 / layer.geometry.in_channels**0.5
            layer.weight.copy_(bound * (2 * torch.rand(layer.weight.shape, generator=generator) - 0.6))
    weights = tmp_path / "weights.pt"
    save_weights(weights, network, {"output_delay_bins": 6, "bin_us": 1000})

    result = run_demo(tmp_path / "demo", weights=str(weights), seconds=0.1, width=64, height=48, timeout_s=180)

    assert result["events_in"] == result["events_sent"]
    assert result["events_sent"] > 0
    assert 0 < result["foreground"] <= result["events_sent"]
    assert 0.0 <= result["iou"] <= 1.0
    assert result["rtf"] > 0
    assert result["overlay"].endswith("overlay.png")
    assert not math.isnan(result["iou"])
