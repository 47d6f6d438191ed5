"""The result of reading an event file, and the steps every reader ends with."""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikems_ros.events.dtype import EVENT_DTYPE, TRIGGER_DTYPE, empty_triggers

LOG = logging.getLogger(__name__)

# Sensor resolutions (width, height) of cameras that recorded the supported
# datasets, tried smallest first when a file stores no resolution: DAVIS240,
# DVXplorer Lite, DAVIS346, DVXplorer and Samsung DVS Gen3, Prophesee IMX636.
KNOWN_SENSOR_RESOLUTIONS = ((240, 180), (320, 240), (346, 260), (640, 480), (1280, 720))


@dataclass(frozen=True, eq=False)
class Recording:
    """Events and optional ground truth read from one file or folder."""

    events: np.ndarray  # (N,) EVENT_DTYPE, sorted by t in microseconds
    width: int  # sensor width in pixels
    height: int  # sensor height in pixels
    format_name: str  # detected format, e.g. "rosbag2-sqlite3" or "evimo-npz"
    triggers: np.ndarray = field(default_factory=empty_triggers)  # (M,) TRIGGER_DTYPE, sorted by t
    masks: np.ndarray | None = None  # (F, height, width) uint16 object ids, 0 = background
    mask_times_us: np.ndarray | None = None  # (F,) int64 time of each mask in microseconds
    topic: str | None = None  # bag topic the events came from; None for other formats
    source: Path | None = None  # file or folder that was read

    def __post_init__(self):
        if self.events.dtype != EVENT_DTYPE or self.events.ndim != 1:
            raise TypeError(
                f"Recording.events must be a 1-D EVENT_DTYPE array, "
                f"got dtype {self.events.dtype} with shape {self.events.shape}"
            )
        if self.triggers.dtype != TRIGGER_DTYPE or self.triggers.ndim != 1:
            raise TypeError(
                f"Recording.triggers must be a 1-D TRIGGER_DTYPE array, "
                f"got dtype {self.triggers.dtype} with shape {self.triggers.shape}"
            )
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"Recording resolution {self.width}x{self.height} must be positive")
        if (self.masks is None) != (self.mask_times_us is None):
            raise ValueError("Recording.masks and Recording.mask_times_us must be given together")
        if self.masks is not None:
            expected_shape = (len(self.mask_times_us), self.height, self.width)
            if self.masks.shape != expected_shape or self.masks.dtype != np.uint16:
                raise ValueError(
                    f"Recording.masks has dtype {self.masks.dtype} and shape {self.masks.shape}, "
                    f"expected uint16 with shape {expected_shape} (frames, height, width)"
                )


def seconds_to_us(times_s: np.ndarray) -> np.ndarray:
    """Convert times in seconds to int64 microseconds, rounding to the nearest microsecond."""
    return np.rint(np.asarray(times_s, dtype=np.float64) * 1e6).astype(np.int64)


def guess_resolution(events: np.ndarray) -> tuple[int, int]:
    """Return the smallest known sensor (width, height) that contains every event.

    Falls back to the largest coordinates plus one when no known sensor is big
    enough. An empty recording gets the smallest known sensor.
    """
    if len(events) == 0:
        return KNOWN_SENSOR_RESOLUTIONS[0]
    max_x = int(events["x"].max())
    max_y = int(events["y"].max())
    for width, height in KNOWN_SENSOR_RESOLUTIONS:
        if max_x < width and max_y < height:
            return width, height
    return max_x + 1, max_y + 1


def sort_by_time(array: np.ndarray, item_name: str, source) -> np.ndarray:
    """Return ``array`` stably sorted by its ``t`` field, logging when the order changed."""
    times = array["t"]
    if len(times) < 2 or bool(np.all(times[1:] >= times[:-1])):
        return array
    backward_steps = int(np.count_nonzero(times[1:] < times[:-1]))
    LOG.info("%s: sorted %d %s by time (%d steps backwards in file order)",
             source, len(array), item_name, backward_steps)
    return array[np.argsort(times, kind="stable")]


def finish_recording(
    events: np.ndarray,
    width: int,
    height: int,
    format_name: str,
    source,
    *,
    triggers: np.ndarray | None = None,
    masks: np.ndarray | None = None,
    mask_times_us: np.ndarray | None = None,
    topic: str | None = None,
) -> Recording:
    """Sort events and triggers by time, report events outside the sensor, build the Recording.

    Events outside ``width`` x ``height`` are kept and counted in a warning,
    because offline tools must not lose data; the binner drops them later.
    """
    events = sort_by_time(events, "events", source)
    if triggers is None:
        triggers = empty_triggers()
    triggers = sort_by_time(triggers, "triggers", source)

    outside = (events["x"] >= width) | (events["y"] >= height)
    outside_count = int(np.count_nonzero(outside))
    if outside_count:
        LOG.warning(
            "%s: %d of %d events lie outside the %dx%d sensor (max x %d, max y %d); "
            "they are kept",
            source, outside_count, len(events), width, height,
            int(events["x"].max()), int(events["y"].max()),
        )

    return Recording(
        events=events,
        width=int(width),
        height=int(height),
        format_name=format_name,
        triggers=triggers,
        masks=masks,
        mask_times_us=mask_times_us,
        topic=topic,
        source=Path(source),
    )
