"""The segmentation pipeline shared by the ROS node and ``spikems segment``.

Decoded events go in, in any chunking; complete windows come out, each with its
classified events, boxes of moving objects, an overlay image, a mask and the
synaptic-operation count. Nothing here imports rclpy.
"""

import logging
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from spikems_ros.events.binning import SpikeBins, StreamingBinner
from spikems_ros.events.dtype import EVENT_DTYPE
from spikems_ros.evaluation.metrics import remove_isolated_pixels
from spikems_ros.segmentation import SegmentedWindow, StreamSegmenter, WindowClassifier, energy_summary
from spikems_ros.snn.network import SpikeMSNetwork

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of the pipeline; the node's parameters map onto these fields."""

    bin_width_us: int = 1000  # width of one network time step; must match the weights
    window_bins: int = 10  # bins per published window (the publish period)
    output_delay_bins: int = 6  # bins between input and the output read for it
    chunk_bins: int = 16  # maximum bins per network call: complete bins run at once, in calls of this many
    box_min_pixels: int = 12  # smaller foreground blobs are not reported as objects
    box_merge_distance_px: int = 3  # foreground pixels this close belong to one object
    box_noise_min_neighbours: int = 1  # foreground pixels with fewer foreground neighbours are noise
    tracking: bool = True  # smooth boxes with a constant-velocity Kalman filter per object
    track_max_missed_windows: int = 3  # a track not matched this many windows in a row is dropped
    track_min_iou: float = 0.1  # least IoU between a track's predicted box and a new box to match them
    backward_tolerance_us: int = 1000  # later-arriving events up to this old are dropped, not a time jump

    def __post_init__(self):
        for name in ("bin_width_us", "window_bins", "chunk_bins", "box_min_pixels", "track_max_missed_windows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} = {getattr(self, name)!r} is invalid: expected an integer >= 1")
        for name in ("output_delay_bins", "box_merge_distance_px", "box_noise_min_neighbours", "backward_tolerance_us"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} = {getattr(self, name)!r} is invalid: expected an integer >= 0")
        if not 0.0 <= self.track_min_iou <= 1.0:
            raise ValueError(f"track_min_iou = {self.track_min_iou!r} is invalid: expected 0 to 1")


@dataclass(frozen=True)
class Box:
    """An axis-aligned box of a moving object, in pixels (inclusive bounds)."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float
    pixels: int  # foreground pixels supporting the box
    track_id: int = -1  # -1 when tracking is off

    @property
    def center(self) -> tuple:
        return ((self.x_min + self.x_max) / 2.0, (self.y_min + self.y_max) / 2.0)

    @property
    def size(self) -> tuple:
        return (self.x_max - self.x_min + 1.0, self.y_max - self.y_min + 1.0)


@dataclass(frozen=True)
class WindowResult:
    """One published window: classified events, boxes and the network's work."""

    window: SegmentedWindow
    boxes: tuple  # Box objects
    operations: dict  # per layer and totals, see ``operations_summary``
    processing_s: float  # wall time spent in the network for the window's output bins


def slice_bins(bins: SpikeBins, start: int, stop: int) -> SpikeBins:
    """Return bins [start, stop) of ``bins`` as a SpikeBins on one timeline (no reset marker)."""
    first, last = np.searchsorted(bins.bin_index, [start, stop])
    return SpikeBins(
        bin_start_us=bins.bin_start_us[start:stop],
        bin_index=bins.bin_index[first:last] - start,
        channel=bins.channel[first:last],
        y=bins.y[first:last],
        x=bins.x[first:last],
        width=bins.width,
        height=bins.height,
        bin_width_us=bins.bin_width_us,
    )


def find_boxes(foreground_pixels: np.ndarray, config: PipelineConfig) -> list:
    """Return boxes around clusters of foreground pixels, after removing isolated pixels."""
    pixels = remove_isolated_pixels(foreground_pixels, config.box_noise_min_neighbours)
    if config.box_merge_distance_px > 0:
        grown = ndimage.binary_dilation(pixels, iterations=config.box_merge_distance_px)
    else:
        grown = pixels
    labels, count = ndimage.label(grown, structure=np.ones((3, 3), dtype=bool))
    boxes = []
    for index, region in enumerate(ndimage.find_objects(labels), start=1):
        if region is None:
            continue
        members = pixels[region] & (labels[region] == index)
        pixel_count = int(np.count_nonzero(members))
        if pixel_count < config.box_min_pixels:
            continue
        ys, xs = np.nonzero(members)
        boxes.append(
            Box(
                x_min=float(xs.min() + region[1].start),
                y_min=float(ys.min() + region[0].start),
                x_max=float(xs.max() + region[1].start),
                y_max=float(ys.max() + region[0].start),
                pixels=pixel_count,
            )
        )
    return boxes


def _box_iou(first: Box, second: Box) -> float:
    width = min(first.x_max, second.x_max) - max(first.x_min, second.x_min) + 1
    height = min(first.y_max, second.y_max) - max(first.y_min, second.y_min) + 1
    if width <= 0 or height <= 0:
        return 0.0
    intersection = width * height
    area_first = first.size[0] * first.size[1]
    area_second = second.size[0] * second.size[1]
    return intersection / (area_first + area_second - intersection)


class BoxTracker:
    """Constant-velocity Kalman filters (filterpy) over box centre and size, one per object.

    State (cx, cy, w, h, vx, vy) in pixels and pixels per window; boxes are matched
    to predicted tracks greedily by IoU.
    """

    def __init__(self, config: PipelineConfig):
        self.config = config
        self._tracks = {}  # track id -> (KalmanFilter, missed windows)
        self._next_id = 0

    def reset(self) -> None:
        self._tracks.clear()

    def _new_filter(self, box: Box):
        from filterpy.kalman import KalmanFilter

        kalman = KalmanFilter(dim_x=6, dim_z=4)
        kalman.F = np.eye(6)
        kalman.F[0, 4] = kalman.F[1, 5] = 1.0  # centre moves by its velocity each window
        kalman.H = np.eye(4, 6)
        kalman.R *= 4.0  # measurement noise, px^2: box edges jitter by about 2 px
        kalman.P[4:, 4:] *= 100.0  # velocity unknown at first
        kalman.Q = np.diag([1.0, 1.0, 1.0, 1.0, 4.0, 4.0])
        kalman.x[:4, 0] = [*box.center, *box.size]
        return kalman

    @staticmethod
    def _state_box(kalman, pixels: int, track_id: int) -> Box:
        center_x, center_y, width, height = kalman.x[:4, 0]
        width, height = max(width, 1.0), max(height, 1.0)
        return Box(
            x_min=center_x - (width - 1) / 2, y_min=center_y - (height - 1) / 2,
            x_max=center_x + (width - 1) / 2, y_max=center_y + (height - 1) / 2,
            pixels=pixels, track_id=track_id,
        )

    def update(self, boxes: list) -> list:
        """Advance every track by one window, match the new boxes and return the tracked boxes."""
        predicted = {}
        for track_id, (kalman, missed) in self._tracks.items():
            kalman.predict()
            predicted[track_id] = self._state_box(kalman, 0, track_id)

        pairs = sorted(
            ((_box_iou(predicted[track_id], box), track_id, index)
             for track_id in predicted for index, box in enumerate(boxes)),
            reverse=True,
        )
        matched_tracks, matched_boxes, result = set(), set(), []
        for iou, track_id, index in pairs:
            if iou < self.config.track_min_iou or track_id in matched_tracks or index in matched_boxes:
                continue
            kalman, _ = self._tracks[track_id]
            box = boxes[index]
            kalman.update(np.array([*box.center, *box.size]))
            self._tracks[track_id] = (kalman, 0)
            matched_tracks.add(track_id)
            matched_boxes.add(index)
            result.append(self._state_box(kalman, box.pixels, track_id))

        for track_id in list(self._tracks):
            if track_id not in matched_tracks:
                kalman, missed = self._tracks[track_id]
                if missed + 1 >= self.config.track_max_missed_windows:
                    del self._tracks[track_id]
                else:
                    self._tracks[track_id] = (kalman, missed + 1)

        for index, box in enumerate(boxes):
            if index not in matched_boxes:
                track_id = self._next_id
                self._next_id += 1
                self._tracks[track_id] = (self._new_filter(box), 0)
                result.append(Box(box.x_min, box.y_min, box.x_max, box.y_max, box.pixels, track_id))
        return result


def operations_summary(window: SegmentedWindow, layer_names: tuple, ann_macs_per_frame: np.ndarray) -> dict:
    """Per-layer and total operations of a window, with energies at 0.9 pJ/accumulate and 4.6 pJ/MAC.

    The ANN counterpart runs one dense pass per window, on an event frame of the window.
    """
    layers = [
        {
            "name": name,
            "input_spikes": int(window.input_spikes[index]),
            "output_spikes": int(window.output_spikes[index]),
            "synaptic_ops": int(window.synaptic_ops[index]),
            "ann_macs": int(ann_macs_per_frame[index]),
        }
        for index, name in enumerate(layer_names)
    ]
    summary = energy_summary(int(window.synaptic_ops.sum()), int(ann_macs_per_frame.sum()))
    summary.update(
        layers=layers,
        bins=window.output_bins,
        total_input_spikes=int(window.input_spikes.sum()),
        total_output_spikes=int(window.output_spikes.sum()),
    )
    return summary


def render_overlay(window: SegmentedWindow, boxes, width: int, height: int) -> np.ndarray:
    """Return a (height, width, 3) uint8 BGR image: background events grey, foreground red (ON) / blue (OFF), boxes green."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    events = window.events
    background = events[~window.foreground]
    image[background["y"], background["x"]] = (70, 70, 70)
    foreground = events[window.foreground]
    on = foreground["p"] == 1
    image[foreground["y"][on], foreground["x"][on]] = (40, 40, 255)
    image[foreground["y"][~on], foreground["x"][~on]] = (255, 120, 40)
    for box in boxes:
        x_min = int(np.clip(round(box.x_min), 0, width - 1))
        x_max = int(np.clip(round(box.x_max), 0, width - 1))
        y_min = int(np.clip(round(box.y_min), 0, height - 1))
        y_max = int(np.clip(round(box.y_max), 0, height - 1))
        image[y_min, x_min : x_max + 1] = (0, 255, 0)
        image[y_max, x_min : x_max + 1] = (0, 255, 0)
        image[y_min : y_max + 1, x_min] = (0, 255, 0)
        image[y_min : y_max + 1, x_max] = (0, 255, 0)
    return image


def render_mask(window: SegmentedWindow, width: int, height: int) -> np.ndarray:
    """Return a (height, width) uint8 mask: 255 at pixels of foreground events, 0 elsewhere."""
    mask = np.zeros((height, width), dtype=np.uint8)
    foreground = window.events[window.foreground]
    mask[foreground["y"], foreground["x"]] = 255
    return mask


@dataclass
class PipelineCounters:
    """Running totals of the pipeline, for diagnostics and the offline summary."""

    events_in: int = 0
    events_foreground: int = 0
    events_background: int = 0
    bins_processed: int = 0
    windows: int = 0
    boxes: int = 0
    synaptic_ops: int = 0
    time_resets: int = 0
    network_seconds: float = 0.0
    # Per-bin processing times of the most recent 1000 bins, in milliseconds.
    bin_processing_ms: deque = field(default_factory=lambda: deque(maxlen=1000))


class SegmentationPipeline:
    """Events in, segmented windows out, with the network's state carried along."""

    def __init__(self, network: SpikeMSNetwork, width: int, height: int, config: PipelineConfig = PipelineConfig(),
                 device: str = "cpu"):
        if round(network.bin_ms * 1000) != config.bin_width_us:
            raise ValueError(
                f"bin_width_us = {config.bin_width_us} does not match the network's bin of {network.bin_ms} ms"
            )
        self.config = config
        self.width = int(width)
        self.height = int(height)
        self.network = network
        self.device = device
        self.counters = PipelineCounters()
        self._build()

    def _build(self) -> None:
        config = self.config
        self.binner = StreamingBinner(
            self.width, self.height, bin_width_us=config.bin_width_us,
            backward_tolerance_us=config.backward_tolerance_us,
        )
        self.segmenter = StreamSegmenter(self.network, self.width, self.height, chunk_bins=config.chunk_bins,
                                         device=self.device)
        self.classifier = WindowClassifier(
            self.width, self.height, bin_us=config.bin_width_us, window_bins=config.window_bins,
            output_delay_bins=config.output_delay_bins, num_layers=len(self.segmenter.layer_names),
        )
        self.tracker = BoxTracker(config) if config.tracking else None
        self.ann_macs_per_frame = self.segmenter.ann_macs_per_frame
        self._pending_network_s = 0.0

    def resize(self, width: int, height: int) -> None:
        """Rebuild the binner and the network state for a new resolution (pending windows are dropped)."""
        LOG.info("resolution changed from %dx%d to %dx%d; network state rebuilt", self.width, self.height, width, height)
        self.width, self.height = int(width), int(height)
        self._build()

    def push_events(self, events: np.ndarray) -> list:
        """Add decoded events; return the windows completed by them."""
        self.counters.events_in += int(events.shape[0])
        open_bin_before_us = self.binner.open_bin_start_us
        jumps_before = self.binner.counters.backward_jumps + self.binner.counters.forward_jumps
        bins = self.binner.push(events)
        jumped = self.binner.counters.backward_jumps + self.binner.counters.forward_jumps != jumps_before
        return self._advance(bins, self._accepted_events(events, open_bin_before_us, jumped))

    def flush(self) -> list:
        """Process the open bin and the output delay, and return every remaining window."""
        bins = self.binner.flush()
        results = self._advance(bins, np.zeros(0, dtype=EVENT_DTYPE))
        if bins.num_bins:
            # Run empty bins through the output delay so the last window gets its prediction.
            last_end_us = int(bins.bin_start_us[-1]) + self.config.bin_width_us
            delay_bins = self._empty_bins(last_end_us, self.config.output_delay_bins)
            results += self._advance(delay_bins, np.zeros(0, dtype=EVENT_DTYPE))
        windows = self.classifier.pop_windows(flush=True)
        results += [self._finish(window) for window in windows]
        return results

    def _accepted_events(self, events: np.ndarray, open_bin_before_us, jumped: bool) -> np.ndarray:
        """Return the events the binner kept, sorted by time, so classification uses the same set.

        The binner drops coordinates outside the sensor, and, unless the time jumped,
        events older than the bin that was open before the push.
        """
        events = events[(events["x"] < self.width) & (events["y"] < self.height)]
        if np.any(np.diff(events["t"]) < 0):
            events = events[np.argsort(events["t"], kind="stable")]
        if open_bin_before_us is not None and not jumped:
            events = events[events["t"] >= open_bin_before_us]
        return events

    def _empty_bins(self, first_start_us: int, count: int) -> SpikeBins:
        return SpikeBins(
            bin_start_us=first_start_us + np.arange(count, dtype=np.int64) * self.config.bin_width_us,
            bin_index=np.zeros(0, np.int64), channel=np.zeros(0, np.uint8),
            y=np.zeros(0, np.uint16), x=np.zeros(0, np.uint16),
            width=self.width, height=self.height, bin_width_us=self.config.bin_width_us,
        )

    def _advance(self, bins: SpikeBins, events: np.ndarray) -> list:
        if bins.reset_at is None:
            self.classifier.add_events(events)
            self._run(bins)
            return [self._finish(window) for window in self.classifier.pop_windows()]

        # A time jump: the bins before reset_at end the old timeline, whose windows
        # are finished first (after running empty bins through the output delay);
        # the new timeline starts from rest.
        old_timeline = slice_bins(bins, 0, bins.reset_at)
        self._run(old_timeline)
        if old_timeline.num_bins:
            last_end_us = int(old_timeline.bin_start_us[-1]) + self.config.bin_width_us
            self._run(self._empty_bins(last_end_us, self.config.output_delay_bins))
        results = [self._finish(window) for window in self.classifier.pop_windows(flush=True)]
        self.classifier.reset()
        self.segmenter.reset()
        if self.tracker is not None:
            self.tracker.reset()
        self.counters.time_resets += 1
        LOG.warning("event time jumped; network state reset")

        self.classifier.add_events(events)
        self._run(slice_bins(bins, bins.reset_at, bins.num_bins))
        return results + [self._finish(window) for window in self.classifier.pop_windows()]

    def _run(self, bins: SpikeBins) -> None:
        if bins.num_bins == 0:
            return
        started = time.perf_counter()
        output = self.segmenter.process(bins)
        elapsed_s = time.perf_counter() - started
        self.counters.bins_processed += bins.num_bins
        self.counters.network_seconds += elapsed_s
        self._pending_network_s += elapsed_s
        per_bin_ms = 1000.0 * elapsed_s / bins.num_bins
        self.counters.bin_processing_ms.extend([per_bin_ms] * min(bins.num_bins, 1000))
        self.classifier.add_output(output)

    def _finish(self, window: SegmentedWindow) -> WindowResult:
        foreground_pixels = np.zeros((self.height, self.width), dtype=bool)
        foreground_events = window.events[window.foreground]
        foreground_pixels[foreground_events["y"], foreground_events["x"]] = True
        boxes = find_boxes(foreground_pixels, self.config)
        if self.tracker is not None:
            boxes = self.tracker.update(boxes)

        self.counters.windows += 1
        self.counters.boxes += len(boxes)
        self.counters.events_foreground += int(foreground_events.shape[0])
        self.counters.events_background += int(window.events.shape[0] - foreground_events.shape[0])
        self.counters.synaptic_ops += int(window.synaptic_ops.sum())
        processing_s, self._pending_network_s = self._pending_network_s, 0.0
        return WindowResult(
            window=window,
            boxes=tuple(boxes),
            operations=operations_summary(window, self.segmenter.layer_names, self.ann_macs_per_frame),
            processing_s=processing_s,
        )
