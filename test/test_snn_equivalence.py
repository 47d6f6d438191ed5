"""The window driver and the streaming driver of SpikeMSNetwork give identical spikes.

The weights are drawn at random and rounded to multiples of 2^-8. With binary
spikes every convolution sum is then a multiple of 2^-8 below 2^10 in magnitude,
exact in float32 whatever order the backend sums in. The convolution backend is
the only part whose summation order may depend on the batch size, which is
batch*time in the window driver and batch in the stream. Everything after it runs
the same operations in the same order, so the spikes must agree bit for bit.
"""

import dataclasses

import pytest
import torch

from spikems_ros.snn.network import LayerState, SpikeMSNetwork
from spikems_ros.snn.neuron import RELEASED_NEURON_CONFIGS

BATCH = 2
HEIGHT = 23
WIDTH = 31
STEPS = 60
CHUNK_SIZES = (1, 7, 13, 29, 10)


def build_network(with_delays: bool) -> SpikeMSNetwork:
    # Both refractory forms are exercised: even layers alpha, odd layers first order.
    configs = [
        dataclasses.replace(
            config,
            refractory_form="alpha" if index % 2 == 0 else "first_order",
            max_delay_steps=3 if with_delays and index in (1, 4) else 0,
        )
        for index, config in enumerate(RELEASED_NEURON_CONFIGS)
    ]
    generator = torch.Generator().manual_seed(7)
    network = SpikeMSNetwork(configs)
    with torch.no_grad():
        for layer in network.layers:
            # With 5 % input density this range makes every layer fire at about 5-30 % of
            # its neurons and steps, which is active enough to test and far from saturation.
            bound = 0.4 / layer.geometry.in_channels**0.5
            weight = bound * (2 * torch.rand(layer.weight.shape, generator=generator) - 1)
            layer.weight.copy_(torch.round(weight * 256) / 256)
            if layer.delay_steps is not None:
                delays = torch.randint(0, 4, layer.delay_steps.shape, generator=generator)
                layer.delay_steps.copy_(delays.to(layer.delay_steps.dtype))
    return network


def state_tensors(layer_state: LayerState) -> list[torch.Tensor]:
    neurons = layer_state.neurons
    return [
        neurons.psp.y1,
        neurons.psp.y2,
        neurons.refractory.y1,
        neurons.refractory.y2,
        layer_state.delay_history,
    ]


def random_spikes() -> torch.Tensor:
    generator = torch.Generator().manual_seed(11)
    return (torch.rand(BATCH, 2, HEIGHT, WIDTH, STEPS, generator=generator) < 0.05).float()


@pytest.mark.parametrize("with_delays", [False, True])
def test_window_equals_single_steps(with_delays):
    network = build_network(with_delays)
    spikes = random_spikes()

    with torch.no_grad():
        layer_outputs = network.forward_all_layers(spikes)
        for name, output in zip(network.layer_names, layer_outputs[1:]):
            firing_rate = output.mean().item()
            assert 0.01 < firing_rate < 0.5, f"layer {name} fires at rate {firing_rate}"

        state = network.initial_state(BATCH, HEIGHT, WIDTH)
        stepped = []
        for step in range(STEPS):
            output, state, _ = network.step(spikes[..., step], state)
            stepped.append(output)

    window_output = layer_outputs[-1]
    stepped_output = torch.stack(stepped, dim=-1)
    assert stepped_output.shape == window_output.shape
    assert torch.equal(stepped_output, window_output)

    # Equal filter states show that both drivers also round every step alike.
    with torch.no_grad():
        _, window_state = network.run_window(spikes, network.initial_state(BATCH, HEIGHT, WIDTH))
    for name, stepped_layer, window_layer in zip(network.layer_names, state.layers, window_state.layers):
        for stepped_tensor, window_tensor in zip(state_tensors(stepped_layer), state_tensors(window_layer)):
            assert torch.equal(stepped_tensor, window_tensor), f"layer {name} state differs"


@pytest.mark.parametrize("with_delays", [False, True])
def test_chunked_windows_equal_whole_window(with_delays):
    network = build_network(with_delays)
    spikes = random_spikes()
    assert sum(CHUNK_SIZES) == STEPS

    with torch.no_grad():
        whole = network(spikes)
        state = network.initial_state(BATCH, HEIGHT, WIDTH)
        chunks = []
        start = 0
        for size in CHUNK_SIZES:
            output, state = network.run_window(spikes[..., start : start + size], state)
            chunks.append(output)
            start += size

    assert torch.equal(torch.cat(chunks, dim=-1), whole)


def test_step_stats_match_layer_outputs():
    network = build_network(with_delays=False)
    spikes = random_spikes()[..., :12]

    with torch.no_grad():
        layer_outputs = network.forward_all_layers(spikes)
        state = network.initial_state(BATCH, HEIGHT, WIDTH)
        for step in range(12):
            _, state, stats = network.step(spikes[..., step], state)
            for index, layer_stats in enumerate(stats):
                expected_inputs = layer_outputs[index][..., step].sum(dim=(1, 2, 3)).to(torch.int64)
                expected_outputs = layer_outputs[index + 1][..., step].sum(dim=(1, 2, 3)).to(torch.int64)
                assert torch.equal(layer_stats.input_spikes, expected_inputs)
                assert torch.equal(layer_stats.output_spikes, expected_outputs)


def test_float_weights_drivers_agree_closely():
    # With unrounded weights the drivers may differ in the last bit of a convolution
    # sum, which can flip a spike whose potential sits exactly at the threshold.
    torch.manual_seed(3)
    network = SpikeMSNetwork()
    spikes = random_spikes()[..., :20]

    with torch.no_grad():
        whole = network(spikes)
        state = network.initial_state(BATCH, HEIGHT, WIDTH)
        stepped = []
        for step in range(spikes.shape[-1]):
            output, state, _ = network.step(spikes[..., step], state)
            stepped.append(output)

    assert whole.sum().item() > 0
    disagreement = (torch.stack(stepped, dim=-1) != whole).float().mean().item()
    assert disagreement < 1e-3
