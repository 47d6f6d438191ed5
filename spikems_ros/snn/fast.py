"""Event-driven streaming inference of the SpikeMS network, with work that follows the spikes.

The reference streaming path (``SpikeMSNetwork.run_window``) convolves whole frames
and updates every neuron at every step. Here the same network runs on sparse
spikes, compiled with numba:

* Synaptic input is accumulated event by event: each input spike adds its 3x3
  weight footprint, a vector over the output channels, into the input current of
  the output pixels it reaches. Work is proportional to the synaptic operations.
* Neurons are updated only in image rows that received input in the pass or hold
  a nonzero state. A row whose states are all exactly zero and that receives no
  input stays at zero and cannot spike (every threshold is > 0), so skipping it is
  exact. No epsilon is used: a state reaches zero only through float32 underflow,
  100 to 400 steps after its last input for time constants of 2 to 4 steps.
  NOTE: on camera scenes at 1 Mev/s every row stays active, so the neuron update
  costs as much as a dense one. The savings come from the synaptic input only.
* A chunk of bins runs layer by layer, as the window driver does: a layer receives
  the spikes of the same step from the layer below (every kernel is 0 at lag 0),
  so layer l can finish all bins of the chunk before layer l + 1 starts. Each
  pixel's state is then loaded once per chunk instead of once per bin.
* Rows run in parallel (numba ``prange``) on ``threads`` threads, 1 by default.
  On a machine whose cores are busy with other work, every parallel region waits
  for a descheduled thread: 2 threads measured up to 80x slower than 1 on 2 shared
  cores under a load of 8, so more threads pay only on idle cores.

Layout: every state, current and footprint is channel-last, ``(height, width,
channel)`` and ``(height, width, time, channel)``, so the vector over output
channels that one spike adds is contiguous and the neuron update vectorises.

Arithmetic: the neuron recurrence is ``neuron.srm_step`` computed in float32
operation by operation (constants rounded to float32 as PyTorch rounds a Python
scalar against a float32 tensor; no fused multiply-add), so identical synaptic
input gives identical states and spikes. Synaptic input is summed in float32 in a
fixed order (input spikes sorted by row, column, step, channel), which differs
from the order inside a PyTorch convolution: with arbitrary float weights the two
paths can differ in the last bit of an input current and, when a potential lies
within a few units in the last place of a threshold, in a spike. With weights on
a coarse binary grid every sum is exact and the paths agree bit for bit. The
result of this path does not depend on the chunking.
"""

from typing import NamedTuple

import numba
import numpy as np
import torch

from spikems_ros.snn.network import SpikeMSNetwork, layer_output_sizes
from spikems_ros.snn.neuron import NeuronConfig

# Bins per internal step of the layer-by-layer loop. Larger chunks are split, so
# the per-layer buffers (height x width x steps x channels) stay bounded. 8 bins
# already load each pixel's state once per 8 bins.
MAX_STEPS_PER_PASS = 8

KERNEL_TAPS = 3  # 3x3 kernels, stride 2, padding 1 (see geometry)


class FastLayer(NamedTuple):
    """Constants of one layer in the form the compiled kernels read."""

    transposed: bool
    # Weight vector over output channels for every (input channel, tap row, tap column),
    # float32 (in_channels, 3, 3, out_channels), contiguous over out_channels.
    footprint: np.ndarray
    # Synapses one input spike at each input pixel drives, int64 (in_height, in_width).
    fan_out: np.ndarray
    output_size: tuple[int, int]
    # float32 constants of neuron.srm_step: PSP decay and gain, refractory decay and gain, threshold.
    constants: np.ndarray
    # True for the SLAYER alpha refractory kernel, False for the first-order form.
    alpha_refractory: bool


class FastLayerState(NamedTuple):
    """Neuron state of one layer, float32 (height, width * channel), plus the rows that hold any."""

    psp_y1: np.ndarray
    psp_y2: np.ndarray
    refractory_y1: np.ndarray
    refractory_y2: np.ndarray
    # 1 where some state in the row is nonzero, uint8 (height,).
    live_rows: np.ndarray


class SpikeRows(NamedTuple):
    """Spikes of a pass over ``steps`` bins, row by row, as lists of channels per (pixel, step).

    The channels that spiked at pixel (y, x) in step t are
    ``channels[y, offsets[y, x * steps + t] : offsets[y, x * steps + t + 1]]``, in rising order.
    """

    channels: np.ndarray  # int32 (height, width * steps * num_channels), capacity per row
    offsets: np.ndarray  # int32 (height, width * steps + 1)
    steps: int


class FastChunkOutput(NamedTuple):
    """Output spikes of a chunk and per-bin operation counts."""

    # Output spikes of the last layer as (step, channel, y, x), sorted by step, then channel, y, x.
    step: np.ndarray
    channel: np.ndarray
    y: np.ndarray
    x: np.ndarray
    # int64 (steps, num_layers): spikes into each layer, spikes out, synaptic operations.
    input_spikes: np.ndarray
    output_spikes: np.ndarray
    synaptic_ops: np.ndarray


def layer_constants(config: NeuronConfig) -> np.ndarray:
    """Return the float32 constants (psp decay, psp gain, refractory decay, refractory gain, threshold)."""
    # PyTorch multiplies a float32 tensor by a Python float in float32, after rounding
    # the scalar to float32; the comparison with the threshold rounds it the same way.
    return np.array(
        [config.psp_decay, config.psp_gain, config.refractory_decay, config.refractory_gain, config.threshold],
        dtype=np.float32,
    )


def unsupported_reason(network: SpikeMSNetwork) -> str | None:
    """Return why this path cannot run ``network`` exactly, or None when it can."""
    dtype = network.layers[0].weight.dtype
    if dtype != torch.float32:
        return f"the weights are {dtype}, the fast path computes in float32"
    delayed = [layer.geometry.name for layer in network.layers if layer.delay_steps is not None]
    if delayed:
        # TODO: carry axonal delays (neuron.delay_window) across chunks in the fast path.
        return f"layers {delayed} have axonal delays, which the fast path does not implement"
    return None


@numba.njit(cache=True, nogil=True)
def _tap_source(output_index, tap, transposed, input_length):
    # Input index that reaches ``output_index`` through kernel tap ``tap``, or -1.
    # Convolution: output o reads input 2*o - 1 + tap. Transposed: input i writes output 2*i - 1 + tap.
    if transposed:
        twice = output_index + 1 - tap
        if twice < 0 or twice % 2 != 0:
            return -1
        source = twice // 2
    else:
        source = 2 * output_index - 1 + tap
    if source < 0 or source >= input_length:
        return -1
    return source


@numba.njit(cache=True, nogil=True)
def _spikes_to_rows(y, x, step, channel, steps, num_channels, rows_channels, rows_offsets):
    # Write spikes sorted by (y, x, step, channel) into SpikeRows arrays. Duplicates collapse
    # into one spike, as several events of one pixel and polarity in a bin do.
    height, width = rows_offsets.shape[0], (rows_offsets.shape[1] - 1) // steps
    rows_offsets[:] = 0
    fill = np.zeros(height, np.int64)
    previous = -1
    for index in range(y.shape[0]):
        code = ((y[index] * width + x[index]) * steps + step[index]) * num_channels + channel[index]
        if code == previous:
            continue
        previous = code
        row = y[index]
        rows_channels[row, fill[row]] = channel[index]
        fill[row] += 1
        rows_offsets[row, x[index] * steps + step[index] + 1] += 1
    for row in range(height):
        for slot in range(1, rows_offsets.shape[1]):
            rows_offsets[row, slot] += rows_offsets[row, slot - 1]


@numba.njit(cache=True, nogil=True, parallel=True)
def _layer_pass(
    in_channels, in_offsets, in_height, in_width, steps, footprint, transposed,
    psp_y1, psp_y2, ref_y1, ref_y2, live_rows, constants, alpha_refractory,
    out_channels, out_offsets, output_spikes, next_fan_out, next_synaptic_ops,
):
    # One output row per parallel task: sum the row's synaptic input for every step
    # (event-driven, from the spikes of the input rows it reaches), run the neurons
    # of the row through the steps, and write its spikes as SpikeRows.
    height = psp_y1.shape[0]
    channels = footprint.shape[1] // (KERNEL_TAPS * KERNEL_TAPS)
    width = psp_y1.shape[1] // channels
    psp_decay, psp_gain = constants[0], constants[1]
    ref_decay, ref_gain, threshold = constants[2], constants[3], constants[4]
    zero = np.float32(0.0)
    one = np.float32(1.0)
    per_row_counts = np.zeros((height, steps), np.int64)
    per_row_ops = np.zeros((height, steps), np.int64)

    for row in numba.prange(height):
        has_input = False
        for tap_y in range(KERNEL_TAPS):
            source_row = _tap_source(row, tap_y, transposed, in_height)
            if source_row >= 0 and in_offsets[source_row, in_width * steps] > 0:
                has_input = True
        if not has_input and live_rows[row] == 0:
            # All states zero and no input: the row stays at rest and cannot spike.
            out_offsets[row, :] = 0
            continue

        # Synaptic input of the row, (steps, width * channels). For each input pixel and
        # step, the weights of its spiking channels for this kernel row are first summed
        # into ``pixel_sum`` (3 taps x channels, in rising channel order), which is then
        # added at the 3 output columns it reaches. The order is fixed: input row
        # (tap_y), input column, tap_x.
        current = np.zeros((steps, width * channels), np.float32)
        tap_row_length = KERNEL_TAPS * channels
        pixel_sum = np.empty(tap_row_length, np.float32)
        if has_input:
            for tap_y in range(KERNEL_TAPS):
                source_row = _tap_source(row, tap_y, transposed, in_height)
                if source_row < 0 or in_offsets[source_row, in_width * steps] == 0:
                    continue
                row_channels = in_channels[source_row]
                row_offsets = in_offsets[source_row]
                for source_column in range(in_width):
                    for t in range(steps):
                        slot = source_column * steps + t
                        first, stop = row_offsets[slot], row_offsets[slot + 1]
                        if first == stop:
                            continue
                        pixel_sum[:] = zero
                        for spike_index in range(first, stop):
                            weights = footprint[row_channels[spike_index]]
                            base = tap_y * tap_row_length
                            for q in range(tap_row_length):
                                pixel_sum[q] += weights[base + q]
                        step_current = current[t]
                        for tap_x in range(KERNEL_TAPS):
                            # The output column that this input column reaches through tap_x.
                            if transposed:
                                column = 2 * source_column - 1 + tap_x
                            else:
                                twice = source_column + 1 - tap_x
                                if twice % 2 != 0:
                                    continue
                                column = twice // 2
                            if column < 0 or column >= width:
                                continue
                            target = column * channels
                            tap_base = tap_x * channels
                            for c in range(channels):
                                step_current[target + c] += pixel_sum[tap_base + c]

        # neuron.srm_step, one float32 operation at a time, for every neuron of the row.
        # Spike flags go to a byte array padded to whole 8-byte words, so the scan below
        # can skip 8 neurons without a spike at once.
        row_length = width * channels
        padded_length = (row_length + 7) // 8 * 8
        fired = np.zeros(steps * padded_length, np.uint8)
        a1, a2, r1, r2 = psp_y1[row], psp_y2[row], ref_y1[row], ref_y2[row]
        for t in range(steps):
            flags = fired[t * padded_length : t * padded_length + row_length]
            for j in range(row_length):
                new_a2 = psp_decay * a2[j] + psp_decay * a1[j]
                a1[j] = psp_decay * a1[j] + current[t, j]
                a2[j] = new_a2
                if alpha_refractory:
                    r2[j] = ref_decay * r2[j] + ref_decay * r1[j]
                    potential = psp_gain * new_a2 + ref_gain * r2[j]
                else:
                    potential = psp_gain * new_a2 + ref_gain * (ref_decay * r1[j])
                spike = potential >= threshold
                r1[j] = ref_decay * r1[j] + (one if spike else zero)
                flags[j] = spike

        # Collect the spikes in (step, neuron) order, then sort them by (column, step)
        # with a counting sort: the SpikeRows order the next layer reads.
        words = fired.view(np.uint64)
        spike_steps = np.empty(steps * row_length, np.int32)
        spike_neurons = np.empty(steps * row_length, np.int32)
        spike_count = 0
        for word in range(words.shape[0]):
            if words[word] == 0:
                continue
            for index in range(word * 8, word * 8 + 8):
                if fired[index]:
                    spike_steps[spike_count] = index // padded_length
                    spike_neurons[spike_count] = index % padded_length
                    spike_count += 1

        offsets = out_offsets[row]
        offsets[:] = 0
        for index in range(spike_count):
            t = spike_steps[index]
            column = spike_neurons[index] // channels
            offsets[column * steps + t + 1] += 1
            per_row_counts[row, t] += 1
            per_row_ops[row, t] += next_fan_out[row, column]
        for slot in range(1, offsets.shape[0]):
            offsets[slot] += offsets[slot - 1]
        cursor = offsets[:-1].copy()
        for index in range(spike_count):
            neuron = spike_neurons[index]
            slot = (neuron // channels) * steps + spike_steps[index]
            out_channels[row, cursor[slot]] = neuron % channels
            cursor[slot] += 1

        nonzero = False
        for j in range(width * channels):
            if a1[j] != zero or a2[j] != zero or r1[j] != zero or r2[j] != zero:
                nonzero = True
                break
        live_rows[row] = 1 if nonzero else 0

    for row in range(height):
        for t in range(steps):
            output_spikes[t] += per_row_counts[row, t]
            next_synaptic_ops[t] += per_row_ops[row, t]


@numba.njit(cache=True, nogil=True)
def _rows_to_spikes(rows_channels, rows_offsets, steps):
    # SpikeRows back to flat (y, x, step, channel) arrays.
    height = rows_offsets.shape[0]
    width = (rows_offsets.shape[1] - 1) // steps
    total = 0
    for row in range(height):
        total += rows_offsets[row, width * steps]
    y = np.empty(total, np.int64)
    x = np.empty(total, np.int64)
    step = np.empty(total, np.int64)
    channel = np.empty(total, np.int64)
    position = 0
    for row in range(height):
        for column in range(width):
            for t in range(steps):
                slot = column * steps + t
                for index in range(rows_offsets[row, slot], rows_offsets[row, slot + 1]):
                    y[position] = row
                    x[position] = column
                    step[position] = t
                    channel[position] = rows_channels[row, index]
                    position += 1
    return y, x, step, channel


class FastSpikeMSNetwork:
    """The SpikeMS network of a ``SpikeMSNetwork``, run event-driven on the CPU for one stream.

    Built once per resolution; ``run`` advances the state over any number of bins.
    Networks with axonal delays or non-float32 weights are rejected (see
    ``unsupported_reason``).
    """

    def __init__(self, network: SpikeMSNetwork, height: int, width: int, threads: int = 1):
        reason = unsupported_reason(network)
        if reason is not None:
            raise ValueError(f"the fast path cannot run this network: {reason}")
        if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= numba.config.NUMBA_NUM_THREADS:
            raise ValueError(
                f"threads = {threads!r} is invalid: expected an integer from 1 to {numba.config.NUMBA_NUM_THREADS}"
            )
        self.threads = threads
        self.height = int(height)
        self.width = int(width)
        fan_outs = network.initial_state(1, self.height, self.width, "cpu").fan_out_maps
        output_sizes = layer_output_sizes(self.height, self.width)

        layers = []
        for layer, output_size, fan_out in zip(network.layers, output_sizes, fan_outs):
            weight = layer.weight.detach().cpu().numpy()
            # Convolution weights are (out, in, ky, kx), transposed ones (in, out, ky, kx).
            in_first = weight if layer.geometry.transposed else weight.transpose(1, 0, 2, 3)
            footprint = np.ascontiguousarray(in_first.transpose(0, 2, 3, 1), dtype=np.float32)  # (in, 3, 3, out)
            layers.append(
                FastLayer(
                    transposed=layer.geometry.transposed,
                    footprint=footprint,
                    fan_out=fan_out.cpu().numpy().astype(np.int64),
                    output_size=output_size,
                    constants=layer_constants(layer.config),
                    alpha_refractory=layer.config.refractory_form == "alpha",
                )
            )
        self.layers = tuple(layers)
        # The last layer's spikes drive no further synapses.
        self._no_fan_out = np.zeros(output_sizes[-1], np.int64)

        # Spike lists between layers, reused across passes; index 0 is the input.
        sizes = ((self.height, self.width),) + output_sizes
        channel_counts = (network.channels[0],) + tuple(layer.footprint.shape[3] for layer in self.layers)
        self._rows = [
            (
                np.empty((height, width * MAX_STEPS_PER_PASS * count), np.int32),
                np.zeros(height * (width * MAX_STEPS_PER_PASS + 1), np.int32),
                (height, width),
            )
            for (height, width), count in zip(sizes, channel_counts)
        ]
        self.state = self.initial_state()

    def initial_state(self) -> tuple[FastLayerState, ...]:
        """Return every layer at rest."""
        states = []
        for layer in self.layers:
            height, width = layer.output_size
            shape = (height, width * layer.footprint.shape[3])
            states.append(FastLayerState(*(np.zeros(shape, np.float32) for _ in range(4)), np.zeros(height, np.uint8)))
        return tuple(states)

    def reset(self) -> None:
        """Put every neuron at rest."""
        self.state = self.initial_state()

    def run(self, steps: int, channel: np.ndarray, y: np.ndarray, x: np.ndarray, step: np.ndarray) -> FastChunkOutput:
        """Advance the network by ``steps`` bins of input spikes given as (channel, y, x, step) arrays.

        ``step`` counts bins from 0 at the start of this call. Repeated spikes collapse
        into one; the order of the spikes does not matter.
        """
        if steps < 0:
            raise ValueError(f"steps = {steps!r} is invalid: expected an integer >= 0")
        channel, y, x, step = (np.asarray(column, np.int64) for column in (channel, y, x, step))
        for name, values, limit in (("step", step, steps), ("channel", channel, 2), ("y", y, self.height),
                                    ("x", x, self.width)):
            if values.size and (values.min() < 0 or values.max() >= limit):
                raise ValueError(f"spike {name} values span {values.min()}..{values.max()}, expected 0..{limit - 1}")

        # Sorted by step to split the passes, then within each pass by (y, x, step,
        # channel): the fixed summation order of every current.
        order = np.argsort(step, kind="stable")
        channel, y, x, step = channel[order], y[order], x[order], step[order]
        bounds = np.searchsorted(step, np.arange(0, steps + MAX_STEPS_PER_PASS, MAX_STEPS_PER_PASS))

        parts = []
        # numba's thread count is a per-calling-thread setting; restore it afterwards.
        previous_threads = numba.get_num_threads()
        numba.set_num_threads(self.threads)
        try:
            for pass_index, first in enumerate(range(0, steps, MAX_STEPS_PER_PASS)):
                pass_steps = min(MAX_STEPS_PER_PASS, steps - first)
                selected = slice(bounds[pass_index], bounds[pass_index + 1])
                pass_step = step[selected] - first
                within = np.lexsort((channel[selected], pass_step, x[selected], y[selected]))
                part = self._run_pass(pass_steps, y[selected][within], x[selected][within], pass_step[within],
                                      channel[selected][within])
                parts.append(part._replace(step=part.step + first))
        finally:
            numba.set_num_threads(previous_threads)
        return _join_passes(parts, len(self.layers))

    def _run_pass(self, steps, y, x, step, channel) -> FastChunkOutput:
        num_layers = len(self.layers)
        input_spikes = np.zeros((num_layers, steps), np.int64)
        output_spikes = np.zeros((num_layers, steps), np.int64)
        synaptic_ops = np.zeros((num_layers, steps), np.int64)

        # Offsets for this pass's number of steps, as contiguous views of the reused buffers.
        rows = [
            SpikeRows(channels, offsets[: height * (width * steps + 1)].reshape(height, width * steps + 1), steps)
            for channels, offsets, (height, width) in self._rows
        ]
        _spikes_to_rows(y, x, step, channel, steps, 2, rows[0].channels, rows[0].offsets)
        # Statistics of the input layer; every later layer's come from the layer below it.
        unique_codes = np.unique(((y * self.width + x) * steps + step) * 2 + channel)
        unique_pixels = unique_codes // (2 * steps)
        unique_steps = (unique_codes // 2) % steps
        input_spikes[0] = np.bincount(unique_steps, minlength=steps)
        synaptic_ops[0] = np.bincount(unique_steps, weights=self.layers[0].fan_out.ravel()[unique_pixels],
                                      minlength=steps).round().astype(np.int64)

        for index, (layer, state) in enumerate(zip(self.layers, self.state)):
            source, target = rows[index], rows[index + 1]
            in_height = source.offsets.shape[0]
            in_width = (source.offsets.shape[1] - 1) // steps
            last = index + 1 == num_layers
            _layer_pass(
                source.channels, source.offsets, in_height, in_width, steps,
                layer.footprint.reshape(layer.footprint.shape[0], -1), layer.transposed,
                *state[:4], state.live_rows, layer.constants, layer.alpha_refractory,
                target.channels, target.offsets, output_spikes[index],
                self._no_fan_out if last else self.layers[index + 1].fan_out,
                np.zeros(steps, np.int64) if last else synaptic_ops[index + 1],
            )
            if not last:
                input_spikes[index + 1] = output_spikes[index]

        out_y, out_x, out_step, out_channel = _rows_to_spikes(rows[-1].channels, rows[-1].offsets, steps)
        # The reference path lists a bin's output spikes by channel, then row, then column.
        order = np.lexsort((out_x, out_y, out_channel, out_step))
        return FastChunkOutput(
            step=out_step[order],
            channel=out_channel[order].astype(np.uint8),
            y=out_y[order].astype(np.uint16),
            x=out_x[order].astype(np.uint16),
            input_spikes=input_spikes.T,  # (steps, num_layers)
            output_spikes=output_spikes.T,
            synaptic_ops=synaptic_ops.T,
        )


def _join_passes(parts: list, num_layers: int) -> FastChunkOutput:
    if not parts:
        empty_counts = np.zeros((0, num_layers), np.int64)
        return FastChunkOutput(
            np.zeros(0, np.int64), np.zeros(0, np.uint8), np.zeros(0, np.uint16), np.zeros(0, np.uint16),
            empty_counts, empty_counts, empty_counts,
        )
    return FastChunkOutput(*(np.concatenate(column) for column in zip(*parts)))
