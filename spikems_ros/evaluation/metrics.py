"""Segmentation metrics, computed per sample (one time window), never pooled over a batch.

* Event-pixel IoU: P = pixels with at least one predicted foreground spike in the
  window, G = pixels with at least one ground-truth foreground input event;
  IoU = |P & G| / |P | G|.
* Per-event IoU: every input event of the window is foreground when its pixel is
  in P; IoU over the foreground class against the events' ground-truth labels.
* Detection rate: the predicted box (bounding box of P after removing isolated
  pixels) detects the ground-truth box when their IoU is at least 0.5 and at least
  half of the predicted box's area lies inside the ground-truth box. This rule
  comes from later public evaluation code; the original wording of SpikeMS could
  not be confirmed.

Empty cases: when both sets are empty a metric is undefined and returned as NaN,
so callers skip the window; when only one is empty the IoU is 0.
"""

import numpy as np


def pixel_set_iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Return |P & G| / |P | G| for two boolean (H, W) maps, NaN when both are empty."""
    if predicted.shape != truth.shape:
        raise ValueError(f"pixel maps differ in shape: predicted {predicted.shape}, truth {truth.shape}")
    union = np.count_nonzero(predicted | truth)
    if union == 0:
        return float("nan")
    return np.count_nonzero(predicted & truth) / union


def event_pixel_iou(predicted_pixels: np.ndarray, foreground_event_pixels: np.ndarray) -> float:
    """Event-pixel IoU of one window; both maps are boolean (H, W)."""
    return pixel_set_iou(predicted_pixels.astype(bool), foreground_event_pixels.astype(bool))


def per_event_iou(predicted_pixels: np.ndarray, events: np.ndarray, event_is_foreground: np.ndarray) -> float:
    """Per-event IoU of one window: events classified by the prediction at their pixel.

    ``events`` is the window's EVENT_DTYPE array and ``event_is_foreground`` its
    (N,) boolean ground truth.
    """
    if events.shape[0] != event_is_foreground.shape[0]:
        raise ValueError(
            f"{events.shape[0]} events but {event_is_foreground.shape[0]} ground-truth labels"
        )
    predicted = predicted_pixels[events["y"], events["x"]].astype(bool)
    truth = event_is_foreground.astype(bool)
    union = np.count_nonzero(predicted | truth)
    if union == 0:
        return float("nan")
    return np.count_nonzero(predicted & truth) / union


def remove_isolated_pixels(pixels: np.ndarray, min_neighbours: int = 1) -> np.ndarray:
    """Drop foreground pixels with fewer than ``min_neighbours`` foreground pixels among their 8 neighbours."""
    pixels = pixels.astype(bool)
    padded = np.pad(pixels, 1).astype(np.int32)
    neighbours = np.zeros(pixels.shape, dtype=np.int32)
    height, width = pixels.shape
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            neighbours += padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
    return pixels & (neighbours >= min_neighbours)


def bounding_box(pixels: np.ndarray):
    """Return (x_min, y_min, x_max, y_max), inclusive pixel bounds, or None for an empty map."""
    ys, xs = np.nonzero(pixels)
    if ys.shape[0] == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def _box_area(box) -> int:
    return (box[2] - box[0] + 1) * (box[3] - box[1] + 1)


def _intersection_area(first, second) -> int:
    width = min(first[2], second[2]) - max(first[0], second[0]) + 1
    height = min(first[3], second[3]) - max(first[1], second[1]) + 1
    return max(width, 0) * max(height, 0)


def box_iou(first, second) -> float:
    """IoU of two inclusive pixel boxes (x_min, y_min, x_max, y_max)."""
    intersection = _intersection_area(first, second)
    return intersection / (_box_area(first) + _box_area(second) - intersection)


def is_detection(predicted_box, truth_box, min_iou: float = 0.5) -> bool:
    """Apply the detection rule to one predicted box and one ground-truth box (None = no box)."""
    if predicted_box is None or truth_box is None:
        return False
    inside = _intersection_area(predicted_box, truth_box)
    outside = _box_area(predicted_box) - inside
    return box_iou(predicted_box, truth_box) >= min_iou and inside >= outside
