"""Run the networks over labelled recordings and score them window by window.

For each window length the events are cut into windows aligned to multiples of
the window in absolute time, as the node does. Each scored window gets three
scores per method (the spiking network, raw and Kalman-filtered, and optionally
ANN-2D): event-pixel IoU, per-event IoU and whether the predicted box detects
the ground-truth box (definitions in ``metrics``). It also records the synaptic
operations the spiking network performed for it.
"""

import logging
from dataclasses import dataclass

import numpy as np
import torch

from spikems_ros.evaluation.datasets import LabelledRecording
from spikems_ros.evaluation.metrics import (
    bounding_box,
    event_pixel_iou,
    is_detection,
    per_event_iou,
    remove_isolated_pixels,
)
from spikems_ros.events.binning import StreamingBinner
from spikems_ros.segmentation import StreamSegmenter, WindowClassifier

LOG = logging.getLogger(__name__)

__all__ = ["LabelledRecording", "WindowSettings", "run_network", "score_recording", "summarize"]

# ANN-2D frames run through the network this many at a time. One at a time was
# fastest on one CPU thread at 346x260 (12 ms per frame, 20 ms at 16 per batch;
# PyTorch 2.13.0, x86-64), because a single frame's activations stay in cache.
ANN_BATCH_FRAMES = 1


@dataclass(frozen=True)
class WindowSettings:
    """Window cutting and scoring rules for one window length."""

    bin_us: int  # network time step
    window_bins: int  # window length in bins
    output_delay_bins: int  # bins between input and the spiking network's output read for it
    warmup_us: int  # windows starting this soon after the first event are not scored (the network starts at rest)


def run_network(segmenter: StreamSegmenter, recording: LabelledRecording, bin_us: int) -> tuple:
    """Bin a whole recording and run the network over it from rest.

    NOTE: the network runs as one stream, as in the node, so each window starts
    from the state the previous ones left. Scoring windows run from rest, one at
    a time, would give other figures for short windows; that mode is not measured.

    Returns (network output, the events the binner accepted, the index of each in the recording).
    """
    in_range = (recording.events["x"] < recording.width) & (recording.events["y"] < recording.height)
    events = recording.events[in_range]

    binner = StreamingBinner(recording.width, recording.height, bin_width_us=bin_us)
    bins = binner.push(events)
    tail = binner.flush()
    segmenter.reset()
    outputs = [segmenter.process(bins), segmenter.process(tail)]
    return outputs, events, np.flatnonzero(in_range)


def _truth_box(recording: LabelledRecording, start_us: int, end_us: int, truth_pixels):
    """Return the ground-truth box of a window: of its foreground event pixels, or of the labelled boxes.

    With labelled boxes, the frame nearest the window centre counts when it lies
    inside the window. Several boxes of one frame count as their bounding box.
    NOTE: merging the boxes of several objects into one follows the one-box
    detection rule; a per-object rule would need box matching.
    """
    if recording.boxes is None:
        return bounding_box(truth_pixels) if truth_pixels is not None else None
    start, stop = np.searchsorted(recording.box_times_us, [start_us, end_us])
    if stop == start:
        return None
    centre_us = (start_us + end_us) / 2
    times_us = recording.box_times_us[start:stop]
    nearest_us = times_us[np.argmin(np.abs(times_us - centre_us))]
    frame_boxes = recording.boxes[start:stop][times_us == nearest_us]
    return (
        int(frame_boxes[:, 0].min()), int(frame_boxes[:, 1].min()),
        int(frame_boxes[:, 2].max()), int(frame_boxes[:, 3].max()),
    )


def score_prediction(predicted: np.ndarray, events: np.ndarray, labels, truth_pixels, truth_box) -> dict:
    """Score one window's predicted pixels (H, W) against its ground truth; NaN marks an undefined metric."""
    predicted_box = bounding_box(remove_isolated_pixels(predicted))
    return {
        "event_pixel_iou": event_pixel_iou(predicted, truth_pixels) if truth_pixels is not None else float("nan"),
        "per_event_iou": per_event_iou(predicted, events, labels) if labels is not None else float("nan"),
        "detected": float(is_detection(predicted_box, truth_box)) if truth_box is not None else float("nan"),
    }


def _filtered_prediction(tracker, window, find_boxes, config) -> np.ndarray:
    """Advance the box tracker by one window; return the window's event pixels inside the tracked boxes.

    The filter predicts each object's box from the previous windows and corrects
    it with this window's boxes, so a short window with few output spikes still
    gets a box of the right size and place. Its events inside the box are the
    foreground; predicted pixels without events carry no evidence and are dropped.
    """
    boxes = tracker.update(find_boxes(window.predicted_pixels, config))
    inside = np.zeros(window.events.shape[0], dtype=bool)
    for box in boxes:
        inside |= (
            (window.events["x"] >= box.x_min) & (window.events["x"] <= box.x_max)
            & (window.events["y"] >= box.y_min) & (window.events["y"] <= box.y_max)
        )
    predicted = np.zeros_like(window.predicted_pixels)
    predicted[window.events["y"][inside], window.events["x"][inside]] = True
    return predicted


@torch.inference_mode()
def _ann_predictions(ann, windows: list, height: int, width: int) -> list:
    """Run ANN-2D on the count frame of each window; return (H, W) bool maps."""
    from spikems_ros.baselines.ann2d import count_frame, predicted_pixels

    maps = []
    for first in range(0, len(windows), ANN_BATCH_FRAMES):
        chunk = windows[first : first + ANN_BATCH_FRAMES]
        frames = torch.from_numpy(np.stack([count_frame(window.events, height, width) for window in chunk]))
        device = next(ann.parameters()).device
        maps.extend(predicted_pixels(ann(frames.to(device))).cpu().numpy())  # (B, H, W) each
    return maps


def score_recording(outputs: list, events: np.ndarray, event_index: np.ndarray, recording: LabelledRecording,
                    settings: WindowSettings, num_layers: int, ann=None) -> list:
    """Classify the events window by window and return one dict of scores per scored window.

    Windows starting before ``settings.warmup_us`` after the first event are
    skipped, and so are windows without ground truth: no foreground event (mask
    or synthetic labels) or no labelled box inside the window (boxes only).
    Windows whose delayed output bins lie past the recording's end are skipped too.
    ``ann`` is an Ann2dNetwork scored on the same windows, or None.
    """
    from spikems_ros.pipeline import BoxTracker, PipelineConfig, find_boxes

    classifier = WindowClassifier(
        recording.width, recording.height, bin_us=settings.bin_us, window_bins=settings.window_bins,
        output_delay_bins=settings.output_delay_bins, num_layers=num_layers,
    )
    classifier.add_events(events)
    for output in outputs:
        classifier.add_output(output)
    # Without flush, only windows whose delayed output bins were all computed come back. The last
    # windows of a recording, whose output would come after its last event, are left out as the
    # node leaves them unpublished, instead of being scored against missing output.
    windows = classifier.pop_windows(flush=False)

    # The tracker runs over every window, scored or not, so its motion model stays continuous.
    box_config = PipelineConfig(window_bins=settings.window_bins, bin_width_us=settings.bin_us)
    tracker = BoxTracker(box_config)
    first_us = int(events["t"][0]) if events.shape[0] else 0
    foreground = recording.foreground[event_index] if recording.foreground is not None else None
    scored_windows, scores = [], []
    for window in windows:
        filtered = _filtered_prediction(tracker, window, find_boxes, box_config)
        if window.start_us < first_us + settings.warmup_us:
            continue
        labels, truth_pixels = None, None
        if foreground is not None:
            labels = _labels_for(window, events, foreground)
            truth_pixels = np.zeros((recording.height, recording.width), dtype=bool)
            truth_pixels[window.events["y"][labels], window.events["x"][labels]] = True
            if not labels.any():
                continue
        truth_box = _truth_box(recording, window.start_us, window.end_us, truth_pixels)
        if foreground is None and truth_box is None:
            continue

        truth = (window.events, labels, truth_pixels, truth_box)
        scores.append(
            {
                "start_us": window.start_us,
                "events": int(window.events.shape[0]),
                "snn": score_prediction(window.predicted_pixels, *truth),
                "snn_filtered": score_prediction(filtered, *truth),
                "synaptic_ops_per_layer": window.synaptic_ops.astype(np.int64),
                "input_spikes_per_layer": window.input_spikes.astype(np.int64),
                "output_spikes_per_layer": window.output_spikes.astype(np.int64),
                "truth": truth,
            }
        )
        scored_windows.append(window)

    if ann is not None:
        for score, predicted in zip(scores, _ann_predictions(ann, scored_windows, recording.height, recording.width)):
            score["ann2d"] = score_prediction(predicted, *score["truth"])
    for score in scores:
        del score["truth"]
    return scores


def _labels_for(window, events: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """Return the ground-truth flags of the window's events, which the classifier keeps in input order."""
    start, stop = np.searchsorted(events["t"], [window.start_us, window.end_us])
    if stop - start != window.events.shape[0]:
        raise RuntimeError(
            f"window at {window.start_us} us contains {window.events.shape[0]} events, expected {stop - start}"
        )
    return foreground[start:stop]


METRICS = ("event_pixel_iou", "per_event_iou", "detected")


def summarize(scores: list, method: str) -> dict:
    """Mean and standard deviation of each metric of ``method`` over windows, ignoring undefined (NaN) values.

    ``detection_rate`` is the mean of the per-window detections: detections over
    windows with a ground-truth box.
    """
    summary = {"windows": len(scores)}
    for name in METRICS:
        values = np.array([score[method][name] for score in scores if method in score], dtype=np.float64)
        values = values[np.isfinite(values)]
        key = "detection_rate" if name == "detected" else name
        summary[f"{key}_mean"] = float(values.mean()) if values.size else float("nan")
        summary[f"{key}_std"] = float(values.std()) if values.size else float("nan")
    return summary
