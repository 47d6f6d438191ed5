"""The one event representation used by every decoder, reader and consumer."""

import numpy as np

# x, y in pixels; t in microseconds; p = 1 for a brightness increase, 0 for a decrease.
EVENT_DTYPE = np.dtype([("x", np.uint16), ("y", np.uint16), ("t", np.int64), ("p", np.uint8)])

# External-trigger edges reported by the sensor: t in microseconds, channel id,
# value 1 for a rising edge and 0 for a falling edge.
TRIGGER_DTYPE = np.dtype([("t", np.int64), ("id", np.uint8), ("value", np.uint8)])


def empty_events(count: int = 0) -> np.ndarray:
    """Return a zero-filled event array of ``count`` events."""
    return np.zeros(count, dtype=EVENT_DTYPE)


def empty_triggers(count: int = 0) -> np.ndarray:
    """Return a zero-filled trigger array of ``count`` trigger edges."""
    return np.zeros(count, dtype=TRIGGER_DTYPE)


def make_events(x, y, t, p) -> np.ndarray:
    """Build an event array from four equally long sequences, casting each field."""
    x = np.asarray(x)
    count = x.shape[0]
    for name, values in (("y", y), ("t", t), ("p", p)):
        if np.shape(values) != (count,):
            raise ValueError(
                f"event field {name!r} has shape {np.shape(values)}, expected ({count},) like x"
            )
    events = np.empty(count, dtype=EVENT_DTYPE)
    events["x"] = x
    events["y"] = y
    events["t"] = t
    events["p"] = p
    return events
