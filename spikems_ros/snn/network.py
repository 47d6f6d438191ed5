"""The SpikeMS encoder-decoder network of SRM spiking layers, with two drivers.

Tensor layout, used by every public method:

* window: input and output spikes (batch, 2, height, width, time);
* streaming step: input and output spikes (batch, 2, height, width).

Channel p contains the events of polarity p (0 = OFF, 1 = ON, as ``p`` in EVENT_DTYPE).
An output spike at (p, y, x, t) marks foreground activity there. Three 3x3 stride-2
convolutions (2 -> 16 -> 32 -> 64 channels) are followed by three 3x3 stride-2
transposed convolutions (64 -> 32 -> 16 -> 2), so any height and width, odd ones
included, come back out pixel-aligned (see ``geometry``). Spikes are binary floats
(0.0 or 1.0).

Both drivers run the same neuron recurrence (``neuron.srm_step``) in the same
order. The window driver batches each convolution over time (one call on
(batch*time, channel, height, width)) and then steps the neurons through time. The
streaming driver convolves one step at a time.
"""

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from spikems_ros.snn.energy import fan_out_map
from spikems_ros.snn.geometry import LayerGeometry, apply_weights, downsampled_size
from spikems_ros.snn.neuron import (
    RELEASED_NEURON_CONFIGS,
    NeuronConfig,
    SrmState,
    delay_window,
    srm_step,
    srm_window,
    zero_srm_state,
)

ARCHITECTURE = "spikems-6layer"
CHANNELS = (2, 16, 32, 64, 32, 16, 2)
LAYER_NAMES = ("conv1", "conv2", "conv3", "deconv4", "deconv5", "deconv6")
# The first three layers downsample, the last three upsample.
TRANSPOSED = (False, False, False, True, True, True)


class LayerState(NamedTuple):
    """Streaming state of one spiking layer."""

    neurons: SrmState
    # Last output spikes before the delay, oldest first, shaped
    # (batch, channel, height, width, max_delay_steps). Empty when delays are off.
    delay_history: Tensor


class NetworkState(NamedTuple):
    """Streaming state of the whole network. Every step returns a new one."""

    # (height, width) of the input the state was built for.
    input_size: tuple[int, int]
    layers: tuple[LayerState, ...]
    # Per layer, an int64 (height, width) map of the synapses one input spike at each
    # pixel drives. It depends only on the input size and is kept for the step statistics.
    fan_out_maps: tuple[Tensor, ...]


class LayerStats(NamedTuple):
    """Activity of one layer during one streaming step, as int64 tensors (batch,)."""

    input_spikes: Tensor
    output_spikes: Tensor
    # Input spikes times the synapses each drives (see ``energy``).
    synaptic_ops: Tensor


def layer_geometries(channels: Sequence[int] = CHANNELS) -> tuple[LayerGeometry, ...]:
    """Return the geometry of the six layers for the given channel sizes."""
    return tuple(
        LayerGeometry(name=name, transposed=transposed, in_channels=channels[index], out_channels=channels[index + 1])
        for index, (name, transposed) in enumerate(zip(LAYER_NAMES, TRANSPOSED))
    )


def layer_output_sizes(height: int, width: int) -> tuple[tuple[int, int], ...]:
    """Return the (height, width) of every layer's output. The last one is the input size."""
    input_size = (height, width)
    conv1 = (downsampled_size(height), downsampled_size(width))
    conv2 = (downsampled_size(conv1[0]), downsampled_size(conv1[1]))
    conv3 = (downsampled_size(conv2[0]), downsampled_size(conv2[1]))
    return (conv1, conv2, conv3, conv2, conv1, input_size)


def _check_channels(channels: Sequence[int]) -> tuple[int, ...]:
    channels = tuple(channels)
    valid = (
        len(channels) == len(LAYER_NAMES) + 1
        and all(isinstance(count, int) and not isinstance(count, bool) and count > 0 for count in channels)
        and channels[0] == 2
        and channels[-1] == 2
    )
    if not valid:
        raise ValueError(
            f"channels {channels} are invalid: expected {len(LAYER_NAMES) + 1} positive integers "
            f"starting and ending with 2 (the two polarities), for example {CHANNELS}"
        )
    return channels


class SpikingLayer(nn.Module):
    """One convolution or transposed convolution feeding a layer of SRM neurons.

    Parameters: ``weight`` in PyTorch's layout for the convolution kind, no bias,
    and, when ``config.max_delay_steps > 0``, ``delay_steps`` (out_channels,), real
    axonal delays rounded to whole steps in the forward pass (see ``neuron.delay_window``).
    """

    def __init__(self, geometry: LayerGeometry, config: NeuronConfig):
        super().__init__()
        self.geometry = geometry
        self.config = config
        self.weight = nn.Parameter(torch.empty(geometry.weight_shape))
        if config.max_delay_steps > 0:
            # Learning starts from no delay and moves the delays where they help.
            self.delay_steps = nn.Parameter(torch.zeros(geometry.out_channels))
        else:
            self.register_parameter("delay_steps", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw weights uniformly from +-1/sqrt(synapses per output neuron)."""
        # A transposed stride-2 convolution gives an output neuron on average a quarter
        # of the 3x3 taps of each input channel, a convolution all nine.
        taps = 9 / 4 if self.geometry.transposed else 9
        bound = 1.0 / math.sqrt(self.geometry.in_channels * taps)
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            if self.delay_steps is not None:
                self.delay_steps.zero_()

    def initial_state(self, batch: int, output_size: tuple[int, int], device: torch.device) -> LayerState:
        """Return the layer at rest for a batch and output size."""
        like = torch.zeros(batch, self.geometry.out_channels, *output_size, device=device, dtype=self.weight.dtype)
        history = torch.zeros(*like.shape, self.config.max_delay_steps, device=device, dtype=like.dtype)
        return LayerState(zero_srm_state(like), history)

    def run_window(
        self, spikes: Tensor, state: LayerState, output_size: tuple[int, int]
    ) -> tuple[Tensor, LayerState]:
        """Run the layer over ``spikes`` (batch, channel, height, width, time)."""
        batch, channels, height, width, steps = spikes.shape

        # One convolution call for all steps: time joins the batch dimension.
        frames = spikes.permute(0, 4, 1, 2, 3).reshape(batch * steps, channels, height, width)
        weighted = apply_weights(frames, self.weight, self.geometry, output_size)  # (batch*time, out, h, w)
        weighted = weighted.view(batch, steps, *weighted.shape[1:]).permute(0, 2, 3, 4, 1)  # (batch, out, h, w, time)

        output, neurons = srm_window(weighted, state.neurons, self.config)
        history = state.delay_history
        if self.delay_steps is not None:
            output, history = delay_window(output, history, self.delay_steps)
        return output, LayerState(neurons, history)

    def step(self, spikes: Tensor, state: LayerState, output_size: tuple[int, int]) -> tuple[Tensor, LayerState]:
        """Advance the layer by one step for ``spikes`` (batch, channel, height, width)."""
        weighted = apply_weights(spikes, self.weight, self.geometry, output_size)  # (batch, out, h, w)
        output, _, neurons = srm_step(weighted, state.neurons, self.config)
        history = state.delay_history
        if self.delay_steps is not None:
            delayed, history = delay_window(output.unsqueeze(-1), history, self.delay_steps)
            output = delayed.squeeze(-1)
        return output, LayerState(neurons, history)


class SpikeMSNetwork(nn.Module):
    """SpikeMS spiking encoder-decoder: (batch, 2, height, width, time) -> same shape.

    ``forward`` and ``run_window`` drive whole windows (training), ``initial_state`` and
    ``step`` drive one time bin at a time (streaming). Both give identical spikes up
    to the rounding of the convolution sums (see ``run_window``).
    """

    def __init__(
        self,
        neuron_configs: Sequence[NeuronConfig] = RELEASED_NEURON_CONFIGS,
        channels: Sequence[int] = CHANNELS,
    ):
        super().__init__()
        self.channels = _check_channels(channels)
        neuron_configs = tuple(neuron_configs)
        if len(neuron_configs) != len(LAYER_NAMES) or not all(
            isinstance(config, NeuronConfig) for config in neuron_configs
        ):
            raise TypeError(
                f"neuron_configs must be {len(LAYER_NAMES)} NeuronConfig objects, one per layer "
                f"{LAYER_NAMES}, got {neuron_configs!r}"
            )
        bins_ms = {config.bin_ms for config in neuron_configs}
        if len(bins_ms) != 1:
            raise ValueError(f"every layer must use the same bin_ms, got {[c.bin_ms for c in neuron_configs]}")

        self.neuron_configs = neuron_configs
        self.geometries = layer_geometries(self.channels)
        self.layer_names = LAYER_NAMES
        for geometry, config in zip(self.geometries, neuron_configs):
            self.add_module(geometry.name, SpikingLayer(geometry, config))

    @property
    def layers(self) -> tuple[SpikingLayer, ...]:
        """The six spiking layers, input side first."""
        return tuple(getattr(self, name) for name in LAYER_NAMES)

    @property
    def bin_ms(self) -> float:
        """Duration of one time step."""
        return self.neuron_configs[0].bin_ms

    def initial_state(
        self, batch: int, height: int, width: int, device: torch.device | str | None = None
    ) -> NetworkState:
        """Return the network at rest for inputs (batch, 2, height, width), on the weights' device by default."""
        for name, value in (("batch", batch), ("height", height), ("width", width)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"initial_state: {name} = {value!r} is invalid: expected an integer >= 1")
        device = torch.device(device) if device is not None else self.layers[0].weight.device

        output_sizes = layer_output_sizes(height, width)
        input_sizes = ((height, width),) + output_sizes[:-1]
        layer_states = tuple(
            layer.initial_state(batch, output_size, device) for layer, output_size in zip(self.layers, output_sizes)
        )
        fan_outs = tuple(
            fan_out_map(geometry, input_size, output_size, device)
            for geometry, input_size, output_size in zip(self.geometries, input_sizes, output_sizes)
        )
        return NetworkState((height, width), layer_states, fan_outs)

    def _check_spikes(self, spikes: Tensor, window: bool, state: NetworkState | None) -> None:
        layout = "(batch, 2, height, width, time)" if window else "(batch, 2, height, width)"
        if not isinstance(spikes, Tensor):
            raise TypeError(f"expected spikes as a torch.Tensor shaped {layout}, got {type(spikes).__name__}")
        expected_dims = 5 if window else 4
        if spikes.dim() != expected_dims or spikes.shape[1] != 2 or 0 in spikes.shape:
            raise ValueError(f"expected spikes shaped {layout} with no empty dimension, got {tuple(spikes.shape)}")
        weight = self.layers[0].weight
        if spikes.dtype != weight.dtype or spikes.device != weight.device:
            raise TypeError(
                f"spikes are {spikes.dtype} on {spikes.device} but the weights are {weight.dtype} "
                f"on {weight.device}: convert the spikes with .to(...)"
            )
        if state is None:
            return
        batch = state.layers[0].neurons.psp.y1.shape[0]
        if (spikes.shape[0], *spikes.shape[2:4]) != (batch, *state.input_size):
            raise ValueError(
                f"spikes {tuple(spikes.shape)} do not match the state, which was built for "
                f"batch {batch} and input size {state.input_size}"
            )

    def _run_layers(self, spikes: Tensor, state: NetworkState) -> tuple[list[Tensor], NetworkState]:
        output_sizes = layer_output_sizes(*state.input_size)
        outputs = [spikes]
        layer_states = []
        for layer, layer_state, output_size in zip(self.layers, state.layers, output_sizes):
            layer_output, layer_state = layer.run_window(outputs[-1], layer_state, output_size)
            outputs.append(layer_output)
            layer_states.append(layer_state)
        return outputs, state._replace(layers=tuple(layer_states))

    def run_window(self, spikes: Tensor, state: NetworkState) -> tuple[Tensor, NetworkState]:
        """Run a window (batch, 2, height, width, time) from ``state`` and return output spikes and the new state.

        Consecutive windows carrying the state give the same spikes as one long
        window and as single steps, provided the convolution sums round alike.
        NOTE: the CPU backend may sum a convolution in a different order for a
        different batch size, so with arbitrary float weights the drivers can
        differ in the last bit of a potential and, rarely, in a spike. With weights
        on a coarse binary grid every sum is exact and the drivers agree exactly.
        """
        self._check_spikes(spikes, window=True, state=state)
        outputs, state = self._run_layers(spikes, state)
        return outputs[-1], state

    def run_window_all_layers(self, spikes: Tensor, state: NetworkState) -> tuple[list[Tensor], NetworkState]:
        """Run a window from ``state``; return the input followed by every layer's output, and the new state.

        Each output is (batch, channel, height, width, time): the input of
        ``energy.count_network_operations`` for a stream processed chunk by chunk.
        """
        self._check_spikes(spikes, window=True, state=state)
        return self._run_layers(spikes, state)

    def forward(self, spikes: Tensor) -> Tensor:
        """Run a window (batch, 2, height, width, time) from rest and return the output spikes, same shape."""
        self._check_spikes(spikes, window=True, state=None)
        batch, _, height, width, _ = spikes.shape
        output, _ = self.run_window(spikes, self.initial_state(batch, height, width, spikes.device))
        return output

    def forward_all_layers(self, spikes: Tensor) -> list[Tensor]:
        """Run a window from rest and return the input followed by every layer's output spikes.

        Each entry is (batch, channel, height, width, time). This is the input of
        ``energy.count_network_operations``.
        """
        self._check_spikes(spikes, window=True, state=None)
        batch, _, height, width, _ = spikes.shape
        outputs, _ = self._run_layers(spikes, self.initial_state(batch, height, width, spikes.device))
        return outputs

    def step(self, spikes: Tensor, state: NetworkState) -> tuple[Tensor, NetworkState, tuple[LayerStats, ...]]:
        """Advance the network by one time bin.

        ``spikes`` is (batch, 2, height, width). Returns the output spikes of this
        bin, same shape, the new state and one ``LayerStats`` per layer.
        """
        self._check_spikes(spikes, window=False, state=state)
        output_sizes = layer_output_sizes(*state.input_size)

        layer_input = spikes
        layer_states = []
        stats = []
        for layer, layer_state, output_size, fan_out in zip(
            self.layers, state.layers, output_sizes, state.fan_out_maps
        ):
            layer_output, layer_state = layer.step(layer_input, layer_state, output_size)
            layer_states.append(layer_state)
            stats.append(_layer_stats(layer_input, layer_output, fan_out))
            layer_input = layer_output
        return layer_input, state._replace(layers=tuple(layer_states)), tuple(stats)


def _layer_stats(layer_input: Tensor, layer_output: Tensor, fan_out: Tensor) -> LayerStats:
    # Spike counts per pixel are small integers, exact in any float type.
    input_per_pixel = layer_input.detach().sum(dim=1).to(torch.int64)  # (batch, height, width)
    return LayerStats(
        input_spikes=input_per_pixel.sum(dim=(1, 2)),
        output_spikes=layer_output.detach().sum(dim=(1, 2, 3)).to(torch.int64),
        synaptic_ops=(input_per_pixel * fan_out).sum(dim=(1, 2)),
    )
