"""Side-by-side timing of the network's streaming paths on one event stream (``spikems bench stream``).

Paths, all on the same bins of the same stream in one process:

* ``reference``: ``StreamSegmenter(inference="reference")``, dense PyTorch convolutions;
* ``fast``: ``StreamSegmenter(inference="fast")``, the event-driven path of ``snn.fast``;
* ``snntorch``: the same architecture with snnTorch neurons (``peer``), when installed.

Per path: median and 99th percentile of the processing time per bin (a chunk's time
divided by its bins), the real-time factor (compute time over stream time), synaptic
operations per second of compute and the peak memory the path added. Synaptic
operations are those of the reference network on this stream (input spikes times
fan-out, summed over layers), the same numerator for every path, so the rate measures how
fast each path gets through the same spiking work.
"""

import dataclasses
import logging
import math
import time

import numba
import numpy as np
import torch

from spikems_ros.events.binning import SpikeBins, StreamingBinner
from spikems_ros.benchmarks.peer import PEER_NAME, SnnTorchSpikeMS, peer_available
from spikems_ros.benchmarks.scenes import scene_stream
from spikems_ros.benchmarks.system import PeakMemory, machine_summary, usable_cores
from spikems_ros.segmentation import StreamSegmenter
from spikems_ros.snn.weights import load_network

LOG = logging.getLogger(__name__)

# Events one generated stream may hold: 16 bytes each, so 1.6 GB.
MAX_STREAM_EVENTS = 100_000_000

# Sensor sizes the scene generator accepts, in pixels per side.
MIN_SCENE_SIZE = 16
MAX_SCENE_SIZE = 65535


@dataclasses.dataclass(frozen=True)
class StreamBenchConfig:
    """Settings of ``spikems bench stream``."""

    weights: str  # weights file
    width: int = 346  # sensor width in pixels
    height: int = 260  # sensor height in pixels
    rates_ev_s: tuple = (0.3e6, 1e6, 3e6)  # event rates to run, events per second
    seconds: float = 2.0  # event time per rate
    chunk_bins: int = 10  # bins per call of the chunked paths (the node's 10 ms window)
    device: str = "cpu"  # device of the reference and peer paths; the fast path runs on the CPU
    # CPU threads of every path (PyTorch's and numba's), the same for a fair comparison.
    threads: int = dataclasses.field(default_factory=usable_cores)
    seed: int = 1  # scene seed

    def __post_init__(self):
        for name, size in (("width", self.width), ("height", self.height)):
            # The generated scene's limits (spikems_ros.simulation.config).
            if not MIN_SCENE_SIZE <= size <= MAX_SCENE_SIZE:
                raise ValueError(f"{name} = {size!r} is invalid: expected {MIN_SCENE_SIZE} to {MAX_SCENE_SIZE} pixels")
        if not self.rates_ev_s or not all(math.isfinite(rate) and rate > 0 for rate in self.rates_ev_s):
            raise ValueError(f"rates {self.rates_ev_s!r} are invalid: expected one or more finite rates > 0 ev/s")
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError(f"seconds = {self.seconds!r} is invalid: expected a finite number > 0")
        largest_events = max(self.rates_ev_s) * self.seconds
        if largest_events > MAX_STREAM_EVENTS:
            raise ValueError(
                f"{max(self.rates_ev_s):g} ev/s for {self.seconds:g} s is {largest_events:.3g} events, more than "
                f"the {MAX_STREAM_EVENTS:.0e} a stream may hold in memory: use a lower rate or fewer seconds"
            )
        if self.chunk_bins < 1:
            raise ValueError(f"chunk_bins = {self.chunk_bins!r} is invalid: expected an integer >= 1")
        if not 1 <= self.threads <= numba.config.NUMBA_NUM_THREADS:
            # The fast path's limit, checked here so that a bad value fails before the slow paths run.
            raise ValueError(
                f"threads = {self.threads!r} is invalid: expected an integer from 1 to {numba.config.NUMBA_NUM_THREADS}"
            )
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device {self.device!r} is invalid: expected 'cpu' or 'cuda'")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was requested but PyTorch finds no CUDA device")


def split_bins(bins: SpikeBins, chunk_bins: int) -> list:
    """Split complete bins into consecutive SpikeBins of at most ``chunk_bins`` bins each."""
    chunks = []
    for first in range(0, bins.num_bins, chunk_bins):
        stop = min(first + chunk_bins, bins.num_bins)
        start_index, stop_index = np.searchsorted(bins.bin_index, [first, stop])
        chunks.append(
            dataclasses.replace(
                bins,
                bin_start_us=bins.bin_start_us[first:stop],
                bin_index=bins.bin_index[start_index:stop_index] - first,
                channel=bins.channel[start_index:stop_index],
                y=bins.y[start_index:stop_index],
                x=bins.x[start_index:stop_index],
                reset_at=None,
            )
        )
    return chunks


def join_bins(first: SpikeBins, second: SpikeBins) -> SpikeBins:
    """Return the bins of ``first`` followed by those of ``second`` (same stream, no reset)."""
    if second.num_bins == 0:
        return first
    return dataclasses.replace(
        first,
        bin_start_us=np.concatenate([first.bin_start_us, second.bin_start_us]),
        bin_index=np.concatenate([first.bin_index, second.bin_index + first.num_bins]),
        channel=np.concatenate([first.channel, second.channel]),
        y=np.concatenate([first.y, second.y]),
        x=np.concatenate([first.x, second.x]),
    )


def _summary(name: str, device: str, per_bin_ms: np.ndarray, stream_s: float, synaptic_ops: int,
             memory_mib) -> dict:
    compute_s = float(per_bin_ms.sum()) / 1e3
    return {
        "path": name,
        "device": device,
        "bins": int(per_bin_ms.size),
        "median_ms_per_bin": float(np.median(per_bin_ms)),
        "p99_ms_per_bin": float(np.percentile(per_bin_ms, 99)),
        "real_time_factor": compute_s / stream_s,
        "synaptic_ops_per_s": synaptic_ops / compute_s if compute_s > 0 else float("nan"),
        "peak_memory_mib": memory_mib,
    }


def _time_segmenter(segmenter: StreamSegmenter, chunks: list) -> tuple:
    # A first call compiles kernels and warms caches; it is not timed.
    segmenter.process(chunks[0])
    segmenter.reset()
    per_bin_ms, synaptic_ops, output_spikes = [], 0, 0
    for chunk in chunks:
        started = time.perf_counter()
        output = segmenter.process(chunk)
        elapsed_ms = (time.perf_counter() - started) * 1e3
        per_bin_ms += [elapsed_ms / chunk.num_bins] * chunk.num_bins
        synaptic_ops += int(output.operations.synaptic_ops.sum())
        output_spikes += output.spikes.num_spikes
    return np.array(per_bin_ms), synaptic_ops, output_spikes


def _dense_frame(bins: SpikeBins, index: int) -> torch.Tensor:
    channel, y, x = bins.spikes_of_bin(index)
    frame = torch.zeros(1, 2, bins.height, bins.width)
    frame[0, torch.from_numpy(channel.astype(np.int64)), torch.from_numpy(y.astype(np.int64)),
          torch.from_numpy(x.astype(np.int64))] = 1.0
    return frame  # (1, 2, H, W)


def _time_peer(peer: SnnTorchSpikeMS, bins: SpikeBins, device: str) -> np.ndarray:
    # Frames are built one bin at a time, outside the timed step, as a driver would deliver them.
    peer.step(_dense_frame(bins, 0).to(device))
    peer.reset()
    per_bin_ms = []
    for index in range(bins.num_bins):
        frame = _dense_frame(bins, index).to(device)
        started = time.perf_counter()
        peer.step(frame)
        if device == "cuda":
            torch.cuda.synchronize()
        per_bin_ms.append((time.perf_counter() - started) * 1e3)
    return np.array(per_bin_ms)


def run_rate(config: StreamBenchConfig, network, rate_ev_s: float) -> dict:
    """Time every path on one stream at ``rate_ev_s``; return the rows and the stream's figures."""
    events = scene_stream(config.width, config.height, rate_ev_s, config.seconds, seed=config.seed)
    binner = StreamingBinner(config.width, config.height, bin_width_us=round(network.bin_ms * 1000))
    bins = join_bins(binner.push(events), binner.advance_to(round(config.seconds * 1e6)))
    if bins.num_bins == 0:
        raise ValueError(f"{config.seconds} s at {rate_ev_s:g} ev/s gave no complete bin; use more --seconds")
    stream_s = bins.num_bins * network.bin_ms / 1e3
    chunks = split_bins(bins, config.chunk_bins)

    rows = []
    with PeakMemory() as memory:
        reference = StreamSegmenter(network, config.width, config.height, chunk_bins=config.chunk_bins,
                                    device=config.device, inference="reference")
        reference_ms, synaptic_ops, reference_spikes = _time_segmenter(reference, chunks)
        del reference
    rows.append(_summary("reference", config.device, reference_ms, stream_s, synaptic_ops, memory.added_mib))

    version = peer_available()
    if version is None:
        LOG.warning("snntorch is not installed: the %s row is skipped (pip install -r requirements/bench.txt)",
                    PEER_NAME)
    else:
        with PeakMemory() as memory:
            peer = SnnTorchSpikeMS(network, config.height, config.width, device=config.device)
            peer_ms = _time_peer(peer, bins, config.device)
            del peer
        rows.append(_summary(f"{PEER_NAME} {version}", config.device, peer_ms, stream_s, synaptic_ops,
                             memory.added_mib))

    with PeakMemory() as memory:
        fast = StreamSegmenter(network, config.width, config.height, chunk_bins=config.chunk_bins,
                               inference="fast", threads=config.threads)
        fast_ms, fast_ops, fast_spikes = _time_segmenter(fast, chunks)
        del fast
    rows.append(_summary("fast", "cpu", fast_ms, stream_s, synaptic_ops, memory.added_mib))

    for row in rows:
        row["speedup_vs_reference"] = rows[0]["median_ms_per_bin"] / row["median_ms_per_bin"]
    return {
        "rate_ev_s": rate_ev_s,
        "events": int(events.shape[0]),
        "bins": bins.num_bins,
        "input_spikes_per_bin": bins.num_spikes / bins.num_bins,
        "synaptic_ops_per_bin": synaptic_ops / bins.num_bins,
        "output_spikes": {"reference": reference_spikes, "fast": fast_spikes},
        "fast_synaptic_ops": fast_ops,
        "rows": rows,
    }


def run_stream_bench(config: StreamBenchConfig) -> dict:
    """Run every rate and return the report (machine, settings, one entry per rate)."""
    network = load_network(config.weights)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    report = {
        "machine": machine_summary(),
        "threads": config.threads,
        "config": dataclasses.asdict(config),
        "rates": [],
    }
    try:
        for rate in config.rates_ev_s:
            LOG.info("rate %.3g ev/s: generating the stream and timing the paths", rate)
            report["rates"].append(run_rate(config, network, rate))
    finally:
        torch.set_num_threads(previous_threads)
    return report


def format_stream_report(report: dict) -> str:
    """Format the report as one aligned table per rate, with ratios against the reference path."""
    machine = report["machine"]
    config = report["config"]
    lines = [
        f"machine: {machine['cpu_model']}, {machine['logical_cores']} logical cores, "
        f"load {machine['load_average_1_5_15_min']}, {machine['date_utc']} UTC",
        f"stream: {config['width']}x{config['height']}, {config['seconds']} s per rate, "
        f"{config['chunk_bins']} bins per call, {report['threads']} CPU thread(s) per path",
    ]
    for entry in report["rates"]:
        lines.append("")
        lines.append(
            f"rate {entry['rate_ev_s'] / 1e6:.2f} Mev/s: {entry['bins']} bins, "
            f"{entry['input_spikes_per_bin']:.0f} input spikes/bin, "
            f"{entry['synaptic_ops_per_bin'] / 1e6:.2f} M synaptic ops/bin"
        )
        lines.append(f"  {'path':<16} {'device':<6} {'median ms/bin':>13} {'p99 ms/bin':>11} {'RTF':>7} "
                     f"{'Gsynop/s':>9} {'peak MiB':>9} {'speed-up':>9}")
        for row in entry["rows"]:
            memory = "n/a" if row["peak_memory_mib"] is None else f"{row['peak_memory_mib']:.0f}"
            lines.append(
                f"  {row['path']:<16} {row['device']:<6} {row['median_ms_per_bin']:>13.2f} "
                f"{row['p99_ms_per_bin']:>11.2f} {row['real_time_factor']:>7.2f} "
                f"{row['synaptic_ops_per_s'] / 1e9:>9.3f} {memory:>9} {row['speedup_vs_reference']:>8.2f}x"
            )
    return "\n".join(lines)
