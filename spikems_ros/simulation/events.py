"""Event-camera pixel model: threshold crossings of log intensity, refractory period and noise.

Each pixel keeps a reference log intensity. Between two rendered frames the log
intensity is taken to change linearly in time. Whenever it moves one ON
threshold above (or one OFF threshold below) the reference, the pixel fires an
event at the interpolated crossing time, and the reference moves by that
threshold. Thresholds differ per pixel (Gaussian mismatch), and a pixel that
fired less than ``refractory_us`` ago drops the crossing.

NOTE: a dropped crossing still moves the reference, so a pixel does not fire a
burst when its refractory period ends. A real pixel instead holds its reference
at the input while refractory, so the change it misses can differ by up to one threshold.
"""

from typing import NamedTuple

import numpy as np

# Thresholds drawn from the mismatch Gaussian are clipped to this fraction of the mean.
MIN_THRESHOLD_FRACTION = 0.25

# Last event time of a pixel that has not fired yet.
NEVER_US = -1.0e18


class PixelParameters(NamedTuple):
    """Fixed per-pixel sensor parameters, flattened to (H*W,)."""

    threshold_on: np.ndarray  # float32 log-intensity rise that fires an ON event
    threshold_off: np.ndarray  # float32 log-intensity fall that fires an OFF event
    refractory_us: float


class PixelState(NamedTuple):
    """Per-pixel memory carried from one rendered frame to the next, flattened to (H*W,)."""

    reference_log: np.ndarray  # float32 log intensity at the last (fired or dropped) crossing
    last_event_us: np.ndarray  # float64 time of the last emitted event


class EventChunk(NamedTuple):
    """Events of one frame interval, not sorted by time."""

    pixel_index: np.ndarray  # int64 flat index y * W + x
    time_us: np.ndarray  # float64, within the interval
    polarity: np.ndarray  # uint8, 1 = ON, 0 = OFF


def sample_pixel_parameters(
    rng: np.random.Generator, pixel_count: int, contrast_threshold: float, threshold_sigma: float, refractory_us: float
) -> PixelParameters:
    """Draw per-pixel ON and OFF thresholds ~ N(contrast_threshold, threshold_sigma)."""
    low = MIN_THRESHOLD_FRACTION * contrast_threshold
    threshold_on = np.maximum(rng.normal(contrast_threshold, threshold_sigma, pixel_count), low)
    threshold_off = np.maximum(rng.normal(contrast_threshold, threshold_sigma, pixel_count), low)
    return PixelParameters(threshold_on.astype(np.float32), threshold_off.astype(np.float32), float(refractory_us))


def initial_pixel_state(rng: np.random.Generator, first_log: np.ndarray, parameters: PixelParameters) -> PixelState:
    """Start every pixel at a random point inside its threshold band around the first frame.

    A real sensor's pixels were last reset at unrelated moments, so their
    references differ from the current intensity by unrelated amounts. Equal
    starting references would make the first passing edge fire every pixel in lockstep.
    """
    flat = first_log.ravel()
    position = rng.random(flat.shape[0]).astype(np.float32)
    reference = flat - parameters.threshold_on + position * (parameters.threshold_on + parameters.threshold_off)
    last_event = np.full(flat.shape[0], NEVER_US)
    return PixelState(reference.astype(np.float32), last_event)


def emit_crossing_events(
    previous_log: np.ndarray,
    current_log: np.ndarray,
    start_us: float,
    stop_us: float,
    state: PixelState,
    parameters: PixelParameters,
) -> tuple:
    """Emit the threshold crossings between two frames; return (EventChunk, new PixelState).

    ``previous_log`` and ``current_log`` are float32 (H*W,) log intensities at
    ``start_us`` and ``stop_us``. Crossings of one pixel are evenly spaced in
    time because the log intensity is linear in between.
    """
    reference = state.reference_log
    change = current_log - reference  # (H*W,)
    crossings_on = np.floor(np.maximum(change, 0) / parameters.threshold_on)
    crossings_off = np.floor(np.maximum(-change, 0) / parameters.threshold_off)
    active = np.flatnonzero(crossings_on + crossings_off)  # (A,)

    is_on = change[active] > 0
    threshold = np.where(is_on, parameters.threshold_on[active], parameters.threshold_off[active]).astype(np.float64)
    count = np.where(is_on, crossings_on[active], crossings_off[active]).astype(np.int64)
    direction = np.where(is_on, 1.0, -1.0)

    # Time of the first crossing and spacing of the following ones, from the
    # linear ramp previous_log -> current_log over the interval.
    interval_us = stop_us - start_us
    ramp = current_log[active].astype(np.float64) - previous_log[active]
    ramp = np.where(np.abs(ramp) < 1e-9, direction * 1e-9, ramp)
    first_level = reference[active] + direction * threshold
    first_fraction = np.clip((first_level - previous_log[active]) / ramp, 0.0, 1.0)
    first_us = start_us + first_fraction * interval_us  # (A,)
    spacing_us = threshold / np.abs(ramp) * interval_us  # (A,)

    # Crossing k happens at first_us + k * spacing_us. The first one kept is the
    # first outside the refractory period of the previous event, and after that
    # every stride-th one, the stride being the refractory period in crossings.
    refractory_us = parameters.refractory_us
    first_kept = np.ceil((state.last_event_us[active] + refractory_us - first_us) / spacing_us)
    first_kept = np.maximum(first_kept, 0).astype(np.int64)
    stride = np.maximum(np.ceil(refractory_us / spacing_us), 1).astype(np.int64)
    # kept_count = ceil((count - first_kept) / stride) where first_kept < count, else 0.
    kept_count = np.where(first_kept < count, -((first_kept - count) // stride), 0)

    owner = np.repeat(np.arange(active.shape[0]), kept_count)  # (E,)
    block_start = np.cumsum(kept_count) - kept_count
    position_in_block = np.arange(owner.shape[0]) - block_start[owner]
    crossing_number = first_kept[owner] + position_in_block * stride[owner]
    time_us = first_us[owner] + crossing_number * spacing_us[owner]  # (E,)

    new_reference = reference.copy()
    new_reference[active] += (direction * count * threshold).astype(np.float32)
    new_last_event = state.last_event_us.copy()
    fired = kept_count > 0
    last_crossing = first_kept[fired] + (kept_count[fired] - 1) * stride[fired]
    new_last_event[active[fired]] = first_us[fired] + last_crossing * spacing_us[fired]

    chunk = EventChunk(active[owner], time_us, is_on[owner].astype(np.uint8))
    return chunk, PixelState(new_reference, new_last_event)


def noise_events(
    rng: np.random.Generator, pixel_count: int, rate_hz: float, start_us: float, stop_us: float
) -> EventChunk:
    """Draw background-activity noise: Poisson in count, uniform in pixel, time and polarity.

    NOTE: noise events neither reset a pixel's reference nor respect its refractory period.
    """
    expected = rate_hz * pixel_count * (stop_us - start_us) * 1e-6
    count = int(rng.poisson(expected)) if expected > 0 else 0
    pixel_index = rng.integers(0, pixel_count, count)
    time_us = rng.uniform(start_us, stop_us, count)
    polarity = rng.integers(0, 2, count).astype(np.uint8)
    return EventChunk(pixel_index, time_us, polarity)
