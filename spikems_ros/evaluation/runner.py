"""Run a network over labelled recordings and score it per window length."""

import logging
from dataclasses import dataclass

import numpy as np

from spikems_ros.evaluation.metrics import event_pixel_iou, per_event_iou
from spikems_ros.events.binning import StreamingBinner
from spikems_ros.segmentation import StreamSegmenter, WindowClassifier, energy_summary

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelledRecording:
    """Events with a ground-truth foreground flag per event."""

    name: str
    events: np.ndarray  # (N,) EVENT_DTYPE sorted by t
    foreground: np.ndarray  # (N,) bool
    width: int
    height: int


def run_network(segmenter: StreamSegmenter, recording: LabelledRecording, bin_us: int) -> tuple:
    """Bin a whole recording and run the network over it from rest.

    NOTE: the network runs as one stream, as in the node, so each window starts
    from the state the previous ones left. Scoring windows run from rest, one at
    a time, would give other figures for short windows; that mode is not measured.

    Returns (network output, the events the binner accepted, their foreground flags).
    """
    in_range = (recording.events["x"] < recording.width) & (recording.events["y"] < recording.height)
    events = recording.events[in_range]
    foreground = recording.foreground[in_range]

    binner = StreamingBinner(recording.width, recording.height, bin_width_us=bin_us)
    bins = binner.push(events)
    tail = binner.flush()
    segmenter.reset()
    outputs = [segmenter.process(bins), segmenter.process(tail)]
    return outputs, events, foreground


def score_windows(
    outputs: list,
    events: np.ndarray,
    foreground: np.ndarray,
    recording: LabelledRecording,
    *,
    bin_us: int,
    window_bins: int,
    output_delay_bins: int,
    warmup_us: int,
    ann_macs_per_frame: int,
    num_layers: int,
) -> list:
    """Classify the events window by window and return one metrics dict per scored window.

    Windows starting before ``warmup_us`` after the first event are skipped (the
    network starts at rest), and so are windows without ground-truth foreground.
    """
    classifier = WindowClassifier(
        recording.width,
        recording.height,
        bin_us=bin_us,
        window_bins=window_bins,
        output_delay_bins=output_delay_bins,
        num_layers=num_layers,
    )
    classifier.add_events(events)
    for output in outputs:
        classifier.add_output(output)
    windows = classifier.pop_windows(flush=True)

    first_us = int(events["t"][0]) if events.shape[0] else 0
    scores = []
    for window in windows:
        count = window.events.shape[0]
        window_labels = _labels_for(window, events, foreground)
        if window.start_us < first_us + warmup_us or not window_labels.any():
            continue

        truth_pixels = np.zeros((recording.height, recording.width), dtype=bool)
        labelled = window.events[window_labels]
        truth_pixels[labelled["y"], labelled["x"]] = True
        synaptic_ops = int(window.synaptic_ops.sum())
        scores.append(
            {
                "start_us": window.start_us,
                "events": count,
                "event_pixel_iou": event_pixel_iou(window.predicted_pixels, truth_pixels),
                "per_event_iou": per_event_iou(window.predicted_pixels, window.events, window_labels),
                **energy_summary(synaptic_ops, ann_macs_per_frame),
            }
        )
    return scores


def _labels_for(window, events: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """Return the ground-truth flags of the window's events, which the classifier keeps in input order."""
    start, stop = np.searchsorted(events["t"], [window.start_us, window.end_us])
    if stop - start != window.events.shape[0]:
        raise RuntimeError(
            f"window at {window.start_us} us contains {window.events.shape[0]} events, expected {stop - start}"
        )
    return foreground[start:stop]


def summarize(scores: list) -> dict:
    """Mean and standard deviation of every metric over windows (NaN-free)."""
    summary = {"windows": len(scores)}
    for name in ("event_pixel_iou", "per_event_iou", "energy_ratio"):
        values = np.array([score[name] for score in scores], dtype=np.float64)
        values = values[np.isfinite(values)]
        summary[f"{name}_mean"] = float(values.mean()) if values.size else float("nan")
        summary[f"{name}_std"] = float(values.std()) if values.size else float("nan")
    return summary
