"""ANN-2D: shapes, count frames, the weights format and a short training run."""

import argparse
import json

import numpy as np
import pytest
import torch

from spikems_ros.baselines.ann2d import (
    Ann2dNetwork,
    Ann2dWeightsError,
    count_frame,
    load_ann2d,
    predicted_pixels,
    read_ann2d_weights,
    save_ann2d_weights,
)
from spikems_ros.events.dtype import make_events
from spikems_ros.snn.energy import count_ann_macs
from spikems_ros.snn.network import SpikeMSNetwork, layer_output_sizes
from spikems_ros.snn.weights import save_weights


@pytest.mark.parametrize("height, width", [(260, 346), (64, 64), (33, 17), (1, 1)])
def test_output_aligned_to_input(height, width):
    logits = Ann2dNetwork().eval()(torch.rand(2, 2, height, width))
    assert logits.shape == (2, 2, height, width)


def test_rejects_wrong_layout():
    with pytest.raises(ValueError, match=r"\(batch, 2, height, width\), got \(2, 8, 8\)"):
        Ann2dNetwork()(torch.zeros(2, 8, 8))


def test_count_frame_counts_per_polarity():
    events = make_events([1, 1, 1, 3, 9], [0, 0, 0, 2, 0], [0, 1, 2, 3, 4], [1, 1, 0, 0, 1])
    frame = count_frame(events, 3, 4)
    assert frame.shape == (2, 3, 4)
    assert frame[1, 0, 1] == 2
    assert frame[0, 0, 1] == 1
    assert frame[0, 2, 3] == 1
    assert frame.sum() == 4  # x = 9 lies outside the frame

    cropped = count_frame(events, 2, 2, top=1, left=2)
    assert cropped[0, 1, 1] == 1
    assert cropped.sum() == 1


def test_predicted_pixels_any_polarity():
    logits = torch.tensor([[[[1.0, -1.0]], [[-1.0, -2.0]]]])  # (1, 2, 1, 2)
    assert predicted_pixels(logits).tolist() == [[[True, False]]]


def test_ann_macs_match_geometry_counts():
    # The dense MACs priced in the energy table are those of this network's layers.
    network = Ann2dNetwork()
    sizes = ((260, 346),) + layer_output_sizes(260, 346)
    for index, (geometry, layer) in enumerate(
        zip(network.geometries, list(network.encoder) + list(network.decoder))
    ):
        assert (geometry.in_channels, geometry.out_channels) == (layer.in_channels, layer.out_channels)
        assert count_ann_macs(geometry, sizes[index], sizes[index + 1]) > 0


def test_weights_round_trip(tmp_path):
    network = Ann2dNetwork()
    network.norms[0].running_mean.fill_(0.5)
    path = tmp_path / "ann.pt"
    save_ann2d_weights(path, network, metadata={"epoch": 3, "note": "test"})

    loaded = load_ann2d(path)
    assert not loaded.training
    assert read_ann2d_weights(path).metadata == {"epoch": 3, "note": "test"}
    frames = torch.rand(1, 2, 20, 30)
    assert torch.equal(loaded(frames), network.eval()(frames))


def test_spiking_weights_rejected_with_hint(tmp_path):
    path = tmp_path / "snn.pt"
    save_weights(path, SpikeMSNetwork())
    with pytest.raises(Ann2dWeightsError, match=r"snn.pt: format is 'spikems-weights'.*--weights"):
        read_ann2d_weights(path)


def test_wrong_tensor_shape_rejected(tmp_path):
    path = tmp_path / "ann.pt"
    save_ann2d_weights(path, Ann2dNetwork())
    content = torch.load(path, weights_only=True)
    content["tensors"]["encoder.0.weight"] = torch.zeros(16, 2, 5, 5)
    torch.save(content, path)
    with pytest.raises(Ann2dWeightsError, match=r"encoder.0.weight .*\(16, 2, 5, 5\), expected"):
        read_ann2d_weights(path)


def test_pickled_code_rejected(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "spikems-ann2d-weights", "payload": argparse.Namespace(value=1)}, path)
    with pytest.raises(Ann2dWeightsError, match="weights_only=True"):
        read_ann2d_weights(path)


def test_folder_rejected(tmp_path):
    with pytest.raises(Ann2dWeightsError, match="is a folder"):
        read_ann2d_weights(tmp_path)


def test_training_writes_loadable_weights(tmp_path):
    from spikems_ros.training.ann2d import train_ann2d
    from spikems_ros.training.config import config_from_dict

    split = {"sequences": 1, "seconds": 0.06, "width": 48, "height": 32}
    config = config_from_dict(
        {
            "train": {"dir": str(tmp_path / "train"), "seed": 1, **split},
            "validation": {"dir": str(tmp_path / "val"), "seed": 2, **split},
            "window": {"crop_height": 16, "crop_width": 16},
            "optim": {"epochs": 2, "samples_per_epoch": 8, "batch_size": 4, "validation_windows": 2},
            "model": "ann2d",
            "output_dir": str(tmp_path / "out"),
        }
    )
    metrics = train_ann2d(config)

    assert 0.0 <= metrics["validation_iou"] <= 1.0
    history = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in history] == [0, 1]
    weights = read_ann2d_weights(tmp_path / "out" / "weights.pt")
    assert weights.metadata["epoch"] == 2
    assert weights.metadata["window_bins"] == 10
    assert np.isfinite(read_ann2d_weights(tmp_path / "out" / "weights_best.pt").metadata["validation_iou"])


def test_cli_refuses_earlier_run_without_resume_hint(tmp_path, caplog):
    import yaml

    from spikems_ros.cli import main

    split = {"dir": str(tmp_path / "data"), "sequences": 1, "seconds": 0.06, "width": 48, "height": 32}
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(
        {"train": split, "validation": split, "model": "ann2d", "output_dir": str(tmp_path / "out")}
    ))
    (tmp_path / "out").mkdir()
    save_ann2d_weights(tmp_path / "out" / "weights.pt", Ann2dNetwork())

    assert main(["train", "--config", str(config_path)]) == 2
    assert "contains an earlier run (weights.pt); pass --force to start over" in caplog.text
    assert not (tmp_path / "data").exists()
