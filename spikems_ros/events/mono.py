"""The ``mono`` EventPacket encoding (deprecated in event_camera_msgs): one 64-bit word per event.

Word layout: bit 63 polarity, bits 48-62 y, bits 32-47 x, bits 0-31
nanoseconds after the message's time_base. Words are little-endian unless the
message sets is_bigendian.
"""

import numpy as np

from spikems_ros.events.dtype import EVENT_DTYPE
from spikems_ros.events.payload import (
    check_time_base_ns,
    decoding_time_base_ns,
    payload_words,
    validate_events,
)

ENCODING = "mono"
WORD_BYTES = 8

MAX_X = (1 << 16) - 1
MAX_Y = (1 << 15) - 1
MAX_OFFSET_NS = (1 << 32) - 1


def decode_mono(payload, time_base_ns: int, *, is_bigendian: bool = False) -> np.ndarray:
    """Decode a mono payload into events with t = (time_base_ns + offset_ns) // 1000 microseconds."""
    time_base_ns = decoding_time_base_ns(time_base_ns, ENCODING)
    words = payload_words(payload, ENCODING, WORD_BYTES, is_bigendian)

    events = np.empty(words.size, dtype=EVENT_DTYPE)
    events["p"] = words >> 63
    events["y"] = (words >> 48) & MAX_Y
    events["x"] = (words >> 32) & MAX_X
    events["t"] = (time_base_ns + (words & MAX_OFFSET_NS).astype(np.int64)) // 1000
    return events


def encode_mono(events: np.ndarray, time_base_ns: int, *, is_bigendian: bool = False) -> bytes:
    """Encode events as mono words relative to ``time_base_ns``.

    Each event's offset t * 1000 - time_base_ns must lie in [0, 2**32) ns, so one
    payload spans at most 4.29 s after its time base. Raises ValueError naming the
    first event that does not fit.
    """
    time_base_ns = check_time_base_ns(time_base_ns, ENCODING)
    events = validate_events(events, ENCODING, MAX_X, MAX_Y)

    t_us = events["t"].astype(np.int64)
    maximum_t_us = ((1 << 63) - 1) // 1000
    offsets_ns = np.where(t_us <= maximum_t_us, t_us, 0) * 1000 - time_base_ns
    bad = np.flatnonzero((t_us > maximum_t_us) | (offsets_ns < 0) | (offsets_ns > MAX_OFFSET_NS))
    if bad.size:
        index = int(bad[0])
        raise ValueError(
            f"cannot encode event {index} as {ENCODING}: t = {int(t_us[index])} us is not within "
            f"[0, 2**32) ns after time_base_ns {time_base_ns}; choose a time base at or "
            "before the first event and split longer streams into several payloads"
        )

    words = (
        (events["p"].astype(np.uint64) << np.uint64(63))
        | (events["y"].astype(np.uint64) << np.uint64(48))
        | (events["x"].astype(np.uint64) << np.uint64(32))
        | offsets_ns.astype(np.uint64)
    )
    byte_order = ">" if is_bigendian else "<"
    return words.astype(f"{byte_order}u8").tobytes()
