"""Scoring one window: IoUs and detection on hand-made predictions with known results."""

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
