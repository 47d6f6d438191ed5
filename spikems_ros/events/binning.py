"""Streaming conversion of events into binary spike frames, one frame per time bin.

Bins are aligned to multiples of the bin width in absolute event time, so the
frames do not depend on how the stream was split into packets. Several events
of the same pixel and polarity inside one bin collapse into one spike. Channel
0 contains decreases (p = 0), channel 1 increases (p = 1).
"""

from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from spikems_ros.events.dtype import EVENT_DTYPE


@dataclass(frozen=True)
class SpikeBins:
    """Complete bins in sparse form: one entry per spike, unique per bin, channel and pixel.

    ``reset_at`` is None when the bins continue the previous timeline. After a
    time jump it is the index of the first bin of the new timeline (bins before
    it end the old one), so a consumer resets its recurrent state there.
    """

    bin_start_us: np.ndarray  # (num_bins,) int64, start time of each bin
    bin_index: np.ndarray  # (num_spikes,) int64, index into bin_start_us
    channel: np.ndarray  # (num_spikes,) uint8, 0 = decrease, 1 = increase
    y: np.ndarray  # (num_spikes,) uint16
    x: np.ndarray  # (num_spikes,) uint16
    width: int
    height: int
    bin_width_us: int
    reset_at: Optional[int] = None

    @property
    def num_bins(self) -> int:
        return int(self.bin_start_us.shape[0])

    @property
    def num_spikes(self) -> int:
        return int(self.bin_index.shape[0])

    def dense(self, dtype=np.uint8) -> np.ndarray:
        """Return the spikes as frames of shape (num_bins, 2, height, width)."""
        frames = np.zeros((self.num_bins, 2, self.height, self.width), dtype=dtype)
        frames[self.bin_index, self.channel, self.y, self.x] = 1
        return frames

    def spikes_of_bin(self, index: int) -> tuple:
        """Return (channel, y, x) arrays of the spikes in bin ``index``."""
        start, stop = np.searchsorted(self.bin_index, [index, index + 1])
        return self.channel[start:stop], self.y[start:stop], self.x[start:stop]


@dataclass
class BinnerCounters:
    """Running totals, for diagnostics and for accounting of every input event."""

    events_in: int = 0  # events passed to push()
    events_binned: int = 0  # events that fell into an emitted or open bin
    events_out_of_range: int = 0  # dropped: x >= width or y >= height
    events_late: int = 0  # dropped: older than the open bin by less than the reset tolerance
    bins_emitted: int = 0
    spikes_emitted: int = 0
    backward_jumps: int = 0  # timeline resets because time went backwards
    forward_jumps: int = 0  # timeline resets because of a gap longer than max_gap_us


def _empty_bins(width: int, height: int, bin_width_us: int) -> SpikeBins:
    return SpikeBins(
        bin_start_us=np.zeros(0, np.int64),
        bin_index=np.zeros(0, np.int64),
        channel=np.zeros(0, np.uint8),
        y=np.zeros(0, np.uint16),
        x=np.zeros(0, np.uint16),
        width=width,
        height=height,
        bin_width_us=bin_width_us,
    )


def _concatenate_bins(parts: list, width: int, height: int, bin_width_us: int) -> SpikeBins:
    """Join consecutive SpikeBins, renumbering bin indices and keeping the first reset."""
    parts = [part for part in parts if part.num_bins > 0 or part.reset_at is not None]
    if not parts:
        return _empty_bins(width, height, bin_width_us)

    reset_at = None
    bin_offset = 0
    bin_indices = []
    for part in parts:
        if part.reset_at is not None and reset_at is None:
            reset_at = bin_offset + part.reset_at
        bin_indices.append(part.bin_index + bin_offset)
        bin_offset += part.num_bins

    return SpikeBins(
        bin_start_us=np.concatenate([part.bin_start_us for part in parts]),
        bin_index=np.concatenate(bin_indices),
        channel=np.concatenate([part.channel for part in parts]),
        y=np.concatenate([part.y for part in parts]),
        x=np.concatenate([part.x for part in parts]),
        width=width,
        height=height,
        bin_width_us=bin_width_us,
        reset_at=reset_at,
    )


@dataclass
class StreamingBinner:
    """Bin a stream of decoded event chunks into complete spike frames.

    A bin is complete once an event at or after its end arrives, or when
    ``advance_to`` or ``flush`` is called. An event older than the open bin by
    more than ``backward_tolerance_us`` means the stream restarted (a bag loop,
    a driver restart): the open bin is emitted, the timeline restarts at the new
    time and the result's ``reset_at`` marks where. A gap longer than
    ``max_gap_us`` also restarts the timeline instead of emitting thousands of
    empty bins.
    """

    width: int
    height: int
    bin_width_us: int = 1000
    backward_tolerance_us: int = 1000
    max_gap_us: int = 10_000_000
    counters: BinnerCounters = field(default_factory=BinnerCounters)

    def __post_init__(self):
        for name in ("width", "height", "bin_width_us"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.backward_tolerance_us < 0:
            raise ValueError(
                f"backward_tolerance_us must be >= 0, got {self.backward_tolerance_us!r}"
            )
        if self.max_gap_us < self.bin_width_us:
            raise ValueError(
                f"max_gap_us ({self.max_gap_us}) must be at least bin_width_us ({self.bin_width_us})"
            )
        self._open_bin_start_us: Optional[int] = None
        self._pending = np.zeros(0, dtype=EVENT_DTYPE)

    @property
    def open_bin_start_us(self) -> Optional[int]:
        """Start time of the bin still collecting events, or None before the first event."""
        return self._open_bin_start_us

    def reset(self) -> None:
        """Forget the open bin and the timeline; counters are kept."""
        self._open_bin_start_us = None
        self._pending = np.zeros(0, dtype=EVENT_DTYPE)

    def push(self, events: np.ndarray) -> SpikeBins:
        """Add a chunk of events and return the bins it completed."""
        if events.dtype != EVENT_DTYPE:
            raise TypeError(f"events must have dtype {EVENT_DTYPE}, got {events.dtype}")
        self.counters.events_in += int(events.shape[0])

        in_range = (events["x"] < self.width) & (events["y"] < self.height)
        self.counters.events_out_of_range += int(np.count_nonzero(~in_range))
        events = events[in_range]
        if events.shape[0] == 0:
            return _empty_bins(self.width, self.height, self.bin_width_us)

        if np.any(np.diff(events["t"]) < 0):
            events = events[np.argsort(events["t"], kind="stable")]

        # Split the chunk where time jumps forward by more than max_gap_us, so each
        # segment is binned on its own timeline.
        gap_positions = np.flatnonzero(np.diff(events["t"]) > self.max_gap_us) + 1
        parts = []
        for segment in np.split(events, gap_positions):
            parts.append(self._push_segment(segment))
        return _concatenate_bins(parts, self.width, self.height, self.bin_width_us)

    def advance_to(self, time_us: int) -> SpikeBins:
        """Complete every bin that ends at or before ``time_us`` (no events needed)."""
        if self._open_bin_start_us is None or time_us < self._open_bin_start_us + self.bin_width_us:
            return _empty_bins(self.width, self.height, self.bin_width_us)
        if time_us - self._open_bin_start_us > self.max_gap_us:
            # A long silence: end the open bin and let the next event start a timeline.
            bins = self._emit(self._pending, self._open_bin_start_us, 1)
            self.counters.forward_jumps += 1
            self.reset()
            return bins

        num_complete = (time_us - self._open_bin_start_us) // self.bin_width_us
        bins = self._emit(self._pending, self._open_bin_start_us, num_complete)
        self._open_bin_start_us += num_complete * self.bin_width_us
        self._pending = np.zeros(0, dtype=EVENT_DTYPE)
        return bins

    def flush(self) -> SpikeBins:
        """Emit the open bin, complete or not, and forget the timeline."""
        if self._open_bin_start_us is None:
            return _empty_bins(self.width, self.height, self.bin_width_us)
        bins = self._emit(self._pending, self._open_bin_start_us, 1)
        self.reset()
        return bins

    def _push_segment(self, events: np.ndarray) -> SpikeBins:
        """Bin a time-sorted segment that contains no gap longer than max_gap_us."""
        first_time_us = int(events["t"][0])
        parts = []
        reset_here = False

        if self._open_bin_start_us is not None:
            if first_time_us < self._open_bin_start_us - self.backward_tolerance_us:
                parts.append(self.flush())
                self.counters.backward_jumps += 1
                reset_here = True
            elif first_time_us < self._open_bin_start_us:
                # Slightly late events (reordering between packets) cannot reopen an
                # emitted bin; they are dropped and counted.
                late = events["t"] < self._open_bin_start_us
                self.counters.events_late += int(np.count_nonzero(late))
                events = events[~late]
                if events.shape[0] == 0:
                    return _empty_bins(self.width, self.height, self.bin_width_us)
            elif first_time_us - self._open_bin_start_us > self.max_gap_us:
                parts.append(self.flush())
                self.counters.forward_jumps += 1
                reset_here = True

        if self._open_bin_start_us is None:
            self._open_bin_start_us = (first_time_us // self.bin_width_us) * self.bin_width_us

        pending = np.concatenate([self._pending, events])
        last_time_us = int(pending["t"][-1])
        num_complete = (last_time_us - self._open_bin_start_us) // self.bin_width_us
        split = np.searchsorted(
            pending["t"], self._open_bin_start_us + num_complete * self.bin_width_us
        )
        new_bins = self._emit(pending[:split], self._open_bin_start_us, num_complete)
        self._pending = pending[split:]
        self._open_bin_start_us += num_complete * self.bin_width_us
        self.counters.events_binned += int(events.shape[0])

        if reset_here:
            new_bins = replace(new_bins, reset_at=0)
        parts.append(new_bins)
        return _concatenate_bins(parts, self.width, self.height, self.bin_width_us)

    def _emit(self, events: np.ndarray, first_bin_start_us: int, num_bins: int) -> SpikeBins:
        """Collapse events into unique spikes for ``num_bins`` bins from ``first_bin_start_us``."""
        if num_bins <= 0:
            return _empty_bins(self.width, self.height, self.bin_width_us)

        bin_start_us = first_bin_start_us + np.arange(num_bins, dtype=np.int64) * self.bin_width_us
        bin_index = (events["t"] - first_bin_start_us) // self.bin_width_us  # (num_events,)
        channel = events["p"].astype(np.int64) & 1

        # One key per (bin, channel, y, x); np.unique sorts by bin first.
        keys = ((bin_index * 2 + channel) * self.height + events["y"]) * self.width + events["x"]
        keys = np.unique(keys)
        x = keys % self.width
        rest = keys // self.width
        y = rest % self.height
        rest = rest // self.height

        self.counters.bins_emitted += num_bins
        self.counters.spikes_emitted += int(keys.shape[0])
        return SpikeBins(
            bin_start_us=bin_start_us,
            bin_index=(rest // 2).astype(np.int64),
            channel=(rest % 2).astype(np.uint8),
            y=y.astype(np.uint16),
            x=x.astype(np.uint16),
            width=self.width,
            height=self.height,
            bin_width_us=self.bin_width_us,
        )
