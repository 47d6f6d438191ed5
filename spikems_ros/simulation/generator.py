"""Generate one labelled synthetic sequence: render frames, turn them into events, keep 1 ms masks."""

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from spikems_ros.events.dtype import make_events
from spikems_ros.simulation.config import GENERATOR_VERSION, SceneConfig
from spikems_ros.simulation.events import (
    emit_crossing_events,
    initial_pixel_state,
    noise_events,
    sample_pixel_parameters,
)
from spikems_ros.simulation.scene import pixel_offsets, render_frame, sample_scene

LOG = logging.getLogger(__name__)

# Render steps between two calls of the progress callback.
PROGRESS_EVERY_STEPS = 50


@dataclass(frozen=True)
class SyntheticSequence:
    """Events with per-event object labels and ground-truth masks of one sequence.

    ``masks[k]`` is the label map rendered at ``mask_times_us[k]``; the events of
    mask bin k are those with ``mask_times_us[k] <= t < mask_times_us[k] + interval``.
    """

    events: np.ndarray  # (N,) EVENT_DTYPE, sorted by t (microseconds from the sequence start)
    labels: np.ndarray  # (N,) uint8 object id per event, 0 = background
    masks: np.ndarray  # (F, H, W) uint16 object id per pixel, 0 = background (as in Recording.masks)
    mask_times_us: np.ndarray  # (F,) int64
    width: int
    height: int
    meta: dict  # seed, generator version, configuration and scene parameters; JSON-serialisable

    @property
    def object_count(self) -> int:
        return int(self.meta["object_count"])


def sequence_rngs(seed: int, sequence_index: int) -> tuple:
    """Return independent generators for the scene, the pixel parameters and the noise.

    Separate streams keep the scene unchanged when only sensor settings change.
    """
    return tuple(np.random.default_rng([seed, sequence_index, stream]) for stream in range(3))


def _scene_description(scene) -> dict:
    camera = dataclasses.asdict(scene.camera)
    objects = []
    for scene_object in scene.objects:
        description = {
            field.name: getattr(scene_object, field.name)
            for field in dataclasses.fields(scene_object)
            if field.name != "texture"
        }
        objects.append(description)
    return {"camera": camera, "objects": objects}


def _to_json_compatible(value):
    if isinstance(value, dict):
        return {key: _to_json_compatible(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json_compatible(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def simulate_sequence(
    config: SceneConfig,
    sequence_index: int = 0,
    progress: Optional[Callable[[int], None]] = None,
) -> SyntheticSequence:
    """Generate sequence ``sequence_index`` of the data set defined by ``config``.

    The same (config, sequence_index) always gives identical arrays.
    ``progress`` is called with the number of render steps completed since its
    previous call.
    """
    if isinstance(sequence_index, bool) or not isinstance(sequence_index, int) or sequence_index < 0:
        raise ValueError(f"sequence_index = {sequence_index!r} is invalid; expected an int >= 0")

    started = time.perf_counter()
    scene_rng, sensor_rng, noise_rng = sequence_rngs(config.seed, sequence_index)
    scene = sample_scene(config, scene_rng)
    offsets = pixel_offsets(config.width, config.height)
    pixel_count = config.width * config.height

    step_us = config.render_step_us
    step_count = config.duration_us // step_us
    steps_per_mask = config.mask_interval_us // step_us
    mask_count = config.mask_count

    previous_log, previous_labels = render_frame(scene, 0.0, offsets)
    previous_log = previous_log.ravel()
    previous_labels = previous_labels.ravel()
    parameters = sample_pixel_parameters(
        sensor_rng, pixel_count, config.contrast_threshold, config.threshold_sigma, config.refractory_us
    )
    state = initial_pixel_state(sensor_rng, previous_log, parameters)

    masks = np.zeros((mask_count, config.height, config.width), dtype=np.uint16)  # (F, H, W)
    masks[0] = previous_labels.reshape(config.height, config.width)
    pixel_chunks, time_chunks, polarity_chunks, label_chunks = [], [], [], []
    pending_progress = 0

    for step in range(1, step_count + 1):
        start_us = (step - 1) * step_us
        stop_us = step * step_us
        current_log, current_labels = render_frame(scene, stop_us * 1e-6, offsets)
        current_log = current_log.ravel()
        current_labels = current_labels.ravel()

        signal, state = emit_crossing_events(previous_log, current_log, start_us, stop_us, state, parameters)
        noise = noise_events(noise_rng, pixel_count, config.noise_rate_hz, start_us, stop_us)
        pixel_index = np.concatenate([signal.pixel_index, noise.pixel_index])
        time_us = np.floor(np.concatenate([signal.time_us, noise.time_us])).astype(np.int64)
        polarity = np.concatenate([signal.polarity, noise.polarity])

        # An event is caused by whatever covers its pixel during the interval: an
        # object arriving (label at the end) or leaving (label at the start). Noise
        # events take the label of their pixel too, as mask look-ups do for real data.
        label_at_stop = current_labels[pixel_index]
        labels = np.where(label_at_stop != 0, label_at_stop, previous_labels[pixel_index])

        # Chunks cover disjoint time intervals, so sorting each one sorts the whole stream.
        order = np.argsort(time_us, kind="stable")
        pixel_chunks.append(pixel_index[order])
        time_chunks.append(time_us[order])
        polarity_chunks.append(polarity[order])
        label_chunks.append(labels[order])

        if step % steps_per_mask == 0 and step // steps_per_mask < mask_count:
            masks[step // steps_per_mask] = current_labels.reshape(config.height, config.width)
        previous_log, previous_labels = current_log, current_labels

        pending_progress += 1
        if progress is not None and (pending_progress == PROGRESS_EVERY_STEPS or step == step_count):
            progress(pending_progress)
            pending_progress = 0

    pixel_index = np.concatenate(pixel_chunks)
    time_us = np.concatenate(time_chunks)
    keep = time_us < config.duration_us  # a crossing at the very end belongs to no mask bin
    pixel_index = pixel_index[keep]
    events = make_events(
        pixel_index % config.width, pixel_index // config.width, time_us[keep], np.concatenate(polarity_chunks)[keep]
    )
    labels = np.concatenate(label_chunks)[keep].astype(np.uint8)

    meta = {
        "generator": "spikems_ros.simulation",
        "generator_version": GENERATOR_VERSION,
        "seed": config.seed,
        "sequence_index": sequence_index,
        "width": config.width,
        "height": config.height,
        "object_count": len(scene.objects),
        "duration_us": config.duration_us,
        "mask_interval_us": config.mask_interval_us,
        "mask_start_us": 0,
        "depth": "not rendered: the depth array is all zeros",
        "config": dataclasses.asdict(config),
        "scene": _scene_description(scene),
    }
    sequence = SyntheticSequence(
        events=events,
        labels=labels,
        masks=masks,
        mask_times_us=np.arange(mask_count, dtype=np.int64) * config.mask_interval_us,
        width=config.width,
        height=config.height,
        meta=_to_json_compatible(meta),
    )

    elapsed_s = time.perf_counter() - started
    LOG.info(
        "sequence %d: %d events (%.1f %% foreground), %d objects, %.2f s of compute for %.3f s of scene",
        sequence_index,
        events.shape[0],
        100.0 * foreground_fraction(labels),
        len(scene.objects),
        elapsed_s,
        config.duration_s,
    )
    return sequence


def foreground_fraction(labels: np.ndarray) -> float:
    """Return the fraction of events labelled with an object (0.0 when there are no events)."""
    if labels.shape[0] == 0:
        return 0.0
    return float(np.count_nonzero(labels)) / labels.shape[0]
