"""Scoring: IoUs and detection of one window on hand-made predictions, and which windows of a recording count."""

import math

import numpy as np

from spikems_ros.evaluation.runner import score_prediction
from spikems_ros.events.dtype import make_events

HEIGHT, WIDTH = 10, 12


def block(y0, y1, x0, x1):
    pixels = np.zeros((HEIGHT, WIDTH), dtype=bool)
    pixels[y0:y1, x0:x1] = True
    return pixels


def window_truth():
    """Events on every pixel of a 4x4 object at rows 2-5, columns 2-5, and two background events."""
    ys, xs = np.nonzero(block(2, 6, 2, 6))
    xs = np.concatenate([xs, [10, 11]])
    ys = np.concatenate([ys, [9, 9]])
    events = make_events(xs, ys, np.arange(xs.shape[0]), np.ones(xs.shape[0]))
    labels = np.concatenate([np.ones(16, bool), np.zeros(2, bool)])
    return events, labels, block(2, 6, 2, 6), (2, 2, 5, 5)


def test_perfect_prediction():
    scores = score_prediction(block(2, 6, 2, 6), *window_truth())
    assert scores == {"event_pixel_iou": 1.0, "per_event_iou": 1.0, "detected": 1.0}


def test_empty_prediction():
    scores = score_prediction(np.zeros((HEIGHT, WIDTH), bool), *window_truth())
    assert scores == {"event_pixel_iou": 0.0, "per_event_iou": 0.0, "detected": 0.0}


def test_half_overlap():
    # Columns 4-7: 8 of the 16 object pixels plus 8 pixels beside it.
    scores = score_prediction(block(2, 6, 4, 8), *window_truth())
    assert scores["event_pixel_iou"] == 8 / 24
    assert scores["per_event_iou"] == 8 / 16  # only the 16 object events are in the union
    assert scores["detected"] == 0.0  # box IoU 1/3 is under 0.5


def test_without_ground_truth_box():
    events, labels, truth_pixels, _ = window_truth()
    scores = score_prediction(block(2, 6, 2, 6), events, labels, truth_pixels, None)
    assert math.isnan(scores["detected"])


def test_boxes_only_ground_truth():
    events, _, _, truth_box = window_truth()
    scores = score_prediction(block(2, 6, 2, 5), events, None, None, truth_box)
    assert math.isnan(scores["event_pixel_iou"])
    assert math.isnan(scores["per_event_iou"])
    assert scores["detected"] == 1.0  # box IoU 0.75, all of it inside


def test_windows_past_last_output_skipped():
    import torch

    from spikems_ros.evaluation.datasets import LabelledRecording
    from spikems_ros.evaluation.runner import WindowSettings, run_network, score_recording
    from spikems_ros.segmentation import StreamSegmenter
    from spikems_ros.snn.network import SpikeMSNetwork

    # One foreground event every 100 us from 0 to 80 ms, so every window has ground truth.
    count = 800
    rng = np.random.default_rng(0)
    events = make_events(rng.integers(0, 48, count), rng.integers(0, 32, count), np.arange(count) * 100,
                         np.ones(count))
    recording = LabelledRecording("uniform", events, np.ones(count, bool), 48, 32)
    torch.manual_seed(0)
    segmenter = StreamSegmenter(SpikeMSNetwork(), 48, 32)
    outputs, accepted, index = run_network(segmenter, recording, 1000)

    starts_ms = {}
    for window_bins in (1, 10):
        settings = WindowSettings(bin_us=1000, window_bins=window_bins, output_delay_bins=6, warmup_us=0)
        scores = score_recording(outputs, accepted, index, recording, settings, len(segmenter.layer_names))
        starts_ms[window_bins] = [score["start_us"] // 1000 for score in scores]

    # Output bins end at 80 ms, so a window is scored only when it ends by 80 - 6 = 74 ms.
    assert starts_ms[1] == list(range(0, 74))
    assert starts_ms[10] == list(range(0, 70, 10))
