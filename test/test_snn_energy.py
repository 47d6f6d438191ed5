"""Synaptic-operation and ANN multiply-accumulate counts on hand-made cases."""

import pytest
import torch

from spikems_ros.snn.energy import (
    ACCUMULATE_ENERGY_PJ,
    MULTIPLY_ACCUMULATE_ENERGY_PJ,
    count_ann_macs,
    count_network_operations,
    count_synaptic_ops,
    fan_out_map,
)
from spikems_ros.snn.geometry import LayerGeometry
from spikems_ros.snn.network import SpikeMSNetwork

CONV = LayerGeometry(name="conv", transposed=False, in_channels=2, out_channels=16)
DECONV = LayerGeometry(name="deconv", transposed=True, in_channels=2, out_channels=16)


def one_spike(height: int, width: int, row: int, column: int, channel: int = 1) -> torch.Tensor:
    spikes = torch.zeros(1, 2, height, width)
    spikes[0, channel, row, column] = 1.0
    return spikes


# 3x3 stride-2 convolution, 8x8 -> 4x4. Output pixel i covers input rows 2i-1..2i+1,
# so an odd row is covered by two output rows, an even row by one, and row 7 only by
# output row 3 because output row 4 does not exist.
@pytest.mark.parametrize(
    "row, column, covering_pixels",
    [(3, 3, 4), (4, 4, 1), (3, 4, 2), (0, 0, 1), (7, 7, 1), (7, 3, 2)],
)
def test_conv_single_spike_fan_out(row, column, covering_pixels):
    synaptic_ops = count_synaptic_ops(one_spike(8, 8, row, column), CONV, (4, 4))
    assert synaptic_ops.tolist() == [covering_pixels * 16]


# Transposed convolution, 4x4 -> 8x8 (output padding 1) or 4x4 -> 7x7 (none). Input
# pixel i spreads to output rows 2i-1..2i+1, cut at the borders.
@pytest.mark.parametrize(
    "output_size, row, column, reached_pixels",
    [
        ((8, 8), 1, 1, 9),
        ((8, 8), 0, 0, 4),
        ((8, 8), 3, 3, 9),
        ((8, 8), 0, 2, 6),
        ((7, 7), 3, 3, 4),
        ((7, 7), 1, 3, 6),
    ],
)
def test_deconv_single_spike_fan_out(output_size, row, column, reached_pixels):
    synaptic_ops = count_synaptic_ops(one_spike(4, 4, row, column), DECONV, output_size)
    assert synaptic_ops.tolist() == [reached_pixels * 16]


def test_counts_sum_over_channels_and_time():
    spikes = torch.zeros(1, 2, 8, 8, 3)
    spikes[0, 0, 3, 3, 0] = 1.0  # 4 output pixels
    spikes[0, 1, 3, 3, 2] = 1.0  # 4 output pixels
    spikes[0, 1, 0, 0, 1] = 1.0  # 1 output pixel
    assert count_synaptic_ops(spikes, CONV, (4, 4)).tolist() == [9 * 16]


def test_counts_per_batch_sample():
    spikes = torch.cat([one_spike(8, 8, 3, 3), one_spike(8, 8, 0, 0)])
    assert count_synaptic_ops(spikes, CONV, (4, 4)).tolist() == [64, 16]


def test_conv_ann_macs_hand_computed():
    # Output rows 0..3 cover 2, 3, 3, 3 input rows: 11 (row, output row) pairs, and
    # as many for columns, so 121 valid taps per channel pair.
    assert count_ann_macs(CONV, (8, 8), (4, 4)) == 121 * 2 * 16


def test_deconv_ann_macs_hand_computed():
    # 4 -> 8: input rows 0..3 reach 2, 3, 3, 3 output rows.
    assert count_ann_macs(DECONV, (4, 4), (8, 8)) == 11 * 11 * 2 * 16
    # 4 -> 7: input rows 0..3 reach 2, 3, 3, 2 output rows.
    assert count_ann_macs(DECONV, (4, 4), (7, 7)) == 10 * 10 * 2 * 16


@pytest.mark.parametrize(
    "geometry, input_size, output_size",
    [(CONV, (9, 12), (5, 6)), (CONV, (8, 8), (4, 4)), (DECONV, (5, 6), (9, 12)), (DECONV, (5, 6), (10, 11))],
)
def test_fan_out_map_agrees_with_counts(geometry, input_size, output_size):
    generator = torch.Generator().manual_seed(5)
    spikes = (torch.rand(3, 2, *input_size, generator=generator) < 0.3).float()
    fan_out = fan_out_map(geometry, input_size, output_size)
    assert fan_out.shape == input_size
    expected = (spikes.sum(dim=1).to(torch.int64) * fan_out).sum(dim=(1, 2))
    assert torch.equal(count_synaptic_ops(spikes, geometry, output_size), expected)


def test_all_ones_input_costs_ann_macs():
    spikes = torch.ones(1, 2, 9, 12)
    assert count_synaptic_ops(spikes, CONV, (5, 6)).item() == count_ann_macs(CONV, (9, 12), (5, 6))


def test_rejects_wrong_channels_and_sizes():
    with pytest.raises(ValueError, match=r"\(batch, 2, height, width"):
        count_synaptic_ops(torch.zeros(1, 3, 8, 8), CONV, (4, 4))
    with pytest.raises(ValueError, match=r"not to the requested \(5, 4\)"):
        count_synaptic_ops(torch.zeros(1, 2, 8, 8), CONV, (5, 4))
    with pytest.raises(ValueError, match="cannot map size 4 to 10"):
        count_synaptic_ops(torch.zeros(1, 2, 4, 4), DECONV, (10, 8))


def test_network_report_matches_step_stats():
    torch.manual_seed(2)
    network = SpikeMSNetwork()
    spikes = (torch.rand(2, 2, 13, 17, 6) < 0.1).float()

    with torch.no_grad():
        report = count_network_operations(network.geometries, network.forward_all_layers(spikes))
        state = network.initial_state(2, 13, 17)
        step_ops = [0] * len(network.layers)
        step_inputs = [0] * len(network.layers)
        for step in range(6):
            _, state, stats = network.step(spikes[..., step], state)
            for index, layer_stats in enumerate(stats):
                step_ops[index] += int(layer_stats.synaptic_ops.sum())
                step_inputs[index] += int(layer_stats.input_spikes.sum())

    assert [layer.name for layer in report.layers] == list(network.layer_names)
    assert [layer.synaptic_ops for layer in report.layers] == step_ops
    assert [layer.input_spikes for layer in report.layers] == step_inputs
    assert report.layers[0].input_spikes == int(spikes.sum())
    assert report.synaptic_ops == sum(step_ops)


def test_network_report_energies():
    torch.manual_seed(2)
    network = SpikeMSNetwork()
    spikes = (torch.rand(2, 2, 13, 17, 6) < 0.1).float()
    with torch.no_grad():
        report = count_network_operations(network.geometries, network.forward_all_layers(spikes))

    conv1_macs = count_ann_macs(network.geometries[0], (13, 17), (7, 9))
    assert report.layers[0].ann_macs == 2 * conv1_macs  # one frame per sample
    assert report.snn_energy_pj == pytest.approx(report.synaptic_ops * ACCUMULATE_ENERGY_PJ)
    assert report.ann_energy_pj == pytest.approx(report.ann_macs * MULTIPLY_ACCUMULATE_ENERGY_PJ)
    assert report.energy_ratio == pytest.approx(report.ann_energy_pj / report.snn_energy_pj)
    assert "ANN/SNN energy" in report.summary()


def test_silent_network_has_infinite_ratio():
    network = SpikeMSNetwork()
    spikes = torch.zeros(1, 2, 8, 8, 3)
    with torch.no_grad():
        report = count_network_operations(network.geometries, network.forward_all_layers(spikes))
    assert report.synaptic_ops == 0
    assert report.energy_ratio == float("inf")
