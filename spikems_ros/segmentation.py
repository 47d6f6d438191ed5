"""Streaming segmentation: spike bins in, network output spikes and foreground events out.

The same classes serve the ROS node, ``spikems segment`` and the evaluation, so
every consumer classifies events by one rule:

    The events of window [s, s + w) (w bins, windows aligned to multiples of w
    bins in absolute time) are foreground when their pixel has at least one output
    spike, of either polarity, in the bins [s + d, s + w + d), where d is the
    network's output delay in bins (every spiking layer delays by at least one step).

This is the event-pixel rule of the SpikeMS evaluation, applied to a stream.

The network runs by default on the event-driven CPU path of ``snn.fast``, whose
work follows the spikes; ``inference="reference"`` selects the dense PyTorch
driver (``SpikeMSNetwork.run_window_all_layers``), which also serves CUDA and the
networks the fast path does not run (axonal delays, weights other than float32).
"""

import logging
from dataclasses import dataclass

import numpy as np
import torch

from spikems_ros.events.binning import SpikeBins
from spikems_ros.events.dtype import EVENT_DTYPE
from spikems_ros.snn.energy import ACCUMULATE_ENERGY_PJ, MULTIPLY_ACCUMULATE_ENERGY_PJ, count_ann_macs
from spikems_ros.snn.network import SpikeMSNetwork, layer_output_sizes

LOG = logging.getLogger(__name__)

# Ways to run the network: "fast" (event-driven, CPU, see snn.fast) or "reference"
# (dense PyTorch convolutions on any device).
INFERENCE_PATHS = ("fast", "reference")


@dataclass(frozen=True)
class BinOperations:
    """Per-bin, per-layer activity of the network: int64 arrays (num_bins, num_layers)."""

    input_spikes: np.ndarray
    output_spikes: np.ndarray
    synaptic_ops: np.ndarray


@dataclass(frozen=True)
class NetworkOutput:
    """Output spikes of a run of bins and the work the network did for them."""

    spikes: SpikeBins  # output spikes, same bins as the input
    operations: BinOperations


class StreamSegmenter:
    """Advance the network over spike bins, carrying its recurrent state across calls.

    Bins are run ``chunk_bins`` at a time (time-batched: each layer handles all bins
    of a chunk before the next layer starts). The spikes do not depend on the
    chunking. ``inference`` picks the path (``INFERENCE_PATHS``); "fast" falls back
    to "reference", with a log message, on CUDA or for a network it cannot run.
    The paths may differ in rare spikes (see ``snn.fast``). With
    ``closed_form_decay=False`` the fast path gives the reference path's spikes bit
    for bit whenever every convolution sum is exact in float32, at some cost in
    speed. ``threads`` is the fast path's thread count, and the reference path uses
    PyTorch's setting.
    """

    def __init__(self, network: SpikeMSNetwork, width: int, height: int, *, chunk_bins: int = 16,
                 device: str = "cpu", inference: str = "fast", threads: int = 1, closed_form_decay: bool = True):
        if chunk_bins < 1:
            raise ValueError(f"chunk_bins = {chunk_bins!r} is invalid: expected an integer >= 1")
        if inference not in INFERENCE_PATHS:
            raise ValueError(f"inference = {inference!r} is invalid: expected one of {INFERENCE_PATHS}")
        for name, size in (("width", width), ("height", height)):
            if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
                raise ValueError(f"{name} = {size!r} is invalid: expected a whole number of pixels >= 1")
        self.network = network.to(device).eval()
        self.width = int(width)
        self.height = int(height)
        self.chunk_bins = int(chunk_bins)
        self.device = torch.device(device)
        self.layer_names = tuple(network.layer_names)
        self._dtype = next(network.parameters()).dtype
        self.inference = self._choose_inference(inference)
        self._fast = None
        if self.inference == "fast":
            from spikems_ros.snn.fast import FastSpikeMSNetwork

            self._fast = FastSpikeMSNetwork(self.network, self.height, self.width, threads=threads,
                                            closed_form_decay=closed_form_decay)
        self.reset()

    def _choose_inference(self, requested: str) -> str:
        if requested == "reference":
            return requested
        if self.device.type != "cpu":
            LOG.info("inference: the fast path runs on the CPU only; using the reference path on %s", self.device)
            return "reference"
        from spikems_ros.snn.fast import unsupported_reason

        reason = unsupported_reason(self.network)
        if reason is not None:
            LOG.info("inference: using the reference path because %s", reason)
            return "reference"
        return requested

    @property
    def ann_macs_per_frame(self) -> np.ndarray:
        """Multiply-accumulates per layer of one dense ANN pass at this resolution, (num_layers,)."""
        sizes = ((self.height, self.width),) + layer_output_sizes(self.height, self.width)
        return np.array(
            [
                count_ann_macs(geometry, sizes[index], sizes[index + 1])
                for index, geometry in enumerate(self.network.geometries)
            ],
            dtype=np.int64,
        )

    def reset(self) -> None:
        """Put the network at rest (after a time jump or a resolution change)."""
        if self._fast is not None:
            self._fast.reset()
            return
        self._state = self.network.initial_state(1, self.height, self.width, self.device)

    @torch.no_grad()
    def process(self, bins: SpikeBins) -> NetworkOutput:
        """Run the network over ``bins`` and return the output spikes with per-bin operation counts."""
        if (bins.width, bins.height) != (self.width, self.height):
            raise ValueError(
                f"bins are {bins.width}x{bins.height} but the segmenter was built for {self.width}x{self.height}"
            )

        output_parts, operation_parts = [], []
        for chunk_start in range(0, bins.num_bins, self.chunk_bins):
            if bins.reset_at is not None and chunk_start <= bins.reset_at < chunk_start + self.chunk_bins:
                # Split the chunk at the reset so the new timeline starts from rest.
                before = range(chunk_start, bins.reset_at)
                after = range(bins.reset_at, min(chunk_start + self.chunk_bins, bins.num_bins))
                if len(before):
                    self._run_chunk(bins, before, output_parts, operation_parts)
                self.reset()
                self._run_chunk(bins, after, output_parts, operation_parts)
                continue
            chunk = range(chunk_start, min(chunk_start + self.chunk_bins, bins.num_bins))
            self._run_chunk(bins, chunk, output_parts, operation_parts)

        return _join_outputs(bins, output_parts, operation_parts, len(self.layer_names))

    def _run_chunk(self, bins: SpikeBins, chunk: range, output_parts: list, operation_parts: list) -> None:
        first, stop = chunk.start, chunk.stop
        if stop <= first:
            return
        if self._fast is not None:
            self._run_chunk_fast(bins, first, stop, output_parts, operation_parts)
            return
        frames = torch.zeros((1, 2, self.height, self.width, stop - first), dtype=self._dtype)
        start_index, stop_index = np.searchsorted(bins.bin_index, [first, stop])
        frames[
            0,
            torch.from_numpy(bins.channel[start_index:stop_index].astype(np.int64)),
            torch.from_numpy(bins.y[start_index:stop_index].astype(np.int64)),
            torch.from_numpy(bins.x[start_index:stop_index].astype(np.int64)),
            torch.from_numpy(bins.bin_index[start_index:stop_index] - first),
        ] = 1.0
        frames = frames.to(self.device)  # (1, 2, H, W, T)

        layer_spikes, self._state = self.network.run_window_all_layers(frames, self._state)
        output = layer_spikes[-1][0]  # (2, H, W, T)
        channel, y, x, step = torch.nonzero(output, as_tuple=True)
        order = torch.argsort(step, stable=True)
        output_parts.append(
            (
                step[order].cpu().numpy().astype(np.int64) + first,
                channel[order].cpu().numpy().astype(np.uint8),
                y[order].cpu().numpy().astype(np.uint16),
                x[order].cpu().numpy().astype(np.uint16),
            )
        )

        # Per bin and layer: spikes in, spikes out, and synaptic operations (each
        # input spike times its fan-out, from the state's fan-out maps).
        inputs_per_pixel = [spikes[0].sum(dim=0) for spikes in layer_spikes[:-1]]  # (h, w, T) each
        input_counts = torch.stack([per_pixel.sum(dim=(0, 1)) for per_pixel in inputs_per_pixel], dim=1)
        output_counts = torch.stack([spikes[0].sum(dim=(0, 1, 2)) for spikes in layer_spikes[1:]], dim=1)
        synaptic_ops = torch.stack(
            [
                (per_pixel.double() * fan_out[..., None].double()).sum(dim=(0, 1))
                for per_pixel, fan_out in zip(inputs_per_pixel, self._state.fan_out_maps)
            ],
            dim=1,
        )
        operation_parts.append(
            (
                input_counts.round().to(torch.int64).cpu().numpy(),  # (T, num_layers)
                output_counts.round().to(torch.int64).cpu().numpy(),
                synaptic_ops.round().to(torch.int64).cpu().numpy(),
            )
        )


    def _run_chunk_fast(self, bins: SpikeBins, first: int, stop: int, output_parts: list,
                        operation_parts: list) -> None:
        start_index, stop_index = np.searchsorted(bins.bin_index, [first, stop])
        selected = slice(start_index, stop_index)
        output = self._fast.run(
            stop - first, bins.channel[selected], bins.y[selected], bins.x[selected],
            bins.bin_index[selected] - first,
        )
        output_parts.append((output.step + first, output.channel, output.y, output.x))
        operation_parts.append((output.input_spikes, output.output_spikes, output.synaptic_ops))


def _join_outputs(bins: SpikeBins, output_parts: list, operation_parts: list, num_layers: int) -> NetworkOutput:
    if output_parts:
        step, channel, y, x = (np.concatenate(column) for column in zip(*output_parts))
        input_spikes, output_spikes, synaptic_ops = (np.concatenate(column) for column in zip(*operation_parts))
    else:
        step = np.zeros(0, np.int64)
        channel = np.zeros(0, np.uint8)
        y = np.zeros(0, np.uint16)
        x = np.zeros(0, np.uint16)
        input_spikes = output_spikes = synaptic_ops = np.zeros((0, num_layers), np.int64)
    spikes = SpikeBins(
        bin_start_us=bins.bin_start_us,
        bin_index=step,
        channel=channel,
        y=y,
        x=x,
        width=bins.width,
        height=bins.height,
        bin_width_us=bins.bin_width_us,
        reset_at=bins.reset_at,
    )
    return NetworkOutput(spikes, BinOperations(input_spikes, output_spikes, synaptic_ops))


@dataclass(frozen=True)
class SegmentedWindow:
    """The classified events of one window and what the network did for it."""

    start_us: int  # window start (inclusive), event time
    end_us: int  # window end (exclusive)
    events: np.ndarray  # (N,) EVENT_DTYPE, every input event of the window that was binned
    foreground: np.ndarray  # (N,) bool
    predicted_pixels: np.ndarray  # (H, W) bool, pixels with an output spike in the window's output bins
    output_bins: int  # output bins the window's prediction was read from
    synaptic_ops: np.ndarray  # (num_layers,) int64 over the output bins
    input_spikes: np.ndarray  # (num_layers,) int64
    output_spikes: np.ndarray  # (num_layers,) int64


class WindowClassifier:
    """Collect events and output spikes; release windows whose prediction is complete.

    A window [s, s + w) is complete once the output bins up to s + w + d are known.
    Events and outputs are kept only until their window is released, so memory
    stays bounded by the window length plus the output delay.
    """

    def __init__(self, width: int, height: int, *, bin_us: int, window_bins: int, output_delay_bins: int,
                 num_layers: int):
        if window_bins < 1 or output_delay_bins < 0 or bin_us < 1:
            raise ValueError(
                f"invalid window: bin_us={bin_us}, window_bins={window_bins}, output_delay_bins={output_delay_bins}"
            )
        self.width = int(width)
        self.height = int(height)
        self.bin_us = int(bin_us)
        self.window_us = int(bin_us) * int(window_bins)
        self.delay_us = int(bin_us) * int(output_delay_bins)
        self.num_layers = int(num_layers)
        self.reset()

    def reset(self) -> None:
        """Drop everything held (after a time jump)."""
        self._events = np.zeros(0, dtype=EVENT_DTYPE)
        self._output_bin_start_us = np.zeros(0, np.int64)  # (num_output_spikes,)
        self._output_y = np.zeros(0, np.uint16)
        self._output_x = np.zeros(0, np.uint16)
        self._operation_bin_start_us = np.zeros(0, np.int64)  # (num_bins,)
        self._operations = np.zeros((0, 3, self.num_layers), np.int64)
        self._processed_until_us = None  # end of the last output bin
        self._next_window_start_us = None

    def add_events(self, events: np.ndarray) -> None:
        """Add input events (the ones the binner accepted, any chunking, sorted by time).

        Events may start before the latest event held, by up to the binner's backward
        tolerance (reordering between packets), and the held events stay sorted by time.
        """
        if events.shape[0] == 0:
            return
        if self._next_window_start_us is None:
            self._next_window_start_us = int(events["t"][0]) // self.window_us * self.window_us
        late = self._events.shape[0] and events["t"][0] < self._events["t"][-1]
        self._events = np.concatenate([self._events, events])
        if late:
            self._events = self._events[np.argsort(self._events["t"], kind="stable")]

    def add_output(self, output: NetworkOutput) -> None:
        """Add the network output for consecutive bins."""
        spikes = output.spikes
        if spikes.num_bins == 0:
            return
        self._output_bin_start_us = np.concatenate([self._output_bin_start_us, spikes.bin_start_us[spikes.bin_index]])
        self._output_y = np.concatenate([self._output_y, spikes.y])
        self._output_x = np.concatenate([self._output_x, spikes.x])
        operations = np.stack(
            [output.operations.input_spikes, output.operations.output_spikes, output.operations.synaptic_ops], axis=1
        )  # (num_bins, 3, num_layers)
        self._operation_bin_start_us = np.concatenate([self._operation_bin_start_us, spikes.bin_start_us])
        self._operations = np.concatenate([self._operations, operations])
        self._processed_until_us = int(spikes.bin_start_us[-1]) + spikes.bin_width_us
        if self._next_window_start_us is None:
            first_bin_us = int(spikes.bin_start_us[0])
            self._next_window_start_us = first_bin_us // self.window_us * self.window_us

    def pop_windows(self, flush: bool = False) -> list:
        """Return the windows whose output bins are all processed (all remaining ones with ``flush``)."""
        windows = []
        if self._next_window_start_us is None:
            return windows
        while True:
            start_us = self._next_window_start_us
            end_us = start_us + self.window_us
            complete = self._processed_until_us is not None and self._processed_until_us >= end_us + self.delay_us
            has_more = self._events.shape[0] > 0 and int(self._events["t"][-1]) >= start_us
            if not complete and not (flush and has_more):
                break
            windows.append(self._release(start_us, end_us))
            self._next_window_start_us = end_us
            if flush and not has_more and not complete:
                break
        return windows

    def _release(self, start_us: int, end_us: int) -> SegmentedWindow:
        output_start_us, output_end_us = start_us + self.delay_us, end_us + self.delay_us

        split = np.searchsorted(self._events["t"], end_us)
        events = self._events[:split]
        events = events[events["t"] >= start_us]
        self._events = self._events[split:]

        in_window = (self._output_bin_start_us >= output_start_us) & (self._output_bin_start_us < output_end_us)
        predicted = np.zeros((self.height, self.width), dtype=bool)
        predicted[self._output_y[in_window], self._output_x[in_window]] = True
        keep = self._output_bin_start_us >= output_end_us
        self._output_bin_start_us = self._output_bin_start_us[keep]
        self._output_y = self._output_y[keep]
        self._output_x = self._output_x[keep]

        bins_in_window = (self._operation_bin_start_us >= output_start_us) & (
            self._operation_bin_start_us < output_end_us
        )
        totals = self._operations[bins_in_window].sum(axis=0)  # (3, num_layers)
        keep_bins = self._operation_bin_start_us >= output_end_us
        self._operation_bin_start_us = self._operation_bin_start_us[keep_bins]
        self._operations = self._operations[keep_bins]

        foreground = predicted[events["y"], events["x"]] if events.shape[0] else np.zeros(0, bool)
        return SegmentedWindow(
            start_us=start_us,
            end_us=end_us,
            events=events,
            foreground=foreground,
            predicted_pixels=predicted,
            output_bins=int(np.count_nonzero(bins_in_window)),
            synaptic_ops=totals[2],
            input_spikes=totals[0],
            output_spikes=totals[1],
        )


def energy_summary(synaptic_ops: int, ann_macs: int) -> dict:
    """Energies in picojoules at 0.9 pJ per accumulate and 4.6 pJ per MAC, and the ANN/SNN ratio."""
    snn_energy_pj = synaptic_ops * ACCUMULATE_ENERGY_PJ
    ann_energy_pj = ann_macs * MULTIPLY_ACCUMULATE_ENERGY_PJ
    return {
        "synaptic_ops": int(synaptic_ops),
        "ann_macs": int(ann_macs),
        "snn_energy_pj": snn_energy_pj,
        "ann_energy_pj": ann_energy_pj,
        "energy_ratio": ann_energy_pj / snn_energy_pj if snn_energy_pj > 0 else 0.0,
    }
