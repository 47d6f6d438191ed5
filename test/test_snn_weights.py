"""Weights files: round trip, and every rejection names the file and the problem."""

import dataclasses
import pickle

import pytest
import torch

from spikems_ros.snn.network import SpikeMSNetwork
from spikems_ros.snn.neuron import RELEASED_NEURON_CONFIGS
from spikems_ros.snn.weights import (
    FORMAT_NAME,
    FORMAT_VERSION,
    WeightsError,
    load_network,
    read_weights,
    save_weights,
)


@pytest.fixture
def network() -> SpikeMSNetwork:
    torch.manual_seed(4)
    configs = [dataclasses.replace(config, max_delay_steps=2) for config in RELEASED_NEURON_CONFIGS]
    configs[2] = dataclasses.replace(configs[2], refractory_form="first_order")
    return SpikeMSNetwork(configs)


@pytest.fixture
def weights_path(tmp_path, network):
    path = tmp_path / "spikems.pt"
    save_weights(path, network, metadata={"dataset": "EV-IMO boxes", "epochs": 100, "learning_rate": 1e-4})
    return path


def rewrite(path, change) -> None:
    """Load the raw dict, apply ``change`` to it and save it back."""
    content = torch.load(path, weights_only=True)
    change(content)
    torch.save(content, path)


def test_round_trip(network, weights_path):
    loaded = load_network(weights_path)
    assert loaded.neuron_configs == network.neuron_configs
    assert loaded.channels == network.channels
    for name, tensor in network.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    spikes = (torch.rand(1, 2, 9, 9, 5) < 0.2).float()
    with torch.no_grad():
        assert torch.equal(loaded(spikes), network(spikes))


def test_read_returns_metadata(weights_path):
    weights = read_weights(weights_path)
    assert weights.metadata == {"dataset": "EV-IMO boxes", "epochs": 100, "learning_rate": 1e-4}
    assert weights.channels == (2, 16, 32, 64, 32, 16, 2)


def test_file_is_plain_dict(weights_path):
    content = torch.load(weights_path, weights_only=True)
    assert content["format"] == FORMAT_NAME
    assert content["format_version"] == FORMAT_VERSION
    assert content["architecture"] == "spikems-6layer"
    assert content["neuron_configs"][2]["refractory_form"] == "first_order"


def test_save_leaves_no_partial_file(tmp_path, network):
    save_weights(tmp_path / "a.pt", network)
    assert [path.name for path in tmp_path.iterdir()] == ["a.pt"]


def test_save_rejects_invalid_metadata(tmp_path, network):
    with pytest.raises(WeightsError, match="metadata entry 'shape'"):
        save_weights(tmp_path / "a.pt", network, metadata={"shape": [1, 2]})


def test_rejects_truncated_file(weights_path):
    data = weights_path.read_bytes()
    weights_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=f"{weights_path}.*truncated or corrupt"):
        read_weights(weights_path)


def test_rejects_empty_file(weights_path):
    weights_path.write_bytes(b"")
    with pytest.raises(WeightsError, match=str(weights_path)):
        read_weights(weights_path)


def test_rejects_corrupt_file(weights_path):
    weights_path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(WeightsError, match=str(weights_path)):
        read_weights(weights_path)


class _RunsCodeOnLoad:
    loaded = False

    def __reduce__(self):
        return (_mark_loaded, ())


def _mark_loaded():
    _RunsCodeOnLoad.loaded = True
    return None


def test_rejects_pickled_objects_without_running_them(weights_path):
    rewrite(weights_path, lambda content: content["metadata"].update(payload=_RunsCodeOnLoad()))
    with pytest.raises(WeightsError, match="objects other than tensors and plain values"):
        read_weights(weights_path)
    assert not _RunsCodeOnLoad.loaded


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_rejects_plain_pickle(tmp_path):
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"format": FORMAT_NAME}))
    with pytest.raises(WeightsError, match=str(path)):
        read_weights(path)


def test_rejects_non_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(WeightsError, match="contains a list"):
        read_weights(path)


def test_rejects_wrong_format(weights_path):
    rewrite(weights_path, lambda content: content.update(format="other-weights"))
    with pytest.raises(WeightsError, match="format is 'other-weights', expected 'spikems-weights'"):
        read_weights(weights_path)


def test_rejects_wrong_version(weights_path):
    rewrite(weights_path, lambda content: content.update(format_version=2))
    with pytest.raises(WeightsError, match="format_version is 2, this code reads version 1"):
        read_weights(weights_path)


def test_rejects_wrong_architecture(weights_path):
    rewrite(weights_path, lambda content: content.update(architecture="spikems-8layer"))
    with pytest.raises(WeightsError, match="architecture is 'spikems-8layer'"):
        read_weights(weights_path)


def test_rejects_missing_entry(weights_path):
    rewrite(weights_path, lambda content: content.pop("metadata"))
    with pytest.raises(WeightsError, match=r"missing entries \['metadata'\]"):
        read_weights(weights_path)


def test_rejects_missing_tensor(weights_path):
    rewrite(weights_path, lambda content: content["tensors"].pop("conv3.weight"))
    with pytest.raises(WeightsError, match=r"missing tensors \['conv3.weight'\]"):
        read_weights(weights_path)


def test_rejects_extra_tensor(weights_path):
    rewrite(weights_path, lambda content: content["tensors"].update({"conv7.weight": torch.zeros(1)}))
    with pytest.raises(WeightsError, match=r"unknown tensors \['conv7.weight'\]"):
        read_weights(weights_path)


def test_rejects_shape_mismatch(weights_path):
    rewrite(weights_path, lambda content: content["tensors"].update({"conv2.weight": torch.zeros(32, 16, 5, 5)}))
    with pytest.raises(WeightsError, match=r"conv2.weight has shape \(32, 16, 5, 5\), expected \(32, 16, 3, 3\)"):
        read_weights(weights_path)


def test_rejects_integer_tensor(weights_path):
    rewrite(
        weights_path,
        lambda content: content["tensors"].update({"conv1.weight": torch.zeros(16, 2, 3, 3, dtype=torch.int64)}),
    )
    with pytest.raises(WeightsError, match="conv1.weight .*expected a float tensor"):
        read_weights(weights_path)


def test_rejects_non_finite_tensor(weights_path):
    def poison(content):
        content["tensors"]["deconv5.weight"][0, 0, 0, 0] = float("nan")
        content["tensors"]["deconv5.weight"][0, 0, 0, 1] = float("inf")

    rewrite(weights_path, poison)
    with pytest.raises(WeightsError, match=r"deconv5.weight contains 2 NaN or infinite values"):
        read_weights(weights_path)


def test_rejects_channel_mismatch(weights_path):
    rewrite(weights_path, lambda content: content.update(channels=[2, 8, 32, 64, 32, 16, 2]))
    with pytest.raises(WeightsError, match=r"conv1.weight has shape \(16, 2, 3, 3\), expected \(8, 2, 3, 3\)"):
        read_weights(weights_path)


def test_rejects_invalid_channels(weights_path):
    rewrite(weights_path, lambda content: content.update(channels=[2, 16, 32]))
    with pytest.raises(WeightsError, match="describes no valid network"):
        read_weights(weights_path)


def test_rejects_invalid_neuron_config(weights_path):
    rewrite(weights_path, lambda content: content["neuron_configs"][1].update(threshold=-1.0))
    with pytest.raises(WeightsError, match="neuron config of conv2 is invalid"):
        read_weights(weights_path)


def test_rejects_unknown_neuron_config_field(weights_path):
    rewrite(weights_path, lambda content: content["neuron_configs"][0].update(leak=0.5))
    with pytest.raises(WeightsError, match="neuron config of conv1 has fields"):
        read_weights(weights_path)


def test_rejects_invalid_metadata_in_file(weights_path):
    rewrite(weights_path, lambda content: content["metadata"].update(points=[1, 2]))
    with pytest.raises(WeightsError, match="metadata entry 'points'"):
        read_weights(weights_path)


def test_missing_file_raises_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_weights(tmp_path / "absent.pt")


def test_weights_error_is_value_error(weights_path):
    rewrite(weights_path, lambda content: content.update(format_version=0))
    with pytest.raises(ValueError) as error:
        read_weights(weights_path)
    assert error.value.path == str(weights_path)


def test_text_file_rejected(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")

    with pytest.raises(WeightsError, match="notes.txt"):
        read_weights(path)


def test_folder_rejected(tmp_path):
    with pytest.raises(WeightsError, match="is a folder"):
        read_weights(tmp_path)
