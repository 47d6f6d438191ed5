"""Prophesee EVT 2.0 decoder (stateful, one per event stream) and encoder.

EVT 2.0 is a stream of 32-bit words with the word type in bits 28-31. The
layout below follows Prophesee's "EVT 2.0 Format" page (Metavision SDK docs):

====  =============  ======================================================
type  name           content
====  =============  ======================================================
0x0   CD_OFF         time bits 0-5 in bits 22-27, x in 11-21, y in 0-10
0x1   CD_ON          as CD_OFF, polarity 1
0x8   EVT_TIME_HIGH  time bits 6-33 in bits 0-27
0xA   EXT_TRIGGER    time bits 0-5 in bits 22-27, channel id in 8-12, value in 0
0xE   OTHERS         vendor data, skipped
0xF   CONTINUED      vendor data, skipped
====  =============  ======================================================

All other types are reserved and raise DecodeError. The 34-bit microsecond
time wraps every 2**34 us (4 h 46 min); the decoder counts wraps.
"""

import numpy as np

from spikems_ros.events.dtype import EVENT_DTYPE, TRIGGER_DTYPE
from spikems_ros.events.payload import (
    DecodedPayload,
    check_bridging_word_count,
    check_sorted_by_time,
    empty_payload,
    payload_words,
    raise_at_first,
    validate_events,
    unwrap_time_high,
)

ENCODING = "evt2"
WORD_BYTES = 4

CD_OFF = 0x0
CD_ON = 0x1
EVT_TIME_HIGH = 0x8
EXT_TRIGGER = 0xA
OTHERS = 0xE
CONTINUED = 0xF
KNOWN_TYPE_TABLE = np.isin(np.arange(16), (CD_OFF, CD_ON, EVT_TIME_HIGH, EXT_TRIGGER, OTHERS, CONTINUED))

TIME_LOW_BITS = 6
TIME_HIGH_MASK = (1 << 28) - 1
WRAP_US = 1 << 34

# An EVT_TIME_HIGH value lower than the previous one by more than half its range
# is a wrap of the 34-bit time, and a smaller drop is taken as it is.
TIME_HIGH_WRAP_MIN_DROP = 1 << 27

# Consecutive EVT_TIME_HIGH words written by the encoder differ by less than this,
# so the decoder detects every wrap.
ENCODER_MAX_TIME_HIGH_STEP = TIME_HIGH_WRAP_MIN_DROP - 1

MAX_COORDINATE = (1 << 11) - 1


class Evt2Decoder:
    """Decode EVT 2.0 payloads of one stream, packet after packet.

    The time high bits carry over from one payload to the next. Event and
    trigger times are sensor microseconds with wraps counted from epoch 0.
    Events and triggers before the first EVT_TIME_HIGH word have no time; they
    are dropped and counted in ``untimed_events_dropped`` and
    ``untimed_triggers_dropped``.
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        """Forget all stream state, as at the start of a new stream."""
        # wraps * 2**34 + EVT_TIME_HIGH value * 64, in microseconds.
        self._time_high_us: int | None = None
        self.untimed_events_dropped = 0
        self.untimed_triggers_dropped = 0

    def decode(self, payload, *, is_bigendian: bool = False) -> DecodedPayload:
        """Decode one payload and return its events and trigger edges in stream order."""
        words = payload_words(payload, ENCODING, WORD_BYTES, is_bigendian)
        if words.size == 0:
            return empty_payload()

        word_types = words >> 28
        raise_at_first(
            ~KNOWN_TYPE_TABLE[word_types],
            ENCODING,
            WORD_BYTES,
            lambda i: f"reserved word type {int(word_types[i]):#x} in word {int(words[i]):#010x}",
        )

        time_high_positions = np.flatnonzero(word_types == EVT_TIME_HIGH)
        time_high_us = self._unwrap_time_high((words[time_high_positions] & TIME_HIGH_MASK).astype(np.int64))
        time_high_table = np.concatenate(([self._time_high_us or 0], time_high_us))

        def time_at(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            high_count = np.searchsorted(time_high_positions, positions, side="right")
            low_us = (words[positions] >> 22).astype(np.int64) & 0x3F
            timed = (high_count > 0) | (self._time_high_us is not None)
            return time_high_table[high_count] + low_us, timed

        event_positions = np.flatnonzero((word_types == CD_OFF) | (word_types == CD_ON))
        times_us, timed = time_at(event_positions)
        event_words = words[event_positions][timed]
        self.untimed_events_dropped += int(timed.size - event_words.size)
        events = np.empty(event_words.size, dtype=EVENT_DTYPE)
        events["x"] = (event_words >> 11) & MAX_COORDINATE
        events["y"] = event_words & MAX_COORDINATE
        events["t"] = times_us[timed]
        events["p"] = event_words >> 28

        trigger_positions = np.flatnonzero(word_types == EXT_TRIGGER)
        times_us, timed = time_at(trigger_positions)
        trigger_words = words[trigger_positions][timed]
        self.untimed_triggers_dropped += int(timed.size - trigger_words.size)
        triggers = np.empty(trigger_words.size, dtype=TRIGGER_DTYPE)
        triggers["t"] = times_us[timed]
        triggers["id"] = (trigger_words >> 8) & 0x1F
        triggers["value"] = trigger_words & 1

        if time_high_us.size:
            self._time_high_us = int(time_high_us[-1])
        return DecodedPayload(events, triggers)

    def _unwrap_time_high(self, time_high_values: np.ndarray) -> np.ndarray:
        """Return wraps * 2**34 + value * 64 for each EVT_TIME_HIGH value, counting wraps."""
        return unwrap_time_high(
            time_high_values, self._time_high_us, low_bits=TIME_LOW_BITS, high_mask=TIME_HIGH_MASK,
            wrap_us=WRAP_US, wrap_min_drop=TIME_HIGH_WRAP_MIN_DROP,
        )


def encode_evt2(events: np.ndarray, *, previous_time_us: int | None = None) -> bytes:
    """Encode events sorted by t as little-endian EVT 2.0 words.

    An EVT_TIME_HIGH word starts the payload and precedes every event whose time
    bits 6-33 differ from the previous event's. Over gaps longer than 2.4 h, and
    from ``previous_time_us`` (the last time encoded for this stream, if any),
    extra EVT_TIME_HIGH words let the decoder count every wrap. Raises ValueError
    when events are not sorted by t or do not fit the format (x, y up to 2047).
    """
    events = validate_events(events, ENCODING, MAX_COORDINATE, MAX_COORDINATE)
    count = events.size
    if count == 0:
        return b""

    t = events["t"].astype(np.int64)
    check_sorted_by_time(t, ENCODING)
    if previous_time_us is not None and not 0 <= previous_time_us <= t[0]:
        raise ValueError(
            f"previous_time_us {previous_time_us} is after the first event time {int(t[0])} "
            "or negative; expected the last time encoded for this stream"
        )

    time_high = t >> TIME_LOW_BITS  # (events,) not wrapped
    previous_high = np.empty_like(time_high)
    previous_high[1:] = time_high[:-1]
    previous_high[0] = time_high[0] if previous_time_us is None else previous_time_us >> TIME_LOW_BITS
    high_word_counts = -(-(time_high - previous_high) // ENCODER_MAX_TIME_HIGH_STEP)
    high_word_counts[0] = max(high_word_counts[0], 1)
    check_bridging_word_count(int(high_word_counts.sum()), ENCODING)

    word_counts = high_word_counts + 1
    first_word = np.cumsum(word_counts) - word_counts
    words = np.empty(int(word_counts.sum()), dtype=np.uint32)

    owner = np.repeat(np.arange(count), high_word_counts)
    step_number = (
        np.arange(owner.size)
        - np.repeat(np.cumsum(high_word_counts) - high_word_counts, high_word_counts)
        + 1
    )
    high_values = np.minimum(previous_high[owner] + ENCODER_MAX_TIME_HIGH_STEP * step_number, time_high[owner])
    words[first_word[owner] + step_number - 1] = (EVT_TIME_HIGH << 28) | (high_values & TIME_HIGH_MASK)

    words[first_word + high_word_counts] = (
        (events["p"].astype(np.int64) << 28)
        | ((t & 0x3F) << 22)
        | (events["x"].astype(np.int64) << 11)
        | events["y"].astype(np.int64)
    )
    return words.astype("<u4").tobytes()
