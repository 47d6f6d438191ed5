"""Synaptic operations performed by the spiking network, and the energy estimate against a dense ANN.

A synaptic operation is one accumulate: an input spike added, through one weight,
to one output neuron. A spike therefore costs its fan-out, the number of
(output channel, output pixel) pairs its kernel footprint reaches. Near the image
borders the footprint is cut off, so the counts below convolve the spike map with a
kernel of ones instead of multiplying the spike count by a constant. The dense ANN
of the same layer performs one multiply-accumulate per (input channel, output
channel, in-image kernel tap): the synaptic operations of an input where every
neuron spikes. Padding taps are not counted for either network.
NOTE: counting all 9 taps per pixel and channel pair, padding included, gives the
ANN 0.5-3.6 % more MACs per layer at 346x260, so energy ratios computed that way
come out slightly higher.

Energies per operation are the 45 nm CMOS figures (Horowitz, ISSCC 2014) used by
SpikeMS: an accumulate costs 0.9 pJ and a multiply-accumulate 4.6 pJ.
"""

import dataclasses
import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from spikems_ros.snn.geometry import (
    PADDING,
    STRIDE,
    LayerGeometry,
    downsampled_size,
    ones_kernel,
    transposed_output_padding,
)

logger = logging.getLogger(__name__)

ACCUMULATE_ENERGY_PJ = 0.9
MULTIPLY_ACCUMULATE_ENERGY_PJ = 4.6


@dataclasses.dataclass(frozen=True)
class LayerOperations:
    """Operation counts of one layer, summed over the batch and the time steps."""

    # Layer name ("conv1", ..., "deconv6").
    name: str
    # Spikes arriving at the layer.
    input_spikes: int
    # Spikes the layer emitted.
    output_spikes: int
    # Accumulates performed: every input spike times its fan-out.
    synaptic_ops: int
    # Multiply-accumulates of the same layer run densely, once per ANN frame.
    ann_macs: int


@dataclasses.dataclass(frozen=True)
class OperationsReport:
    """Per-layer operation counts with totals and the energy estimate."""

    layers: tuple[LayerOperations, ...]
    synaptic_ops: int
    ann_macs: int
    snn_energy_pj: float
    ann_energy_pj: float
    # ann_energy_pj / snn_energy_pj, infinite when the spiking network did no work.
    energy_ratio: float

    def summary(self) -> str:
        """Return one line with the totals, for logs."""
        return (
            f"{self.synaptic_ops} synaptic ops ({self.snn_energy_pj / 1e6:.3f} uJ), "
            f"{self.ann_macs} ANN MACs ({self.ann_energy_pj / 1e6:.3f} uJ), "
            f"ANN/SNN energy {self.energy_ratio:.1f}x"
        )


def _check_output_size(geometry: LayerGeometry, input_size: tuple[int, int], output_size: tuple[int, int]) -> None:
    if geometry.transposed:
        # Raises when the transposed convolution cannot reach the requested size.
        for input_length, output_length in zip(input_size, output_size):
            transposed_output_padding(input_length, output_length)
        return
    expected = tuple(downsampled_size(length) for length in input_size)
    if tuple(output_size) != expected:
        raise ValueError(
            f"layer {geometry.name} maps input size {tuple(input_size)} to {expected}, "
            f"not to the requested {tuple(output_size)}"
        )


def _spread_over_footprints(
    spike_map: Tensor, geometry: LayerGeometry, output_size: tuple[int, int]
) -> Tensor:
    # Convolving with ones counts, for every output pixel, the input spikes whose
    # footprint covers it. The sum over output pixels is the number of (spike, output pixel) pairs.
    kernel = ones_kernel(spike_map.device, spike_map.dtype)
    if not geometry.transposed:
        return F.conv2d(spike_map, kernel, stride=STRIDE, padding=PADDING)
    output_padding = tuple(
        transposed_output_padding(input_length, output_length)
        for input_length, output_length in zip(spike_map.shape[-2:], output_size)
    )
    return F.conv_transpose2d(spike_map, kernel, stride=STRIDE, padding=PADDING, output_padding=output_padding)


def count_synaptic_ops(input_spikes: Tensor, geometry: LayerGeometry, output_size: tuple[int, int]) -> Tensor:
    """Count the synaptic operations a layer performs for ``input_spikes``.

    ``input_spikes`` is (batch, channel, height, width) or (batch, channel, height,
    width, time) and may contain spike counts. Returns an int64 tensor (batch,) summed
    over channels and time.
    """
    if input_spikes.dim() not in (4, 5) or input_spikes.shape[1] != geometry.in_channels:
        raise ValueError(
            f"layer {geometry.name} expects input spikes shaped (batch, {geometry.in_channels}, height, width"
            f"[, time]), got {tuple(input_spikes.shape)}"
        )
    _check_output_size(geometry, tuple(input_spikes.shape[2:4]), output_size)

    # float64 keeps every count exact: the operations are linear in the spikes, so
    # summing over channels and time first gives the same total.
    spike_map = input_spikes.detach().to(torch.float64)
    if spike_map.dim() == 5:
        spike_map = spike_map.sum(dim=-1)
    spike_map = spike_map.sum(dim=1, keepdim=True)  # (batch, 1, height, width)

    covered = _spread_over_footprints(spike_map, geometry, output_size)  # (batch, 1, out_height, out_width)
    pairs = covered.sum(dim=(1, 2, 3)).round().to(torch.int64)  # (batch,)
    return pairs * geometry.out_channels


def fan_out_map(
    geometry: LayerGeometry,
    input_size: tuple[int, int],
    output_size: tuple[int, int],
    device: torch.device | str | None = None,
) -> Tensor:
    """Return the synapses driven by one input spike at each pixel, an int64 tensor (height, width).

    This is the adjoint of ``count_synaptic_ops``: for one input channel,
    ``(spike_map * fan_out_map).sum()`` equals its count.
    """
    _check_output_size(geometry, input_size, output_size)
    kernel = ones_kernel(torch.device(device) if device is not None else torch.device("cpu"), torch.float64)
    every_output = torch.ones(1, 1, *output_size, device=kernel.device, dtype=torch.float64)

    # The adjoint of a convolution is its transpose, and the other way round.
    if geometry.transposed:
        covering = F.conv2d(every_output, kernel, stride=STRIDE, padding=PADDING)
    else:
        output_padding = tuple(
            transposed_output_padding(output_length, input_length)
            for output_length, input_length in zip(output_size, input_size)
        )
        covering = F.conv_transpose2d(
            every_output, kernel, stride=STRIDE, padding=PADDING, output_padding=output_padding
        )
    return covering[0, 0].round().to(torch.int64) * geometry.out_channels  # (height, width)


def count_ann_macs(geometry: LayerGeometry, input_size: tuple[int, int], output_size: tuple[int, int]) -> int:
    """Count the multiply-accumulates of one dense pass of the layer at this size."""
    fan_out = fan_out_map(geometry, input_size, output_size)
    return int(fan_out.sum()) * geometry.in_channels


def count_network_operations(
    geometries: Sequence[LayerGeometry],
    layer_spikes: Sequence[Tensor],
    ann_frames_per_sample: int = 1,
) -> OperationsReport:
    """Count operations of a whole network run and estimate both energies.

    ``layer_spikes`` contains the network input followed by the output of every layer,
    each (batch, channel, height, width[, time]). Synaptic operations are summed over
    batch and time. The ANN runs densely ``ann_frames_per_sample`` times per sample,
    once per event frame; SpikeMS compares one frame per window.
    """
    if len(layer_spikes) != len(geometries) + 1:
        raise ValueError(
            f"expected {len(geometries) + 1} spike tensors (the input and one per layer), got {len(layer_spikes)}"
        )
    if ann_frames_per_sample < 0:
        raise ValueError(f"ann_frames_per_sample = {ann_frames_per_sample} is invalid: expected a count >= 0")

    layers = []
    for geometry, inputs, outputs in zip(geometries, layer_spikes[:-1], layer_spikes[1:]):
        input_size = tuple(inputs.shape[2:4])
        output_size = tuple(outputs.shape[2:4])
        batch = inputs.shape[0]
        macs_per_frame = count_ann_macs(geometry, input_size, output_size)
        layers.append(
            LayerOperations(
                name=geometry.name,
                input_spikes=int(inputs.detach().to(torch.float64).sum().round()),
                output_spikes=int(outputs.detach().to(torch.float64).sum().round()),
                synaptic_ops=int(count_synaptic_ops(inputs, geometry, output_size).sum()),
                ann_macs=macs_per_frame * batch * ann_frames_per_sample,
            )
        )

    report = operations_report(layers)
    logger.debug("network operations: %s", report.summary())
    return report


def operations_report(layers: Sequence[LayerOperations]) -> OperationsReport:
    """Total the per-layer counts and price them at ACCUMULATE_ENERGY_PJ and MULTIPLY_ACCUMULATE_ENERGY_PJ.

    This is the energy comparison of SpikeMS's Table III: the spiking network
    pays one accumulate per synaptic operation, the ANN one multiply-accumulate
    per MAC.
    """
    synaptic_ops = sum(layer.synaptic_ops for layer in layers)
    ann_macs = sum(layer.ann_macs for layer in layers)
    snn_energy_pj = synaptic_ops * ACCUMULATE_ENERGY_PJ
    ann_energy_pj = ann_macs * MULTIPLY_ACCUMULATE_ENERGY_PJ
    return OperationsReport(
        layers=tuple(layers),
        synaptic_ops=synaptic_ops,
        ann_macs=ann_macs,
        snn_energy_pj=snn_energy_pj,
        ann_energy_pj=ann_energy_pj,
        energy_ratio=ann_energy_pj / snn_energy_pj if snn_energy_pj > 0 else float("inf"),
    )


def operations_table(report: OperationsReport) -> list:
    """Return one dict per layer and a final "total" row: operations, energies in pJ and the ANN/SNN ratio."""
    rows = []
    for layer in (*report.layers, None):
        if layer is None:
            name, synaptic_ops, ann_macs = "total", report.synaptic_ops, report.ann_macs
            input_spikes = sum(item.input_spikes for item in report.layers)
        else:
            name, synaptic_ops, ann_macs, input_spikes = layer.name, layer.synaptic_ops, layer.ann_macs, layer.input_spikes
        snn_energy_pj = synaptic_ops * ACCUMULATE_ENERGY_PJ
        ann_energy_pj = ann_macs * MULTIPLY_ACCUMULATE_ENERGY_PJ
        rows.append(
            {
                "layer": name,
                "input_spikes": input_spikes,
                "synaptic_ops": synaptic_ops,
                "ann_macs": ann_macs,
                "snn_energy_pj": snn_energy_pj,
                "ann_energy_pj": ann_energy_pj,
                "energy_ratio": ann_energy_pj / snn_energy_pj if snn_energy_pj > 0 else float("inf"),
            }
        )
    return rows
