"""Event streams at a chosen event rate, made from a generated synthetic scene."""

import logging

import numpy as np

from spikems_ros.events.dtype import EVENT_DTYPE

LOG = logging.getLogger(__name__)

# Length of the generated scene. Longer streams repeat it; generation takes
# about 6 s per second of scene at 346x260 on one core.
# NOTE: shorter streams still generate the whole scene and cut it.
SCENE_SECONDS = 0.5


def scene_stream(width: int, height: int, rate_ev_s: float, seconds: float, seed: int = 1) -> np.ndarray:
    """Return ``seconds`` of events (EVENT_DTYPE, sorted by time, from t = 0) at about ``rate_ev_s`` events per second.

    A synthetic scene (spikems_ros.simulation) is generated once, then its time axis is
    scaled so that its mean rate becomes ``rate_ev_s``, as if the camera and the
    objects moved faster or slower. The scaled scene repeats until ``seconds`` are filled.
    """
    from spikems_ros.simulation import SceneConfig, simulate_sequence

    if not rate_ev_s > 0 or not seconds > 0:
        raise ValueError(f"rate {rate_ev_s!r} ev/s and length {seconds!r} s are invalid: expected numbers > 0")
    scene = simulate_sequence(SceneConfig(width=width, height=height, duration_s=SCENE_SECONDS, seed=seed), 0)
    if scene.events.shape[0] == 0:
        raise ValueError(f"the generated {width}x{height} scene has no events")

    scale = scene.events.shape[0] / SCENE_SECONDS / rate_ev_s  # > 1 slows the scene down
    scaled_length_us = max(int(round(SCENE_SECONDS * 1e6 * scale)), 1)
    scaled_times_us = (scene.events["t"] * scale).astype(np.int64)
    repeats = int(np.ceil(seconds * 1e6 / scaled_length_us))
    LOG.info("scene of %d events scaled by %.3f in time, played %d time(s)", scene.events.shape[0], scale, repeats)

    parts = []
    for repeat in range(repeats):
        part = np.empty(scene.events.shape[0], EVENT_DTYPE)
        for name in ("x", "y", "p"):
            part[name] = scene.events[name]
        part["t"] = scaled_times_us + repeat * scaled_length_us
        parts.append(part)
    events = np.concatenate(parts)
    return events[events["t"] < round(seconds * 1e6)]
