"""Event-driven streaming inference of the SpikeMS network, with work that follows the spikes.

The reference streaming path (``SpikeMSNetwork.run_window``) convolves whole frames
and updates every neuron at every step. Here the same network runs on sparse
spikes, compiled with numba:

* Synaptic input is accumulated event by event: each input spike adds its 3x3
  weight footprint, a vector over the output channels, into the input current of
  the output pixels it reaches. Work is proportional to the synaptic operations.
* Neurons are stepped only in active columns of a row: columns that receive input
  in the pass, or whose pixel is awake. A pixel stays awake while some channel's
  potential could still reach the threshold without further input. Its future
  potential without input is at most ``gain * (decay * max(y2, 0) + peak *
  max(y1, 0))``, where ``peak`` is the largest k * decay**k over steps k >= 1 (the
  refractory term only lowers it). So a pixel whose bound lies below the threshold
  cannot spike until its next input and is left asleep. When input reaches it
  again, its state is first decayed over the skipped steps in closed form, ``y1 <-
  a**n y1`` and ``y2 <- a**n y2 + n a**n y1``, from tables of float32 powers.
* Active columns are grouped into runs of adjacent columns (runs a few idle
  neurons apart are merged), and each run is stepped through every step of the
  pass in one vectorised sweep per step: a pixel's channels are contiguous, so a
  run is one contiguous block of neurons. On the shipped weights and a generated
  346x260 scene at 1 Mev/s, 21 to 37 % of each layer's pixels are active per
  10-bin pass.
* A chunk of bins runs layer by layer, as the window driver does: a layer receives
  the spikes of the same step from the layer below (every kernel is 0 at lag 0),
  so layer l can finish all bins of the chunk before layer l + 1 starts. Each
  pixel's state is then loaded once per chunk instead of once per bin.
* Rows run in parallel (numba ``prange``) on ``threads`` threads, 1 by default,
  which calls a version compiled without a parallel region. On a machine whose
  cores are busy with other work, every parallel region waits for a descheduled
  thread: 2 threads measured up to 80x slower than 1 on 2 shared cores under a
  load of 8, so more threads pay only on idle cores.

Layout: every state, current and footprint is channel-last, ``(height, width,
channel)`` and ``(time, height, width, channel)``, so the vector over output
channels that one spike adds is contiguous and the neuron update vectorises.

Arithmetic: the neuron recurrence is ``neuron.srm_step`` computed in float32
operation by operation (constants rounded to float32 as PyTorch rounds a Python
scalar against a float32 tensor; no fused multiply-add), so identical synaptic
input gives identical states and spikes. Two things make the result differ from
the reference path in rare spikes:

* The closed-form decay of a skipped stretch rounds differently from stepping
  through it, by a few units in the last place. With ``closed_form_decay=False``
  a pixel sleeps only while all its states are exactly zero, where both agree bit
  for bit (a state reaches zero through float32 underflow, 100 to 400 steps after
  its last input for time constants of 2 to 4 steps), at the cost of stepping
  nearly every pixel in every bin.
* Synaptic input is summed in float32 in a fixed order (the input row, then the
  spikes of one step by column and channel, then the kernel column), which differs
  from the order inside a PyTorch convolution. With weights on a coarse binary
  grid every sum is exact.

Either difference changes a spike only when a potential lies within a few units
in the last place of a threshold: the measured share of differing output spikes
is in ``test/test_fast_inference.py``. The result of this path does not depend on
the chunking.
"""

import math
import types
from typing import NamedTuple

import numba
import numpy as np
import torch

from spikems_ros.snn.network import SpikeMSNetwork, layer_output_sizes
from spikems_ros.snn.neuron import NeuronConfig

# Bins per internal step of the layer-by-layer loop. Larger chunks are split, so
# the per-layer buffers (height x width x steps x channels) stay bounded. 16 covers
# the node's 10 ms window in one pass, and a step within a pass fits in STEP_BITS bits.
STEP_BITS = 4
STEP_MASK = (1 << STEP_BITS) - 1
MAX_STEPS_PER_PASS = 1 << STEP_BITS

KERNEL_TAPS = 3  # 3x3 kernels, stride 2, padding 1 (see geometry)

# A pixel is left asleep only when its bound on the future potential lies below the
# threshold by this fraction. The margin is far above the float32 rounding of the
# bound (a few 1e-7) and of the stepped recurrence over the steps to a peak.
SLEEP_MARGIN = 1e-4

# Length cap of the decay power tables. Longer gaps apply the last entry repeatedly.
MAX_DECAY_TABLE_LENGTH = 1 << 15

# Runs of active columns less than this many neurons apart (gap columns x channels) are
# stepped in one sweep: starting a sweep costs about as much as stepping 32 idle neurons.
MERGE_GAP_NEURONS = 32

# Tap rows of at most this many weights (3 x channels) are added with a loop of this fixed
# length, which LLVM turns into one vector operation.
SHORT_TAP_ROW = 8

# Input spikes per pixel and step are deduplicated with one bit per input channel.
MAX_INPUT_CHANNELS = 8


class FastLayer(NamedTuple):
    """Constants of one layer in the form the compiled kernels read."""

    transposed: bool
    # Weight vector over output channels for every (input channel, tap row, tap column),
    # float32 (in_channels, 3 * tap_row_stride): each tap row contains 3 * out_channels weights,
    # contiguous over tap column then output channel, zero-padded to SHORT_TAP_ROW when shorter.
    footprint: np.ndarray
    out_channels: int
    # Synapses one input spike at each input pixel drives, int64 (in_height, in_width).
    fan_out: np.ndarray
    output_size: tuple[int, int]
    # float32 constants of neuron.srm_step and of the sleep test (see layer_constants).
    constants: np.ndarray
    # float32 (4, length): a**n and n * a**n for the PSP decay, then for the refractory decay.
    decay_tables: np.ndarray
    # True for the SLAYER alpha refractory kernel, False for the first-order form.
    alpha_refractory: bool
    # Runs of active columns closer than this many columns are stepped as one (see MERGE_GAP_NEURONS).
    merge_gap: int


class FastLayerState(NamedTuple):
    """Neuron state of one layer: filter stages float32 (height, width * channel), per pixel bookkeeping.

    A pixel's filter stages hold its state after step ``updated_step`` (counted by
    ``FastSpikeMSNetwork.steps_run``). Pixels asleep since an earlier step are
    decayed to the current step when input reaches them.
    """

    psp_y1: np.ndarray
    psp_y2: np.ndarray
    refractory_y1: np.ndarray
    refractory_y2: np.ndarray
    updated_step: np.ndarray  # int64 (height, width)
    awake: np.ndarray  # uint8 (height, width): 1 while the pixel is stepped without input
    awake_rows: np.ndarray  # uint8 (height,): 1 where some pixel of the row is awake


class SpikeRows(NamedTuple):
    """Spikes of a pass, row by row, as codes of bit fields.

    Row y holds ``counts[y]`` codes ``(((x << STEP_BITS) | step) << channel_bits) | channel``
    without repeats. Within one step, a layer's output codes rise by column, then
    channel, and the input layer's keep the order of the input. Shifts instead of
    products keep integer division out of the kernels.
    """

    codes: np.ndarray  # int32 (height, width * MAX_STEPS_PER_PASS * num_channels), capacity per row
    counts: np.ndarray  # int32 (height,)
    channel_bits: int


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
    """Return the float32 constants the kernels read.

    In order: PSP decay a, PSP gain, refractory decay, refractory gain, threshold,
    the sleep limit (threshold lowered by ``SLEEP_MARGIN``) and the peak of k * a**k
    over whole steps k >= 1.
    """
    # PyTorch multiplies a float32 tensor by a Python float in float32, after rounding
    # the scalar to float32; the comparison with the threshold rounds it the same way.
    psp_decay = float(np.float32(config.psp_decay))
    peak_step = max(1, math.floor(-1.0 / math.log(psp_decay)))  # k * a**k peaks at k = 1 / ln(1 / a)
    peak_ramp = max(step * psp_decay**step for step in (peak_step, peak_step + 1))
    return np.array(
        [config.psp_decay, config.psp_gain, config.refractory_decay, config.refractory_gain, config.threshold,
         config.threshold * (1.0 - SLEEP_MARGIN), peak_ramp],
        dtype=np.float32,
    )


def decay_tables(config: NeuronConfig) -> np.ndarray:
    """Return float32 (4, length): a**n and n * a**n for n = 0 .. length - 1, PSP then refractory.

    Powers of the float32-rounded decays, so that n steps of the float32 recurrence
    and one table entry agree to rounding. The tables end where both entries of both
    filters are zero in float32, or at ``MAX_DECAY_TABLE_LENGTH``.
    """
    decays = [float(np.float32(config.psp_decay)), float(np.float32(config.refractory_decay))]
    # float32 rounds to zero below about 7e-46, so a state of up to 1e38 times a**n < 1e-130 is zero.
    slowest = max(decays)
    length = MAX_DECAY_TABLE_LENGTH
    if slowest < 1.0:
        length = min(length, int(math.ceil(130.0 * math.log(10.0) / -math.log(slowest))) + 2)
    steps = np.arange(length, dtype=np.float64)
    rows = []
    for decay in decays:
        power = np.exp(steps * math.log(decay))
        rows += [power, steps * power]
    return np.array(rows, dtype=np.float32)


def unsupported_reason(network: SpikeMSNetwork) -> str | None:
    """Return why this path cannot run ``network``, or None when it can."""
    dtype = network.layers[0].weight.dtype
    if dtype != torch.float32:
        return f"the weights are {dtype}, the fast path computes in float32"
    delayed = [layer.geometry.name for layer in network.layers if layer.delay_steps is not None]
    if delayed:
        # TODO: carry axonal delays (neuron.delay_window) across chunks in the fast path.
        return f"layers {delayed} have axonal delays, which the fast path does not implement"
    uneven = [count for count in network.channels if count & (count - 1)]
    if uneven:
        # NOTE: the kernels split a neuron index into column and channel with shifts.
        return f"channel counts {uneven} are not powers of two, which the fast path requires"
    if network.channels[0] > MAX_INPUT_CHANNELS:
        return f"the network reads {network.channels[0]} input channels, the fast path at most {MAX_INPUT_CHANNELS}"
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
def _input_rows(y, x, step, channel, first_step, steps, channel_bits, seen, codes, counts, fan_out,
                input_spikes, synaptic_ops):
    # Write the input spikes with first_step <= step < first_step + steps as SpikeRows (codes,
    # counts), steps counted from first_step, and count the spikes and synaptic operations of
    # every step. Repeats of one (pixel, step, channel) collapse into one spike, as several
    # events of one pixel and polarity in a bin do. ``seen`` (height, width << STEP_BITS) is all
    # zero between calls and marks one bit per channel while the rows are built.
    height = counts.shape[0]
    counts[:] = 0
    for index in range(y.shape[0]):
        t = step[index] - first_step
        if t < 0 or t >= steps:
            continue
        row, slot = y[index], (x[index] << STEP_BITS) | t
        bit = np.uint8(1 << channel[index])
        if seen[row, slot] & bit:
            continue
        seen[row, slot] |= bit
        codes[row, counts[row]] = (slot << channel_bits) | channel[index]
        counts[row] += 1

    for row in range(height):
        for code in codes[row, : counts[row]]:
            slot = code >> channel_bits
            seen[row, slot] = 0
            t = slot & STEP_MASK
            input_spikes[t] += 1
            synaptic_ops[t] += fan_out[row, slot >> STEP_BITS]


@numba.njit(cache=True, nogil=True, inline="always")
def _decay_skipped(a1, a2, r1, r2, first, count, gap, tables, last_table_entry, alpha_refractory):
    # Advance neurons first .. first + count - 1 over ``gap`` steps without input or spikes,
    # in closed form: y1 <- a**n y1, y2 <- a**n y2 + n a**n y1.
    while gap > 0:
        n = min(gap, last_table_entry)
        psp_power, psp_ramp = tables[0, n], tables[1, n]
        ref_power, ref_ramp = tables[2, n], tables[3, n]
        for offset in range(count):
            j = np.uint64(first + offset)
            a2[j] = psp_power * a2[j] + psp_ramp * a1[j]
            a1[j] = psp_power * a1[j]
            if alpha_refractory:
                r2[j] = ref_power * r2[j] + ref_ramp * r1[j]
            r1[j] = ref_power * r1[j]
        gap -= n


@numba.njit(cache=True, nogil=True, inline="always")
def _srm_run_neurons(a1, a2, r1, r2, first, count, steps, current, current_first, current_step_stride, fired,
                     fired_range, constants, alpha_refractory):
    # Run neuron.srm_step for neurons first .. first + count - 1 through ``steps`` steps, one
    # float32 operation at a time. Step t reads its input at current[current_first + t *
    # current_step_stride ...] and sets it back to zero. Spike flags go to fired[t * count +
    # offset]. fired_range[2t] and fired_range[2t + 1] get the offsets of the first and the
    # last neuron that fired in step t, or (count, -1) when none fired. The sweep over neurons
    # has no branch that depends on the data, so it vectorises.
    psp_decay, psp_gain = constants[0], constants[1]
    ref_decay, ref_gain, threshold = constants[2], constants[3], constants[4]
    zero = np.float32(0.0)
    one = np.float32(1.0)
    for t in range(steps):
        current_start = current_first + t * current_step_stride
        fired_start = t * count
        first_fired = np.int32(count)
        last_fired = np.int32(-1)
        for offset in range(count):
            j = np.uint64(first + offset)
            k = np.uint64(current_start + offset)
            new_a2 = psp_decay * a2[j] + psp_decay * a1[j]
            a1[j] = psp_decay * a1[j] + current[k]
            current[k] = zero
            a2[j] = new_a2
            if alpha_refractory:
                new_r2 = ref_decay * r2[j] + ref_decay * r1[j]
                r2[j] = new_r2
                potential = psp_gain * new_a2 + ref_gain * new_r2
            else:
                potential = psp_gain * new_a2 + ref_gain * (ref_decay * r1[j])
            spike = potential >= threshold
            r1[j] = ref_decay * r1[j] + (one if spike else zero)
            fired[np.uint64(fired_start + offset)] = spike
            first_fired = min(first_fired, np.int32(offset) if spike else np.int32(count))
            last_fired = max(last_fired, np.int32(offset) if spike else np.int32(-1))
        fired_range[2 * t] = first_fired
        fired_range[2 * t + 1] = last_fired


@numba.njit(cache=True, nogil=True, inline="always")
def _may_fire(a1, a2, r1, r2, first, count, constants, closed_form_decay):
    # Whether some neuron first .. first + count - 1 could fire without further input. With
    # closed-form decay: the PSP alone, an upper bound of the potential (the refractory term
    # is <= 0), at most gain * (a * max(y2, 0) + peak * max(y1, 0)) in any later step, reaches
    # the lowered threshold. Without: some state is nonzero.
    psp_decay, psp_gain = constants[0], constants[1]
    sleep_limit, peak_ramp = constants[5], constants[6]
    zero = np.float32(0.0)
    may_fire = False
    for offset in range(count):
        j = np.uint64(first + offset)
        if closed_form_decay:
            bound = psp_gain * (psp_decay * max(a2[j], zero) + peak_ramp * max(a1[j], zero))
            may_fire |= bound >= sleep_limit
        else:
            may_fire |= (a1[j] != zero) | (a2[j] != zero) | (r1[j] != zero) | (r2[j] != zero)
    return may_fire


def _layer_pass_body(
    in_codes, in_counts, in_channel_bits, in_height, steps, first_step, footprint, channels, transposed,
    psp_y1, psp_y2, ref_y1, ref_y2, updated_step, awake, awake_rows,
    constants, tables, alpha_refractory, closed_form_decay, merge_gap,
    out_codes, out_counts, out_channel_bits, output_spikes, next_fan_out, next_synaptic_ops,
    current_scratch, fired_scratch, range_scratch, listed_scratch, runs_scratch,
):
    # One output row per task:
    # 1. Sum the row's synaptic input for every step, event-driven, from the spikes of the
    #    input rows it reaches.
    # 2. Collect the active columns (input in the pass, or awake) into runs of adjacent
    #    columns, merging runs less than ``merge_gap`` columns apart.
    # 3. Decay each run's asleep pixels to the step before the pass in closed form, then step
    #    every run through every step of the pass, one vectorised sweep per step. The
    #    pixels between merged runs are stepped too, exactly: a sweep over a few idle
    #    pixels costs less than starting another sweep.
    # 4. Put every pixel of the runs to sleep whose potential can no longer reach the
    #    threshold without input. The row's spikes go out as SpikeRows codes.
    #
    # Hot loops index with unsigned integers: numba then drops the negative-index
    # wraparound, whose select hides the access pattern from LLVM and stops it vectorising.
    height = psp_y1.shape[0]
    width = psp_y1.shape[1] // channels
    row_length = width * channels
    last_table_entry = tables.shape[1] - 1
    in_channel_mask = (1 << in_channel_bits) - 1
    out_channel_mask = (1 << out_channel_bits) - 1
    flat_footprint = footprint.ravel()
    footprint_length = footprint.shape[1]
    tap_row_stride = footprint_length // KERNEL_TAPS
    tap_row_length = KERNEL_TAPS * channels
    per_row_counts = np.zeros((height, steps), np.int64)
    per_row_ops = np.zeros((height, steps), np.int64)

    for row in numba.prange(height):
        has_input = False
        for tap_y in range(KERNEL_TAPS):
            source_row = _tap_source(row, tap_y, transposed, in_height)
            if source_row >= 0 and in_counts[source_row] > 0:
                has_input = True
        if not has_input and awake_rows[row] == 0:
            # Every pixel asleep and no input: nothing can spike in this row.
            out_counts[row] = 0
            continue

        # Per-thread buffers, reused: a fresh array per row would be mapped and faulted in
        # anew. ``current`` (steps, width, channels) and ``column_listed`` (width) are all
        # zero between rows: every entry the sum writes lies in a run and is cleared when read.
        thread = numba.get_thread_id()
        current = current_scratch[thread]
        fired = fired_scratch[thread]
        fired_range = range_scratch[thread]
        column_listed = listed_scratch[thread]
        run_bounds = runs_scratch[thread]
        a1, a2, r1, r2 = psp_y1[row], psp_y2[row], ref_y1[row], ref_y2[row]
        row_updated, row_awake = updated_step[row], awake[row]
        row_out = out_codes[row]

        # 1. Each input spike adds the weights of its kernel row to the output columns it
        #    reaches. The order is fixed: input row (tap_y), then the input row's codes (in an
        #    order fixed within each step, see SpikeRows), then tap_x.
        for tap_y in range(KERNEL_TAPS):
            source_row = _tap_source(row, tap_y, transposed, in_height)
            if source_row < 0:
                continue
            row_codes = in_codes[source_row]
            tap_row_start = tap_y * tap_row_stride
            for index in range(in_counts[source_row]):
                code = row_codes[np.uint64(index)]
                slot = code >> in_channel_bits
                weights_start = (code & in_channel_mask) * footprint_length + tap_row_start
                source_column = slot >> STEP_BITS
                step_start = (slot & STEP_MASK) * width
                if transposed:
                    # Taps 0, 1, 2 reach the adjacent output columns 2x - 1, 2x, 2x + 1, whose
                    # channels lie in a row: one run of 3 x channels weights, clipped at the edges.
                    first_column = 2 * source_column - 1
                    target = (step_start + first_column) * channels
                    if tap_row_length <= SHORT_TAP_ROW and first_column >= 0 and first_column + KERNEL_TAPS <= width:
                        # A fixed length vectorises, and the padding adds zeros to the neighbours
                        # (the buffer has SHORT_TAP_ROW floats of slack at its end).
                        for q in range(SHORT_TAP_ROW):
                            current[np.uint64(target + q)] += flat_footprint[np.uint64(weights_start + q)]
                        column_listed[first_column] = 1
                        column_listed[first_column + 1] = 1
                        column_listed[first_column + 2] = 1
                        continue
                    first_weight = 0 if first_column >= 0 else channels
                    stop_weight = min(tap_row_length, (width - first_column) * channels)
                    for q in range(first_weight, stop_weight):
                        current[np.uint64(target + q)] += flat_footprint[np.uint64(weights_start + q)]
                    for column in range(max(first_column, 0), min(first_column + KERNEL_TAPS, width)):
                        column_listed[column] = 1
                    continue
                for tap_x in range(KERNEL_TAPS):
                    # Convolution: the output column that this input column reaches through tap_x.
                    twice = source_column + 1 - tap_x
                    if twice % 2 != 0:
                        continue
                    column = twice // 2
                    if column < 0 or column >= width:
                        continue
                    column_listed[column] = 1
                    target = (step_start + column) * channels
                    tap_weights = weights_start + tap_x * channels
                    for c in range(channels):
                        current[np.uint64(target + c)] += flat_footprint[np.uint64(tap_weights + c)]

        # 2. Collect the runs [start, stop) of active columns, in rising order.
        run_count = 0
        for column in range(width):
            if column_listed[column] | row_awake[column]:
                column_listed[column] = 0
                if run_count > 0 and column - run_bounds[2 * run_count - 1] < merge_gap:
                    run_bounds[2 * run_count - 1] = column + 1
                else:
                    run_bounds[2 * run_count] = column
                    run_bounds[2 * run_count + 1] = column + 1
                    run_count += 1

        # 3. Bring every pixel of the runs to the step before the pass, then step the runs.
        for run in range(run_count):
            for column in range(run_bounds[2 * run], run_bounds[2 * run + 1]):
                gap = first_step - 1 - row_updated[column]
                row_updated[column] = first_step + steps - 1
                if closed_form_decay and gap > 0:
                    _decay_skipped(a1, a2, r1, r2, column * channels, channels, gap, tables, last_table_entry,
                                   alpha_refractory)
        # Run by run through all steps: the codes of one step still come out in rising column
        # order, which fixes the summation order in the next layer.
        spike_count = 0
        next_fan_out_row = next_fan_out[row]
        for run in range(run_count):
            first = run_bounds[2 * run] * channels
            count = run_bounds[2 * run + 1] * channels - first
            _srm_run_neurons(a1, a2, r1, r2, first, count, steps, current, first, row_length, fired, fired_range,
                             constants, alpha_refractory)
            for t in range(steps):
                # Every channel count is a power of two (out_channel_bits bits), so neuron j is
                # channel j & mask of column j >> bits.
                step_first_spike = spike_count
                step_synaptic_ops = 0
                for offset in range(fired_range[2 * t], fired_range[2 * t + 1] + 1):
                    if fired[np.uint64(t * count + offset)]:
                        neuron = first + offset
                        column = neuron >> out_channel_bits
                        row_out[np.uint64(spike_count)] = (((column << STEP_BITS) | t) << out_channel_bits) | (
                            neuron & out_channel_mask)
                        spike_count += 1
                        step_synaptic_ops += next_fan_out_row[np.uint64(column)]
                if spike_count > step_first_spike:
                    per_row_counts[row, t] += spike_count - step_first_spike
                    per_row_ops[row, t] += step_synaptic_ops

        # 4. Sleep where the potential can no longer reach the threshold without input.
        any_awake = 0
        for run in range(run_count):
            for column in range(run_bounds[2 * run], run_bounds[2 * run + 1]):
                stays_awake = _may_fire(a1, a2, r1, r2, column * channels, channels, constants, closed_form_decay)
                row_awake[column] = 1 if stays_awake else 0
                any_awake |= row_awake[column]
        awake_rows[row] = any_awake

        out_counts[row] = spike_count

    for row in range(height):
        for t in range(steps):
            output_spikes[t] += per_row_counts[row, t]
            next_synaptic_ops[t] += per_row_ops[row, t]


def _compiled_layer_pass(name: str, parallel: bool):
    # numba names its cache files after a function's qualified name, so each compiled
    # variant gets its own copy of the Python function under its own name.
    body = types.FunctionType(_layer_pass_body.__code__, _layer_pass_body.__globals__, name)
    body.__qualname__ = name
    return numba.njit(cache=True, nogil=True, parallel=parallel)(body)


# One thread runs the variant without a parallel region, which saves the region's fixed cost per call.
_layer_pass_serial = _compiled_layer_pass("_layer_pass_serial", parallel=False)
_layer_pass_parallel = _compiled_layer_pass("_layer_pass_parallel", parallel=True)


@numba.njit(cache=True, nogil=True)
def _output_spikes(codes, counts, steps, channel_bits, first_step):
    # SpikeRows of the last layer as (step, channel, y, x) arrays sorted by step, channel, y, x:
    # a counting sort over (step, channel) that keeps the row-major order within each.
    height = counts.shape[0]
    num_channels = 1 << channel_bits
    channel_mask = num_channels - 1
    bucket_starts = np.zeros(steps * num_channels + 1, np.int64)
    for row in range(height):
        for code in codes[row, : counts[row]]:
            t = (code >> channel_bits) & STEP_MASK
            bucket_starts[t * num_channels + (code & channel_mask) + 1] += 1
    for bucket in range(1, bucket_starts.shape[0]):
        bucket_starts[bucket] += bucket_starts[bucket - 1]
    total = bucket_starts[-1]
    step = np.empty(total, np.int64)
    channel = np.empty(total, np.uint8)
    y = np.empty(total, np.uint16)
    x = np.empty(total, np.uint16)
    cursor = bucket_starts[:-1].copy()
    for row in range(height):
        for code in codes[row, : counts[row]]:
            slot = code >> channel_bits
            t, c = slot & STEP_MASK, code & channel_mask
            position = cursor[t * num_channels + c]
            cursor[t * num_channels + c] += 1
            step[position] = first_step + t
            channel[position] = c
            y[position] = row
            x[position] = slot >> STEP_BITS
    return step, channel, y, x


class FastSpikeMSNetwork:
    """The SpikeMS network of a ``SpikeMSNetwork``, run event-driven on the CPU for one stream.

    Built once per resolution; ``run`` advances the state over any number of bins.
    Networks with axonal delays or non-float32 weights are rejected (see
    ``unsupported_reason``). ``closed_form_decay=False`` skips only pixels whose
    states are all zero, which matches the reference path bit for bit on weights
    whose sums are exact, and is slower (see the module docstring).
    """

    def __init__(self, network: SpikeMSNetwork, height: int, width: int, threads: int = 1,
                 closed_form_decay: bool = True):
        reason = unsupported_reason(network)
        if reason is not None:
            raise ValueError(f"the fast path cannot run this network: {reason}")
        if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= numba.config.NUMBA_NUM_THREADS:
            raise ValueError(
                f"threads = {threads!r} is invalid: expected an integer from 1 to {numba.config.NUMBA_NUM_THREADS}"
            )
        self.threads = threads
        self.closed_form_decay = bool(closed_form_decay)
        self.height = int(height)
        self.width = int(width)
        self.input_channels = network.channels[0]
        fan_outs = network.initial_state(1, self.height, self.width, "cpu").fan_out_maps
        output_sizes = layer_output_sizes(self.height, self.width)

        layers = []
        for layer, output_size, fan_out in zip(network.layers, output_sizes, fan_outs):
            weight = layer.weight.detach().cpu().numpy()
            # Convolution weights are (out, in, ky, kx), transposed ones (in, out, ky, kx).
            in_first = weight if layer.geometry.transposed else weight.transpose(1, 0, 2, 3)
            footprint = np.ascontiguousarray(in_first.transpose(0, 2, 3, 1), dtype=np.float32)  # (in, 3, 3, out)
            tap_row_length = KERNEL_TAPS * footprint.shape[3]
            tap_rows = np.zeros((footprint.shape[0], KERNEL_TAPS, max(tap_row_length, SHORT_TAP_ROW)), np.float32)
            tap_rows[:, :, :tap_row_length] = footprint.reshape(footprint.shape[0], KERNEL_TAPS, tap_row_length)
            layers.append(
                FastLayer(
                    transposed=layer.geometry.transposed,
                    footprint=tap_rows.reshape(footprint.shape[0], -1),
                    out_channels=footprint.shape[3],
                    fan_out=fan_out.cpu().numpy().astype(np.int64),
                    output_size=output_size,
                    constants=layer_constants(layer.config),
                    decay_tables=decay_tables(layer.config),
                    alpha_refractory=layer.config.refractory_form == "alpha",
                    merge_gap=max(1, MERGE_GAP_NEURONS // footprint.shape[3]),
                )
            )
        self.layers = tuple(layers)
        # The last layer's spikes drive no further synapses.
        self._no_fan_out = np.zeros(output_sizes[-1], np.int64)

        # Spike codes between layers, reused across passes, with the input at index 0. Only
        # the pages a pass writes are ever touched, so the capacity costs address space.
        sizes = ((self.height, self.width),) + output_sizes
        channel_counts = (self.input_channels,) + tuple(layer.out_channels for layer in self.layers)
        self._rows = [
            SpikeRows(np.empty((height, width * MAX_STEPS_PER_PASS * count), np.int32), np.zeros(height, np.int32),
                      channel_bits=(count - 1).bit_length())
            for (height, width), count in zip(sizes, channel_counts)
        ]
        self._seen = np.zeros((self.height, self.width * MAX_STEPS_PER_PASS), np.uint8)
        # Per numba thread: synaptic input of one row (steps, width, channels), spike flags of
        # one sweep, listed columns and run bounds. Input and listed columns are all zero
        # between rows.
        widest_row = max(size[1] * layer.out_channels for size, layer in zip(output_sizes, self.layers))
        widest = max(size[1] for size in output_sizes)
        threads = numba.config.NUMBA_NUM_THREADS
        self._current = np.zeros((threads, MAX_STEPS_PER_PASS * widest_row + SHORT_TAP_ROW), np.float32)
        self._fired = np.zeros((threads, MAX_STEPS_PER_PASS * widest_row), np.uint8)
        self._fired_range = np.zeros((threads, 2 * MAX_STEPS_PER_PASS), np.int32)
        self._listed = np.zeros((threads, widest), np.uint8)
        self._runs = np.empty((threads, 2 * widest), np.int64)
        self.reset()

    def initial_state(self) -> tuple[FastLayerState, ...]:
        """Return every layer at rest, as of the step before the first."""
        states = []
        for layer in self.layers:
            height, width = layer.output_size
            shape = (height, width * layer.out_channels)
            states.append(
                FastLayerState(
                    *(np.zeros(shape, np.float32) for _ in range(4)),
                    updated_step=np.full((height, width), -1, np.int64),
                    awake=np.zeros((height, width), np.uint8),
                    awake_rows=np.zeros(height, np.uint8),
                )
            )
        return tuple(states)

    def reset(self) -> None:
        """Put every neuron at rest."""
        self.state = self.initial_state()
        self.steps_run = 0

    def run(self, steps: int, channel: np.ndarray, y: np.ndarray, x: np.ndarray, step: np.ndarray) -> FastChunkOutput:
        """Advance the network by ``steps`` bins of input spikes given as (channel, y, x, step) arrays.

        ``step`` counts bins from 0 at the start of this call. Repeated spikes collapse
        into one; the order of the spikes does not matter.
        """
        if steps < 0:
            raise ValueError(f"steps = {steps!r} is invalid: expected an integer >= 0")
        channel, y, x, step = (np.asarray(column, np.int64) for column in (channel, y, x, step))
        for name, values, limit in (("step", step, steps), ("channel", channel, self.input_channels),
                                    ("y", y, self.height), ("x", x, self.width)):
            if values.size and (values.min() < 0 or values.max() >= limit):
                raise ValueError(f"spike {name} values span {values.min()}..{values.max()}, expected 0..{limit - 1}")

        if steps > MAX_STEPS_PER_PASS:
            # Sorted by step, so each pass reads only its own slice.
            order = np.argsort(step, kind="stable")
            channel, y, x, step = channel[order], y[order], x[order], step[order]
        bounds = np.searchsorted(step, np.arange(0, steps + MAX_STEPS_PER_PASS, MAX_STEPS_PER_PASS)) \
            if steps > MAX_STEPS_PER_PASS else None

        parts = []
        # numba's thread count is a per-calling-thread setting; restore it afterwards.
        previous_threads = numba.get_num_threads()
        numba.set_num_threads(self.threads)
        try:
            for pass_index, first in enumerate(range(0, steps, MAX_STEPS_PER_PASS)):
                pass_steps = min(MAX_STEPS_PER_PASS, steps - first)
                selected = slice(bounds[pass_index], bounds[pass_index + 1]) if bounds is not None else slice(None)
                parts.append(self._run_pass(first, pass_steps, y[selected], x[selected], step[selected],
                                            channel[selected]))
        finally:
            numba.set_num_threads(previous_threads)
        return _join_passes(parts, len(self.layers))

    def _run_pass(self, first, steps, y, x, step, channel) -> FastChunkOutput:
        num_layers = len(self.layers)
        input_spikes = np.zeros((num_layers, steps), np.int64)
        output_spikes = np.zeros((num_layers, steps), np.int64)
        synaptic_ops = np.zeros((num_layers, steps), np.int64)

        rows = self._rows
        _input_rows(y, x, step, channel, first, steps, rows[0].channel_bits, self._seen, rows[0].codes,
                    rows[0].counts, self.layers[0].fan_out, input_spikes[0], synaptic_ops[0])

        layer_pass = _layer_pass_serial if self.threads == 1 else _layer_pass_parallel
        for index, (layer, state) in enumerate(zip(self.layers, self.state)):
            source, target = rows[index], rows[index + 1]
            last = index + 1 == num_layers
            layer_pass(
                source.codes, source.counts, source.channel_bits, source.codes.shape[0], steps,
                self.steps_run, layer.footprint, layer.out_channels, layer.transposed,
                *state, layer.constants, layer.decay_tables, layer.alpha_refractory, self.closed_form_decay,
                layer.merge_gap,
                target.codes, target.counts, target.channel_bits, output_spikes[index],
                self._no_fan_out if last else self.layers[index + 1].fan_out,
                np.zeros(steps, np.int64) if last else synaptic_ops[index + 1],
                self._current, self._fired, self._fired_range, self._listed, self._runs,
            )
            if not last:
                input_spikes[index + 1] = output_spikes[index]
        self.steps_run += steps

        out_step, out_channel, out_y, out_x = _output_spikes(rows[-1].codes, rows[-1].counts, steps,
                                                             rows[-1].channel_bits, first)
        return FastChunkOutput(
            step=out_step,
            channel=out_channel,
            y=out_y,
            x=out_x,
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
    if len(parts) == 1:
        return parts[0]
    return FastChunkOutput(*(np.concatenate(column) for column in zip(*parts)))
