"""Shapes of the SpikeMS encoder-decoder: 3x3 stride-2 convolutions and their transposes.

A convolution with padding 1 maps a size n to ceil(n/2) and centres output pixel i on
input pixel 2i. The transposed convolution with padding 1 puts output pixel 2i at the
centre of input pixel i's footprint, so each decoder layer lands back on the grid of
the matching encoder layer. Its output padding (0 or 1) is chosen per size so that odd
sizes come back exactly.
"""

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor

KERNEL_SIZE = 3
STRIDE = 2
PADDING = 1


@dataclasses.dataclass(frozen=True)
class LayerGeometry:
    """Connectivity of one layer."""

    # Layer name, also the prefix of its weights in a state dict ("conv1", "deconv4", ...).
    name: str
    # True for a transposed (upsampling) convolution, False for a strided convolution.
    transposed: bool
    # Number of input channels.
    in_channels: int
    # Number of output channels.
    out_channels: int

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        """Shape of the weight tensor in PyTorch's layout for this kind of convolution."""
        if self.transposed:
            return (self.in_channels, self.out_channels, KERNEL_SIZE, KERNEL_SIZE)
        return (self.out_channels, self.in_channels, KERNEL_SIZE, KERNEL_SIZE)


def downsampled_size(size: int) -> int:
    """Return the output size of a 3x3 stride-2 convolution with padding 1: ceil(size/2)."""
    return (size + 2 * PADDING - KERNEL_SIZE) // STRIDE + 1


def transposed_output_padding(input_size: int, output_size: int) -> int:
    """Return the output padding that makes a transposed convolution reach ``output_size``."""
    unpadded_size = (input_size - 1) * STRIDE - 2 * PADDING + KERNEL_SIZE
    output_padding = output_size - unpadded_size
    if not 0 <= output_padding < STRIDE:
        raise ValueError(
            f"a transposed convolution cannot map size {input_size} to {output_size}: "
            f"expected an output size of {unpadded_size} or {unpadded_size + 1}"
        )
    return output_padding


def apply_weights(
    spikes: Tensor, weight: Tensor, geometry: LayerGeometry, output_size: tuple[int, int]
) -> Tensor:
    """Return the weighted input of every output neuron for ``spikes`` (batch, channel, height, width)."""
    if not geometry.transposed:
        return F.conv2d(spikes, weight, stride=STRIDE, padding=PADDING)
    output_padding = tuple(
        transposed_output_padding(input_size, target_size)
        for input_size, target_size in zip(spikes.shape[-2:], output_size)
    )
    return F.conv_transpose2d(spikes, weight, stride=STRIDE, padding=PADDING, output_padding=output_padding)


def ones_kernel(device: torch.device, dtype: torch.dtype) -> Tensor:
    """Return a single-channel 3x3 kernel of ones, shaped (1, 1, 3, 3)."""
    return torch.ones(1, 1, KERNEL_SIZE, KERNEL_SIZE, device=device, dtype=dtype)
