"""Training samples cut from labelled event sequences.

A sample covers ``warmup_bins + window_bins + output_delay_bins`` bins of input
spikes (2, height, width, time). The window [s, s + window_bins) is labelled:
a pixel is foreground when at least one foreground event falls on it in the
window. The network's prediction for it is read ``output_delay_bins`` later.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from spikems_ros.training.config import DataSplitConfig, WindowConfig

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelledStream:
    """Events of one sequence with a foreground flag per event."""

    events: np.ndarray  # (N,) EVENT_DTYPE sorted by t
    foreground: np.ndarray  # (N,) bool, True for events of independently moving objects
    width: int
    height: int
    name: str


@dataclass(frozen=True)
class SampleSpec:
    """Position of one sample: stream index, start of its first window bin, crop corner and crop size."""

    stream: int
    window_start_us: int
    top: int
    left: int
    height: int
    width: int


def load_split(split: DataSplitConfig, window: WindowConfig) -> list:
    """Load every sequence of a split, generating and writing them first when the folder is absent."""
    from spikems_ros.simulation import (
        GENERATOR_VERSION,
        SceneConfig,
        load_synthetic_sequence,
        simulate_sequence,
        write_sequence,
    )

    folder = Path(split.dir)
    paths = sorted(folder.glob("seq_*.npz")) if folder.is_dir() else []
    if not paths:
        LOG.info(
            "generating %d synthetic sequences of %.2f s at %dx%d (seed %d) into %s",
            split.sequences, split.seconds, split.width, split.height, split.seed, folder,
        )
        folder.mkdir(parents=True, exist_ok=True)
        scene_config = SceneConfig(
            width=split.width, height=split.height, duration_s=split.seconds, seed=split.seed
        )
        for index in range(split.sequences):
            sequence = simulate_sequence(scene_config, index)
            write_sequence(folder / f"seq_{index:04d}.npz", sequence)
        paths = sorted(folder.glob("seq_*.npz"))

    streams = []
    for path in paths:
        sequence = load_synthetic_sequence(path)
        # Data from another generator version has other statistics; training on it
        # silently would ship weights that do not match the documented data.
        version = sequence.meta.get("generator_version")
        if version != GENERATOR_VERSION:
            raise ValueError(
                f"{path} was written by generator version {version!r}, but this generator is version "
                f"{GENERATOR_VERSION}; delete {folder} to regenerate it, or point the split's dir elsewhere"
            )
        # The same holds for a folder generated with another seed or sensor size.
        for key in ("seed", "width", "height"):
            stored, configured = sequence.meta.get(key), getattr(split, key)
            if stored != configured:
                raise ValueError(
                    f"{path} was generated with {key} = {stored!r}, but the configuration asks for "
                    f"{key} = {configured!r}; delete {folder} to regenerate it, or point the split's dir elsewhere"
                )
        streams.append(
            LabelledStream(
                events=sequence.events,
                foreground=sequence.labels > 0,
                width=sequence.width,
                height=sequence.height,
                name=path.name,
            )
        )
    total_events = sum(stream.events.shape[0] for stream in streams)
    LOG.info("loaded %d sequences, %d events from %s", len(streams), total_events, folder)
    return streams


def total_bins(window: WindowConfig) -> int:
    """Number of input bins of one sample."""
    return window.warmup_bins + window.window_bins + window.output_delay_bins


def draw_sample_specs(streams: list, window: WindowConfig, count: int, seed: int, crop: bool) -> list:
    """Draw ``count`` sample positions, reproducibly for a given seed.

    With ``crop`` the sample is a crop of window.crop_height x crop_width, centred on
    a random foreground event with probability ``foreground_crop_probability``;
    without it the sample is the full frame.
    """
    rng = np.random.default_rng(seed)
    span_us = total_bins(window) * window.bin_us
    lead_us = window.warmup_bins * window.bin_us
    specs = []
    for _ in range(count):
        stream_index = int(rng.integers(len(streams)))
        stream = streams[stream_index]
        first_us = int(stream.events["t"][0]) if stream.events.shape[0] else 0
        last_us = int(stream.events["t"][-1]) if stream.events.shape[0] else 0
        latest_start_us = max(first_us, last_us - span_us)
        sample_start_us = int(rng.integers(first_us, latest_start_us + 1))
        window_start_us = (sample_start_us // window.bin_us) * window.bin_us + lead_us

        if not crop:
            specs.append(SampleSpec(stream_index, window_start_us, 0, 0, stream.height, stream.width))
            continue

        crop_height = min(window.crop_height, stream.height)
        crop_width = min(window.crop_width, stream.width)
        center_y = int(rng.integers(stream.height))
        center_x = int(rng.integers(stream.width))
        if rng.random() < window.foreground_crop_probability:
            start, stop = np.searchsorted(
                stream.events["t"], [window_start_us, window_start_us + window.window_bins * window.bin_us]
            )
            foreground_indices = start + np.flatnonzero(stream.foreground[start:stop])
            if foreground_indices.shape[0]:
                chosen = stream.events[int(rng.choice(foreground_indices))]
                center_y, center_x = int(chosen["y"]), int(chosen["x"])
        top = int(np.clip(center_y - crop_height // 2, 0, stream.height - crop_height))
        left = int(np.clip(center_x - crop_width // 2, 0, stream.width - crop_width))
        specs.append(SampleSpec(stream_index, window_start_us, top, left, crop_height, crop_width))
    return specs


def _spike_grid(events: np.ndarray, first_bin_us: int, bin_us: int, bins: int, spec: SampleSpec) -> np.ndarray:
    """Bin events (already restricted to the time span) into a (2, height, width, bins) 0/1 grid."""
    grid = np.zeros((2, spec.height, spec.width, bins), dtype=np.float32)
    x = events["x"].astype(np.int64) - spec.left
    y = events["y"].astype(np.int64) - spec.top
    inside = (x >= 0) & (x < spec.width) & (y >= 0) & (y < spec.height)
    bin_index = (events["t"][inside] - first_bin_us) // bin_us
    grid[events["p"][inside].astype(np.int64) & 1, y[inside], x[inside], bin_index] = 1.0
    return grid


def build_sample(streams: list, spec: SampleSpec, window: WindowConfig) -> dict:
    """Cut one sample; returns numpy arrays.

    ``input`` (2, H, W, T) input spikes; ``foreground_input`` (2, H, W, T) the input
    spikes of foreground events; ``label`` (H, W) 1.0 where a foreground event fell
    in the window; ``event_pixels`` (H, W) 1.0 where any event fell in the window.
    """
    stream = streams[spec.stream]
    bins = total_bins(window)
    first_bin_us = spec.window_start_us - window.warmup_bins * window.bin_us
    start, stop = np.searchsorted(stream.events["t"], [first_bin_us, first_bin_us + bins * window.bin_us])
    events = stream.events[start:stop]
    foreground = stream.foreground[start:stop]

    input_spikes = _spike_grid(events, first_bin_us, window.bin_us, bins, spec)
    foreground_spikes = _spike_grid(events[foreground], first_bin_us, window.bin_us, bins, spec)

    window_slice = slice(window.warmup_bins, window.warmup_bins + window.window_bins)
    label = foreground_spikes[..., window_slice].max(axis=(0, 3))  # (H, W)
    event_pixels = input_spikes[..., window_slice].max(axis=(0, 3))  # (H, W)
    return {
        "input": input_spikes,
        "foreground_input": foreground_spikes,
        "label": label,
        "event_pixels": event_pixels,
    }


class WindowDataset(torch.utils.data.Dataset):
    """Samples at fixed positions; the positions are redrawn per epoch by the trainer."""

    def __init__(self, streams: list, specs: list, window: WindowConfig):
        self.streams = streams
        self.specs = specs
        self.window = window

    def __len__(self) -> int:
        return len(self.specs)

    def __getitem__(self, index: int) -> dict:
        sample = build_sample(self.streams, self.specs[index], self.window)
        return {name: torch.from_numpy(array) for name, array in sample.items()}
