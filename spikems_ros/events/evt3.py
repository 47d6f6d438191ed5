"""Prophesee EVT 3.0 decoder (stateful, one per event stream) and encoder.

EVT 3.0 is a stream of 16-bit words with the word type in bits 12-15. The
layout below follows Prophesee's "EVT 3.0 Format" page (Metavision SDK docs):

====  ===========  =========================================================
type  name         content
====  ===========  =========================================================
0x0   ADDR_Y       y in bits 0-10 (bit 11, master/slave system type, ignored)
0x2   ADDR_X       x in bits 0-10, polarity in bit 11; one event at (x, y)
0x3   VECT_BASE_X  x in bits 0-10, polarity in bit 11; base of later vectors
0x4   VECT_12      bit i set: event at base + i; the base then advances by 12
0x5   VECT_8       bits 0-7 as VECT_12; the base then advances by 8
0x6   TIME_LOW     bits 0-11 of the 24-bit microsecond counter
0x7   CONTINUED_4  vendor data, skipped
0x8   TIME_HIGH    bits 12-23 of the counter
0xA   EXT_TRIGGER  edge value in bit 0, channel id in bits 8-11
0xE   OTHERS       vendor data, skipped
0xF   CONTINUED_12 vendor data, skipped
====  ===========  =========================================================

Types 0x1, 0x9, 0xB, 0xC and 0xD are reserved and raise DecodeError.
The counter wraps every 2**24 us (16.78 s); the decoder counts wraps so that
its times keep increasing across packets.
"""

import numpy as np

from spikems_ros.events.dtype import EVENT_DTYPE, TRIGGER_DTYPE
from spikems_ros.events.errors import DecodeError
from spikems_ros.events.payload import (
    POPCOUNT_12,
    DecodedPayload,
    check_bridging_word_count,
    check_sorted_by_time,
    empty_payload,
    payload_words,
    raise_at_first,
    set_bit_positions,
    validate_events,
    unwrap_time_high,
)

ENCODING = "evt3"
WORD_BYTES = 2

ADDR_Y = 0x0
ADDR_X = 0x2
VECT_BASE_X = 0x3
VECT_12 = 0x4
VECT_8 = 0x5
TIME_LOW = 0x6
CONTINUED_4 = 0x7
TIME_HIGH = 0x8
EXT_TRIGGER = 0xA
OTHERS = 0xE
CONTINUED_12 = 0xF
RESERVED_TYPES = (0x1, 0x9, 0xB, 0xC, 0xD)

TIME_LOW_BITS = 12
WRAP_US = 1 << 24
TIME_HIGH_STEPS = 1 << 12

# A TIME_HIGH value lower than the previous one by more than half its range is a
# counter wrap. A smaller drop is taken as a glitch and not unwrapped, because
# sensors can repeat a slightly older TIME_HIGH without wrapping.
TIME_HIGH_WRAP_MIN_DROP = TIME_HIGH_STEPS // 2

# The encoder never lets consecutive TIME_HIGH words differ by this many steps
# (8.4 s) or more, so every wrap shows up as a drop larger than half the range.
ENCODER_MAX_TIME_HIGH_STEP = TIME_HIGH_WRAP_MIN_DROP - 1

MAX_COORDINATE = (1 << 11) - 1


RESERVED_TYPE_TABLE = np.isin(np.arange(16), RESERVED_TYPES)


class Evt3Decoder:
    """Decode EVT 3.0 payloads of one stream, packet after packet.

    TIME_HIGH, TIME_LOW, y, the vector base x and its polarity carry over from
    one payload to the next, so payloads must be fed in stream order. Event and
    trigger times are sensor microseconds, TIME_HIGH * 4096 + TIME_LOW plus
    2**24 per counter wrap; the first wrap epoch is 0. Events and triggers seen
    before both a TIME_HIGH and a TIME_LOW word have no time; they are dropped
    and counted in ``untimed_events_dropped`` and ``untimed_triggers_dropped``.

    A TIME_LOW value lower than the previous one does not advance TIME_HIGH:
    the format lets TIME_LOW go back when several sources share one TIME_HIGH,
    and the sensor sends a new TIME_HIGH word when the counter crosses 4096 us.
    """

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        """Forget all stream state, as at the start of a new stream."""
        # Upper part of the time in microseconds: wraps * 2**24 + TIME_HIGH * 4096.
        self._time_high_us: int | None = None
        self._time_low_us: int | None = None
        self._y = 0
        self._vector_base_x = 0
        self._vector_polarity = 0
        self.untimed_events_dropped = 0
        self.untimed_triggers_dropped = 0

    def decode(self, payload, *, is_bigendian: bool = False) -> DecodedPayload:
        """Decode one payload and return its events and trigger edges in stream order."""
        words = payload_words(payload, ENCODING, WORD_BYTES, is_bigendian)
        if words.size == 0:
            return empty_payload()

        word_types = words >> 12
        raise_at_first(
            RESERVED_TYPE_TABLE[word_types],
            ENCODING,
            WORD_BYTES,
            lambda i: f"reserved word type {int(word_types[i]):#x} in word {int(words[i]):#06x}",
        )

        # Each kind of state word, by position. The state at a word is the value of
        # the last state word at or before it, found with searchsorted(side="right").
        time_high_positions = np.flatnonzero(word_types == TIME_HIGH)
        time_low_positions = np.flatnonzero(word_types == TIME_LOW)
        y_positions = np.flatnonzero(word_types == ADDR_Y)
        base_positions = np.flatnonzero(word_types == VECT_BASE_X)
        vector_positions = np.flatnonzero((word_types == VECT_12) | (word_types == VECT_8))
        event_positions = np.flatnonzero(
            (word_types == ADDR_X) | (word_types == VECT_12) | (word_types == VECT_8)
        )
        trigger_positions = np.flatnonzero(word_types == EXT_TRIGGER)

        time_high_us = self._unwrap_time_high((words[time_high_positions] & 0xFFF).astype(np.int64))
        time_low_us = (words[time_low_positions] & 0xFFF).astype(np.int64)
        time_high_table = np.concatenate(([self._time_high_us or 0], time_high_us))
        time_low_table = np.concatenate(([self._time_low_us or 0], time_low_us))

        def time_at(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            high_count = np.searchsorted(time_high_positions, positions, side="right")
            low_count = np.searchsorted(time_low_positions, positions, side="right")
            times_us = time_high_table[high_count] + time_low_table[low_count]
            has_high = (high_count > 0) | (self._time_high_us is not None)
            has_low = (low_count > 0) | (self._time_low_us is not None)
            return times_us, has_high & has_low

        y_table = np.concatenate(([self._y], words[y_positions] & MAX_COORDINATE)).astype(np.int64)
        y_at_event = y_table[np.searchsorted(y_positions, event_positions, side="right")]

        # Vector state: VECT_BASE_X sets x and polarity, then each VECT_12 or VECT_8
        # moves x on by 12 or 8. Moves are counted from the start of the payload.
        vector_words = words[vector_positions]
        vector_steps = np.where((vector_words >> 12) == VECT_12, 12, 8)
        steps_before = np.concatenate(([0], np.cumsum(vector_steps)))
        base_words = words[base_positions].astype(np.int64)
        base_x_table = np.concatenate(([self._vector_base_x], base_words & MAX_COORDINATE))
        base_polarity_table = np.concatenate(([self._vector_polarity], (base_words >> 11) & 1))
        base_steps_table = np.concatenate(
            ([0], steps_before[np.searchsorted(vector_positions, base_positions)])
        )
        base_of_vector = np.searchsorted(base_positions, vector_positions, side="right")
        vector_start_x = (
            base_x_table[base_of_vector] + steps_before[:-1] - base_steps_table[base_of_vector]
        )
        vector_polarity = base_polarity_table[base_of_vector]

        events = self._expand_events(
            words, event_positions, y_at_event, time_at,
            vector_positions, vector_start_x, vector_polarity,
        )
        triggers = self._decode_triggers(words, trigger_positions, time_at)

        # Carry the state over to the next payload.
        if time_high_us.size:
            self._time_high_us = int(time_high_us[-1])
        if time_low_us.size:
            self._time_low_us = int(time_low_us[-1])
        self._y = int(y_table[-1])
        self._vector_base_x = int(base_x_table[-1] + steps_before[-1] - base_steps_table[-1])
        self._vector_polarity = int(base_polarity_table[-1])

        return DecodedPayload(events, triggers)

    def _unwrap_time_high(self, time_high_values: np.ndarray) -> np.ndarray:
        """Return wraps * 2**24 + value * 4096 for each TIME_HIGH value, counting wraps."""
        return unwrap_time_high(
            time_high_values, self._time_high_us, low_bits=TIME_LOW_BITS, high_mask=(TIME_HIGH_STEPS - 1),
            wrap_us=WRAP_US, wrap_min_drop=TIME_HIGH_WRAP_MIN_DROP,
        )

    def _expand_events(
        self, words, event_positions, y_at_event, time_at,
        vector_positions, vector_start_x, vector_polarity,
    ) -> np.ndarray:
        """Expand ADDR_X, VECT_12 and VECT_8 words into events, dropping untimed ones."""
        if event_positions.size == 0:
            return np.zeros(0, dtype=EVENT_DTYPE)

        event_words = words[event_positions].astype(np.int64)
        start_x = event_words & MAX_COORDINATE
        polarity = (event_words >> 11) & 1
        event_counts = np.ones(event_positions.size, dtype=np.int64)

        # Vector words among the event words: their x comes from the vector state and
        # they emit one event per set bit, in bit order.
        vector_rows = np.searchsorted(event_positions, vector_positions)
        vector_words = event_words[vector_rows]
        vector_masks = np.where((vector_words >> 12) == VECT_12, vector_words & 0xFFF, vector_words & 0xFF)
        start_x[vector_rows] = vector_start_x
        polarity[vector_rows] = vector_polarity
        event_counts[vector_rows] = POPCOUNT_12[vector_masks]

        row_of_event = np.repeat(np.arange(event_positions.size), event_counts)  # (events,)
        x = start_x[row_of_event]
        if vector_rows.size:
            mask_rows, bits = set_bit_positions(vector_masks, 12)
            vector_counts = event_counts[vector_rows]
            first_output = np.cumsum(event_counts) - event_counts
            rank_in_row = np.arange(mask_rows.size) - (np.cumsum(vector_counts) - vector_counts)[mask_rows]
            x[first_output[vector_rows[mask_rows]] + rank_in_row] += bits

        beyond = np.flatnonzero(x > MAX_COORDINATE)
        if beyond.size:
            position = int(event_positions[row_of_event[beyond[0]]])
            raise DecodeError(
                ENCODING,
                position * WORD_BYTES,
                f"vector event x {int(x[beyond[0]])} exceeds the EVT 3.0 maximum {MAX_COORDINATE}",
            )

        times_us, timed = time_at(event_positions)
        events = np.empty(row_of_event.size, dtype=EVENT_DTYPE)
        events["x"] = x
        events["y"] = y_at_event[row_of_event]
        events["t"] = times_us[row_of_event]
        events["p"] = polarity[row_of_event]
        if timed.all():
            return events

        keep = timed[row_of_event]
        self.untimed_events_dropped += int(keep.size - np.count_nonzero(keep))
        return events[keep]

    def _decode_triggers(self, words, trigger_positions, time_at) -> np.ndarray:
        """Return the timed EXT_TRIGGER edges, counting the untimed ones."""
        times_us, timed = time_at(trigger_positions)
        self.untimed_triggers_dropped += int(timed.size - np.count_nonzero(timed))

        trigger_words = words[trigger_positions][timed]
        triggers = np.empty(trigger_words.size, dtype=TRIGGER_DTYPE)
        triggers["t"] = times_us[timed]
        triggers["id"] = (trigger_words >> 8) & 0xF
        triggers["value"] = trigger_words & 1
        return triggers


def encode_evt3(events: np.ndarray, *, previous_time_us: int | None = None) -> bytes:
    """Encode events sorted by t as little-endian EVT 3.0 words.

    The payload starts with TIME_HIGH, TIME_LOW and ADDR_Y words, so it does not
    depend on the decoder state left by earlier payloads, except for counter
    wraps. Times are written modulo 2**24 us. Between two events, and from
    ``previous_time_us`` (the last time encoded for this stream, if any) to the
    first event, the encoder adds TIME_HIGH words at most 8.4 s apart, so the
    decoder counts every wrap even over long gaps. A fresh Evt3Decoder therefore
    returns the original times when the first event of the stream has
    t < 2**24; later times come back exactly because the wraps are counted.

    Events of one time, row and polarity with increasing x inside one aligned
    12-pixel block become VECT_BASE_X + VECT_12 words, and the others ADDR_X
    words. Decoding returns them in the input order. Raises ValueError when
    events are not sorted by t or do not fit the format (x, y up to 2047).
    """
    events = validate_events(events, ENCODING, MAX_COORDINATE, MAX_COORDINATE)
    count = events.size
    if count == 0:
        return b""

    t = events["t"].astype(np.int64)
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    p = events["p"].astype(np.int64)
    check_sorted_by_time(t, ENCODING)
    if previous_time_us is not None and not 0 <= previous_time_us <= t[0]:
        raise ValueError(
            f"previous_time_us {previous_time_us} is after the first event time {int(t[0])} "
            "or negative; expected the last time encoded for this stream"
        )

    # TIME_HIGH words before each event: none while the value stays the same,
    # otherwise enough to walk from the previous value in bounded steps.
    time_high = t >> TIME_LOW_BITS  # (events,) steps since t = 0, not wrapped
    previous_high = np.empty_like(time_high)
    previous_high[1:] = time_high[:-1]
    previous_high[0] = time_high[0] if previous_time_us is None else previous_time_us >> TIME_LOW_BITS
    high_word_counts = -(-(time_high - previous_high) // ENCODER_MAX_TIME_HIGH_STEP)
    high_word_counts[0] = max(high_word_counts[0], 1)
    check_bridging_word_count(int(high_word_counts.sum()), ENCODING)

    is_first = np.zeros(count, dtype=bool)
    is_first[0] = True
    time_changed = is_first.copy()
    time_changed[1:] = t[1:] != t[:-1]
    y_changed = is_first.copy()
    y_changed[1:] = y[1:] != y[:-1]

    # Runs of events that one VECT_12 word can carry: same time, row and polarity,
    # strictly increasing x inside one 12-pixel block aligned on a multiple of 12.
    block = x // 12
    continues_run = np.zeros(count, dtype=bool)
    continues_run[1:] = (
        ~time_changed[1:]
        & ~y_changed[1:]
        & (p[1:] == p[:-1])
        & (block[1:] == block[:-1])
        & (x[1:] > x[:-1])
    )
    run_starts = np.flatnonzero(~continues_run)
    run_lengths = np.diff(np.append(run_starts, count))
    run_of_event = np.cumsum(~continues_run) - 1
    in_vector = (run_lengths >= 2)[run_of_event]

    vector_run_starts = run_starts[run_lengths >= 2]
    vector_masks = np.bitwise_or.reduceat(1 << (x - block * 12), run_starts)[run_lengths >= 2]
    # A run right after the previous vector run's block, with the same polarity,
    # reuses the base that the previous VECT_12 advanced, so it needs no VECT_BASE_X.
    run_block = block[vector_run_starts]
    run_polarity = p[vector_run_starts]
    needs_base = np.ones(vector_run_starts.size, dtype=bool)
    needs_base[1:] = ~((run_block[1:] == run_block[:-1] + 1) & (run_polarity[1:] == run_polarity[:-1]))

    event_word_counts = (~in_vector).astype(np.int64)
    event_word_counts[vector_run_starts] = 1 + needs_base
    word_counts = high_word_counts + time_changed + y_changed + event_word_counts
    first_word = np.cumsum(word_counts) - word_counts
    words = np.empty(int(word_counts.sum()), dtype=np.uint16)

    owner = np.repeat(np.arange(count), high_word_counts)
    step_number = np.arange(owner.size) - np.repeat(np.cumsum(high_word_counts) - high_word_counts, high_word_counts) + 1
    high_values = np.minimum(previous_high[owner] + ENCODER_MAX_TIME_HIGH_STEP * step_number, time_high[owner])
    words[first_word[owner] + step_number - 1] = (TIME_HIGH << 12) | (high_values & 0xFFF)
    cursor = first_word + high_word_counts

    changed = np.flatnonzero(time_changed)
    words[cursor[changed]] = (TIME_LOW << 12) | (t[changed] & 0xFFF)
    cursor += time_changed

    changed = np.flatnonzero(y_changed)
    words[cursor[changed]] = (ADDR_Y << 12) | y[changed]
    cursor += y_changed

    single = np.flatnonzero(~in_vector)
    words[cursor[single]] = (ADDR_X << 12) | (p[single] << 11) | x[single]

    with_base = vector_run_starts[needs_base]
    words[cursor[with_base]] = (VECT_BASE_X << 12) | (p[with_base] << 11) | (block[with_base] * 12)
    words[cursor[vector_run_starts] + needs_base] = (VECT_12 << 12) | vector_masks

    return words.astype("<u2").tobytes()
