"""Metric functions on hand-made cases with known results."""

import math

import numpy as np
import pytest

from spikems_ros.evaluation.metrics import (
    bounding_box,
    box_iou,
    event_pixel_iou,
    is_detection,
    per_event_iou,
    remove_isolated_pixels,
)
from spikems_ros.events.dtype import make_events


def pixel_map(pixels, shape=(4, 6)):
    result = np.zeros(shape, dtype=bool)
    for y, x in pixels:
        result[y, x] = True
    return result


def test_event_pixel_iou_perfect():
    truth = pixel_map([(0, 0), (1, 2), (3, 5)])
    assert event_pixel_iou(truth.copy(), truth) == 1.0


def test_event_pixel_iou_half_overlap():
    predicted = pixel_map([(0, 0), (0, 1)])
    truth = pixel_map([(0, 1), (0, 2)])
    # |P & G| = 1, |P | G| = 3
    assert event_pixel_iou(predicted, truth) == pytest.approx(1 / 3)


def test_event_pixel_iou_empty_prediction():
    truth = pixel_map([(1, 1)])
    assert event_pixel_iou(pixel_map([]), truth) == 0.0


def test_event_pixel_iou_empty_truth():
    assert event_pixel_iou(pixel_map([(1, 1)]), pixel_map([])) == 0.0


def test_event_pixel_iou_both_empty_is_nan():
    assert math.isnan(event_pixel_iou(pixel_map([]), pixel_map([])))


def test_event_pixel_iou_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        event_pixel_iou(np.zeros((2, 2), bool), np.zeros((3, 2), bool))


def test_per_event_iou_counts_events_not_pixels():
    # Three events on pixel (0, 0), all foreground; one background event on (0, 1).
    events = make_events([0, 0, 0, 1], [0, 0, 0, 0], [1, 2, 3, 4], [1, 1, 0, 1])
    truth = np.array([True, True, True, False])
    predicted = pixel_map([(0, 0), (0, 1)])

    # Predicted foreground: all four events; true foreground: three; IoU = 3/4.
    assert per_event_iou(predicted, events, truth) == pytest.approx(0.75)


def test_per_event_iou_perfect_and_empty():
    events = make_events([0, 1], [0, 0], [1, 2], [1, 1])
    truth = np.array([True, False])

    assert per_event_iou(pixel_map([(0, 0)]), events, truth) == 1.0
    assert per_event_iou(pixel_map([]), events, truth) == 0.0
    assert math.isnan(per_event_iou(pixel_map([]), events, np.array([False, False])))


def test_remove_isolated_pixels_keeps_clusters():
    pixels = pixel_map([(0, 0), (0, 1), (3, 5)])
    cleaned = remove_isolated_pixels(pixels)
    assert cleaned[0, 0]
    assert cleaned[0, 1]
    assert not cleaned[3, 5]


def test_bounding_box_and_iou():
    assert bounding_box(pixel_map([])) is None
    assert bounding_box(pixel_map([(1, 2), (3, 4)])) == (2, 1, 4, 3)
    # Two 2x2 boxes sharing one column: intersection 2, union 6.
    assert box_iou((0, 0, 1, 1), (1, 0, 2, 1)) == pytest.approx(2 / 6)


def test_detection_rule():
    truth = (0, 0, 9, 9)
    assert is_detection((0, 0, 9, 9), truth)
    # IoU 0.5 exactly and fully inside: a detection.
    assert is_detection((0, 0, 4, 9), truth)
    # Large box mostly outside: IoU too low.
    assert not is_detection((0, 0, 19, 19), truth)
    assert not is_detection(None, truth)
    assert not is_detection(truth, None)
