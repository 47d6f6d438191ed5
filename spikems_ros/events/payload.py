"""Result type and byte-level helpers shared by the event payload codecs."""

from typing import NamedTuple

import numpy as np

from spikems_ros.events.dtype import EVENT_DTYPE, TRIGGER_DTYPE
from spikems_ros.events.errors import DecodeError


class DecodedPayload(NamedTuple):
    """Events and external-trigger edges decoded from one payload, both in payload order."""

    events: np.ndarray  # EVENT_DTYPE, t in microseconds
    triggers: np.ndarray  # TRIGGER_DTYPE, t in microseconds


def empty_payload() -> DecodedPayload:
    """Return a DecodedPayload with no events and no triggers."""
    return DecodedPayload(np.zeros(0, EVENT_DTYPE), np.zeros(0, TRIGGER_DTYPE))


def payload_bytes(payload) -> np.ndarray:
    """View a payload as a 1-D uint8 array without copying where possible.

    Accepts bytes, bytearray, memoryview, array.array and numpy arrays of 1-byte
    items (rosbags returns ``uint8[]`` fields as numpy arrays).
    """
    if isinstance(payload, np.ndarray):
        if payload.dtype.itemsize != 1 or payload.ndim != 1:
            raise TypeError(
                f"payload array has dtype {payload.dtype} and shape {payload.shape}, "
                "expected a 1-D array of uint8"
            )
        return np.ascontiguousarray(payload).view(np.uint8)

    try:
        view = memoryview(payload)
    except TypeError:
        raise TypeError(
            f"payload of type {type(payload).__name__} is not bytes-like, "
            "expected bytes, bytearray, memoryview, array.array or a uint8 numpy array"
        ) from None
    return np.frombuffer(view.cast("B"), dtype=np.uint8)


def payload_words(payload, encoding: str, word_bytes: int, is_bigendian: bool) -> np.ndarray:
    """Split a payload into unsigned words of ``word_bytes`` bytes in the stated byte order.

    Raises DecodeError at the offset of the incomplete last word when the payload
    length is not a multiple of the word size.
    """
    raw = payload_bytes(payload)
    remainder = raw.size % word_bytes
    if remainder:
        complete_bytes = raw.size - remainder
        raise DecodeError(
            encoding,
            complete_bytes,
            f"payload length {raw.size} is not a multiple of the {word_bytes}-byte word size; "
            f"the last word is truncated to {remainder} byte(s)",
        )

    byte_order = ">" if is_bigendian else "<"
    return raw.view(np.dtype(f"{byte_order}u{word_bytes}"))


def raise_at_first(mask: np.ndarray, encoding: str, word_bytes: int, describe) -> None:
    """Raise DecodeError at the first word where ``mask`` is true, if any.

    ``describe(index)`` returns the reason text for the word at that index.
    """
    bad = np.flatnonzero(mask)
    if bad.size:
        index = int(bad[0])
        raise DecodeError(encoding, index * word_bytes, describe(index))


# Largest time_base accepted: event offsets up to 2**32 ns (mono) or 2**31 us
# (libcaer) are added to it, and the sum must fit int64 nanoseconds.
MAX_TIME_BASE_NS = (1 << 63) - (1 << 52)


def _time_base_problem(time_base_ns: int, encoding: str) -> str | None:
    if 0 <= time_base_ns <= MAX_TIME_BASE_NS:
        return None
    return (
        f"{encoding} time_base_ns {time_base_ns} is outside [0, {MAX_TIME_BASE_NS}]; "
        "expected nanoseconds as a uint64 message field"
    )


def check_time_base_ns(time_base_ns, encoding: str) -> int:
    """Return ``time_base_ns`` as an int for an encoder, raising ValueError when it does not fit int64 times."""
    time_base_ns = int(time_base_ns)
    problem = _time_base_problem(time_base_ns, encoding)
    if problem:
        raise ValueError(problem)
    return time_base_ns


def decoding_time_base_ns(time_base_ns, encoding: str) -> int:
    """Return a received ``time_base_ns`` as an int, raising DecodeError when it does not fit int64 times.

    The error points at byte 0 of the payload, because the message's time_base
    field, not a payload byte, is invalid.
    """
    time_base_ns = int(time_base_ns)
    problem = _time_base_problem(time_base_ns, encoding)
    if problem:
        raise DecodeError(encoding, 0, problem)
    return time_base_ns


def set_bit_positions(masks: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (row, bit) index arrays of the set bits among the low ``width`` bits of ``masks``.

    Rows come in ascending order and bits ascend within a row, which is the order
    in which vector words list their events.
    """
    bit_numbers = np.arange(width, dtype=masks.dtype)
    bits = ((masks[:, None] >> bit_numbers) & 1).astype(bool)  # (rows, width)
    rows, columns = np.nonzero(bits)
    return rows, columns


# Number of set bits of every 12-bit value, for counting the events of vector words.
POPCOUNT_12 = np.array([bin(value).count("1") for value in range(1 << 12)], dtype=np.int64)


def validate_events(events, encoding: str, max_x: int, max_y: int) -> np.ndarray:
    """Check an event array before encoding and return it as a numpy array.

    Raises TypeError for arrays without the x, y, t, p fields and ValueError naming
    the first event whose coordinate, polarity or time the encoding cannot hold.
    """
    events = np.asarray(events)
    names = events.dtype.names or ()
    missing = [name for name in ("x", "y", "t", "p") if name not in names]
    if missing or events.ndim != 1:
        raise TypeError(
            f"events have dtype {events.dtype} and shape {events.shape}, "
            "expected a 1-D structured array with fields x, y, t, p (EVENT_DTYPE)"
        )

    limits = (("x", 0, max_x), ("y", 0, max_y), ("p", 0, 1), ("t", 0, None))
    for name, minimum, maximum in limits:
        values = events[name].astype(np.int64)
        out_of_range = values < minimum
        if maximum is not None:
            out_of_range |= values > maximum
        bad = np.flatnonzero(out_of_range)
        if bad.size:
            index = int(bad[0])
            accepted = f"[{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
            raise ValueError(
                f"cannot encode event {index} as {encoding}: {name} = {int(values[index])}, "
                f"expected {accepted}"
            )

    return events


# Limit on the TIME_HIGH words an encoder adds to bridge gaps between events:
# 8 MiB of EVT 3.0 words, which bridge about 1.1 years.
MAX_BRIDGING_TIME_HIGH_WORDS = 1 << 22


def check_bridging_word_count(word_count: int, encoding: str) -> None:
    """Raise ValueError when bridging the gaps between events needs too many TIME_HIGH words."""
    if word_count > MAX_BRIDGING_TIME_HIGH_WORDS:
        raise ValueError(
            f"cannot encode events as {encoding}: the gaps between event times need "
            f"{word_count} time words, more than the limit {MAX_BRIDGING_TIME_HIGH_WORDS}; "
            "check that t is in microseconds and previous_time_us belongs to this stream"
        )


def check_sorted_by_time(times_us: np.ndarray, encoding: str) -> None:
    """Raise ValueError naming the first event whose time is earlier than its predecessor's."""
    unsorted = np.flatnonzero(np.diff(times_us) < 0)
    if unsorted.size:
        index = int(unsorted[0]) + 1
        raise ValueError(
            f"cannot encode events as {encoding}: events must be sorted by t, but "
            f"t[{index}] = {int(times_us[index])} is earlier than t[{index - 1}] = "
            f"{int(times_us[index - 1])}"
        )


def unwrap_time_high(
    time_high_values: np.ndarray,
    previous_time_high_us: int | None,
    *,
    low_bits: int,
    high_mask: int,
    wrap_us: int,
    wrap_min_drop: int,
) -> np.ndarray:
    """Return wraps * wrap_us + value << low_bits for each time-high value, counting counter wraps.

    ``previous_time_high_us`` is the last unwrapped time-high of the stream (None at
    its start). A drop of more than ``wrap_min_drop`` between consecutive values is a
    wrap of the counter; smaller drops are glitches and do not count.
    """
    if time_high_values.size == 0:
        return np.zeros(0, dtype=np.int64)

    if previous_time_high_us is None:
        previous_value = time_high_values[0]
        previous_wraps = 0
    else:
        previous_value = (previous_time_high_us >> low_bits) & high_mask
        previous_wraps = previous_time_high_us // wrap_us

    sequence = np.concatenate(([previous_value], time_high_values))
    drops = sequence[:-1] - sequence[1:]
    wraps = previous_wraps + np.cumsum(drops > wrap_min_drop)
    return wraps * wrap_us + (time_high_values << low_bits)
