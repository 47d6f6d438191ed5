"""SpikeMSNetwork shapes, input checks and gradients."""

import dataclasses
import re

import pytest
import torch

from spikems_ros.snn.network import CHANNELS, LAYER_NAMES, SpikeMSNetwork, layer_output_sizes
from spikems_ros.snn.neuron import RELEASED_NEURON_CONFIGS


@pytest.fixture(scope="module")
def network() -> SpikeMSNetwork:
    torch.manual_seed(0)
    return SpikeMSNetwork()


@pytest.mark.parametrize("height, width", [(16, 16), (23, 31), (260, 346), (1, 1), (2, 3), (5, 4)])
def test_layer_sizes_return_to_input(height, width):
    sizes = layer_output_sizes(height, width)
    assert sizes[-1] == (height, width)
    assert sizes[0] == ((height + 1) // 2, (width + 1) // 2)
    assert sizes[1] == ((sizes[0][0] + 1) // 2, (sizes[0][1] + 1) // 2)
    assert sizes[2] == ((sizes[1][0] + 1) // 2, (sizes[1][1] + 1) // 2)
    assert sizes[3] == sizes[1]
    assert sizes[4] == sizes[0]


def test_sizes_for_davis346():
    assert layer_output_sizes(260, 346) == ((130, 173), (65, 87), (33, 44), (65, 87), (130, 173), (260, 346))


@pytest.mark.parametrize("height, width", [(9, 13), (1, 1), (8, 8), (17, 2)])
def test_window_output_shape_and_binary(network, height, width):
    spikes = (torch.rand(2, 2, height, width, 4) < 0.3).float()
    with torch.no_grad():
        output = network(spikes)
    assert output.shape == (2, 2, height, width, 4)
    assert output.dtype == torch.float32
    assert set(output.unique().tolist()) <= {0.0, 1.0}


def test_layer_outputs_shapes(network):
    spikes = (torch.rand(1, 2, 11, 15, 3) < 0.3).float()
    with torch.no_grad():
        outputs = network.forward_all_layers(spikes)
    assert len(outputs) == len(LAYER_NAMES) + 1
    expected_sizes = ((11, 15),) + layer_output_sizes(11, 15)
    for output, channels, size in zip(outputs, CHANNELS, expected_sizes):
        assert output.shape == (1, channels, *size, 3)


def test_state_dict_keys(network):
    assert sorted(network.state_dict()) == sorted(f"{name}.weight" for name in LAYER_NAMES)
    assert network.conv1.weight.shape == (16, 2, 3, 3)
    assert network.deconv4.weight.shape == (64, 32, 3, 3)
    assert network.deconv6.weight.shape == (16, 2, 3, 3)


def test_delay_parameters_in_state_dict():
    configs = [dataclasses.replace(config, max_delay_steps=2) for config in RELEASED_NEURON_CONFIGS]
    network = SpikeMSNetwork(configs)
    assert network.state_dict()["conv2.delay_steps"].shape == (32,)


@pytest.mark.parametrize("shape", [(1, 2, 8, 8), (1, 3, 8, 8, 4), (2, 8, 8, 4), (1, 2, 0, 8, 4)])
def test_forward_rejects_wrong_shape(network, shape):
    with pytest.raises(ValueError, match=re.escape(f"(batch, 2, height, width, time) with no empty dimension, got {shape}")):
        network(torch.zeros(shape))


def test_forward_rejects_wrong_dtype(network):
    with pytest.raises(TypeError, match="float64"):
        network(torch.zeros(1, 2, 8, 8, 2, dtype=torch.float64))


def test_step_rejects_window_input(network):
    state = network.initial_state(1, 8, 8)
    with pytest.raises(ValueError, match=r"\(batch, 2, height, width\).*\(1, 2, 8, 8, 3\)"):
        network.step(torch.zeros(1, 2, 8, 8, 3), state)


def test_step_rejects_state_of_other_size(network):
    state = network.initial_state(1, 8, 8)
    with pytest.raises(ValueError, match=r"batch 1 and input size \(8, 8\)"):
        network.step(torch.zeros(1, 2, 9, 8), state)
    with pytest.raises(ValueError, match="batch 1"):
        network.step(torch.zeros(2, 2, 8, 8), state)


def test_initial_state_rejects_invalid_size(network):
    with pytest.raises(ValueError, match="height = 0"):
        network.initial_state(1, 0, 8)


@pytest.mark.parametrize(
    "channels", [(2, 16, 32), (3, 16, 32, 64, 32, 16, 2), (2, 16, 32, 64, 32, 16, 1), (2, 16, 0, 64, 32, 16, 2)]
)
def test_constructor_rejects_invalid_channels(channels):
    with pytest.raises(ValueError, match="channels"):
        SpikeMSNetwork(channels=channels)


def test_constructor_rejects_mixed_bins():
    configs = list(RELEASED_NEURON_CONFIGS)
    configs[3] = dataclasses.replace(configs[3], bin_ms=0.5)
    with pytest.raises(ValueError, match="bin_ms"):
        SpikeMSNetwork(configs)


def test_constructor_rejects_wrong_config_count():
    with pytest.raises(TypeError, match="6 NeuronConfig"):
        SpikeMSNetwork(RELEASED_NEURON_CONFIGS[:5])


def test_gradients_reach_every_weight():
    torch.manual_seed(1)
    configs = [dataclasses.replace(config, max_delay_steps=2) for config in RELEASED_NEURON_CONFIGS]
    network = SpikeMSNetwork(configs)
    spikes = (torch.rand(1, 2, 12, 12, 10) < 0.2).float()
    network(spikes).sum().backward()
    for name, parameter in network.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        if name.endswith("weight"):
            assert parameter.grad.abs().sum() > 0, name
