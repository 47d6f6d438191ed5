"""The ``libcaer`` and ``libcaer_cmp`` EventPacket encodings of libcaer_driver (iniVation cameras).

``libcaer``: 8 bytes per event, a uint32 data word and an int32 timestamp in
microseconds, as libcaer's polarity events lie in memory. x = (data >> 17) &
0x7FFF, y = (data >> 2) & 0x7FFF, polarity = bit 1. The timestamp has 31 bits,
and a timestamp lower than its predecessor means it wrapped, which adds 2**31 us.
A second wrap in one payload raises DecodeError.
Time = time_base + timestamp * 1000 ns.

``libcaer_cmp``: 16-bit words with the word type in bits 12-15, as written by
libcaer_driver's compressed message converter and read by event_camera_codecs'
libcaer_cmp decoder (the layout below was taken from reading both sources):

====  ===========  ============================================================
type  name         content
====  ===========  ============================================================
0     TIME_HIGH    bits 12-23 of the time offset in bits 0-11
1     TIME_LOW     bits 0-11 of the time offset in bits 0-11
2     ADDR_X       x in bits 0-10; sets the column of the following events
3     ADDR_Y       y in bits 0-10, polarity in bit 11; one event at (x, y)
4     VECT_BASE_Y  y in bits 0-10, polarity in bit 11; base of later VECT_8
5     VECT_8       bit i set: event at (x, base + i); the base then moves by 8
====  ===========  ============================================================

The time offset is in microseconds from the payload's first event and restarts
at 0 in every payload, and time_base is nanoseconds since the epoch. So an
event's time is time_base + ((TIME_HIGH << 12) | TIME_LOW) * 1000 ns.

NOTE: event_camera_codecs names a VECT_12 type (6) but defines no layout and
never decodes it, and no known encoder writes it. Word types 6-15 therefore raise
DecodeError here.
"""

import numpy as np

from spikems_ros.events.dtype import EVENT_DTYPE
from spikems_ros.events.errors import DecodeError
from spikems_ros.events.payload import (
    POPCOUNT_12,
    decoding_time_base_ns,
    payload_bytes,
    payload_words,
    raise_at_first,
    set_bit_positions,
)

LIBCAER_ENCODING = "libcaer"
LIBCAER_CMP_ENCODING = "libcaer_cmp"

LIBCAER_EVENT_BYTES = 8
LIBCAER_TIMESTAMP_WRAP_US = 1 << 31
LIBCAER_COORDINATE_MASK = 0x7FFF

CMP_WORD_BYTES = 2
CMP_TIME_HIGH = 0
CMP_TIME_LOW = 1
CMP_ADDR_X = 2
CMP_ADDR_Y = 3
CMP_VECT_BASE_Y = 4
CMP_VECT_8 = 5
CMP_MAX_COORDINATE = (1 << 11) - 1


def decode_libcaer(payload, time_base_ns: int, *, is_bigendian: bool = False) -> np.ndarray:
    """Decode a libcaer payload into events with t in microseconds.

    NOTE: bit 0 of the data word (libcaer's valid mark) is not checked, as in
    event_camera_codecs, so events that libcaer invalidated are decoded too.
    """
    time_base_ns = decoding_time_base_ns(time_base_ns, LIBCAER_ENCODING)
    raw = payload_bytes(payload)
    remainder = raw.size % LIBCAER_EVENT_BYTES
    if remainder:
        raise DecodeError(
            LIBCAER_ENCODING,
            raw.size - remainder,
            f"payload length {raw.size} is not a multiple of {LIBCAER_EVENT_BYTES} bytes; "
            f"the last event is truncated to {remainder} byte(s)",
        )

    byte_order = ">" if is_bigendian else "<"
    record_dtype = np.dtype([("data", f"{byte_order}u4"), ("timestamp", f"{byte_order}i4")])
    records = raw.view(record_dtype)
    data = records["data"].astype(np.int64)
    timestamps_us = records["timestamp"].astype(np.int64)

    negative = np.flatnonzero(timestamps_us < 0)
    if negative.size:
        index = int(negative[0])
        raise DecodeError(
            LIBCAER_ENCODING,
            index * LIBCAER_EVENT_BYTES + 4,
            f"negative timestamp {int(timestamps_us[index])} us; libcaer timestamps are 31-bit",
        )

    # A payload covers milliseconds, so it can contain at most one wrap (the
    # timestamp wraps every 35.8 minutes). More wraps mean corrupt timestamps.
    wrapped = np.flatnonzero(timestamps_us[1:] < timestamps_us[:-1]) + 1
    if wrapped.size > 1:
        raise DecodeError(
            LIBCAER_ENCODING,
            int(wrapped[1]) * LIBCAER_EVENT_BYTES + 4,
            f"timestamp {int(timestamps_us[wrapped[1]])} us goes back a second time in one payload; "
            "expected at most one wrap of the 31-bit timestamp",
        )
    if wrapped.size:
        timestamps_us[wrapped[0]:] += LIBCAER_TIMESTAMP_WRAP_US

    events = np.empty(records.size, dtype=EVENT_DTYPE)
    events["x"] = (data >> 17) & LIBCAER_COORDINATE_MASK
    events["y"] = (data >> 2) & LIBCAER_COORDINATE_MASK
    events["p"] = (data >> 1) & 1
    events["t"] = (time_base_ns + timestamps_us * 1000) // 1000
    return events


def decode_libcaer_cmp(payload, time_base_ns: int, *, is_bigendian: bool = False) -> np.ndarray:
    """Decode a libcaer_cmp payload into events with t in microseconds.

    Each payload is decoded on its own, because the time offset restarts in every
    payload and libcaer_driver starts every payload with ADDR_X. Raises DecodeError
    for word types 6-15, for ADDR_Y before any ADDR_X, for VECT_8 before any
    VECT_BASE_Y and for y beyond the 11-bit range.
    """
    time_base_ns = decoding_time_base_ns(time_base_ns, LIBCAER_CMP_ENCODING)
    words = payload_words(payload, LIBCAER_CMP_ENCODING, CMP_WORD_BYTES, is_bigendian)
    if words.size == 0:
        return np.zeros(0, dtype=EVENT_DTYPE)

    word_types = words >> 12
    raise_at_first(
        word_types > CMP_VECT_8,
        LIBCAER_CMP_ENCODING,
        CMP_WORD_BYTES,
        lambda i: f"unknown word type {int(word_types[i])} in word {int(words[i]):#06x}; "
        "expected 0-5 (TIME_HIGH, TIME_LOW, ADDR_X, ADDR_Y, VECT_BASE_Y, VECT_8)",
    )

    values = (words & 0xFFF).astype(np.int64)
    time_high_positions = np.flatnonzero(word_types == CMP_TIME_HIGH)
    time_low_positions = np.flatnonzero(word_types == CMP_TIME_LOW)
    x_positions = np.flatnonzero(word_types == CMP_ADDR_X)
    base_positions = np.flatnonzero(word_types == CMP_VECT_BASE_Y)
    vector_positions = np.flatnonzero(word_types == CMP_VECT_8)
    event_positions = np.flatnonzero((word_types == CMP_ADDR_Y) | (word_types == CMP_VECT_8))

    # Time offset, x and vector base at each event word: the value of the last such
    # word at or before it. The offset starts at 0 in every payload.
    time_high_table = np.concatenate(([0], values[time_high_positions] << 12))
    time_low_table = np.concatenate(([0], values[time_low_positions]))
    offsets_us = (
        time_high_table[np.searchsorted(time_high_positions, event_positions, side="right")]
        + time_low_table[np.searchsorted(time_low_positions, event_positions, side="right")]
    )

    x_count = np.searchsorted(x_positions, event_positions, side="right")
    missing_x = np.flatnonzero(x_count == 0)
    if missing_x.size:
        position = int(event_positions[missing_x[0]])
        raise DecodeError(
            LIBCAER_CMP_ENCODING,
            position * CMP_WORD_BYTES,
            f"event word {int(words[position]):#06x} comes before any ADDR_X word",
        )
    x_table = np.concatenate(([0], values[x_positions] & CMP_MAX_COORDINATE))
    x_at_event = x_table[x_count]

    # ADDR_Y words carry y and polarity themselves. VECT_8 words take them from the
    # last VECT_BASE_Y, moved on by 8 for each VECT_8 since then.
    start_y = values[event_positions] & CMP_MAX_COORDINATE
    polarity = (values[event_positions] >> 11) & 1
    event_counts = np.ones(event_positions.size, dtype=np.int64)
    vector_rows = np.searchsorted(event_positions, vector_positions)
    if vector_positions.size:
        base_of_vector = np.searchsorted(base_positions, vector_positions, side="right")
        missing_base = np.flatnonzero(base_of_vector == 0)
        if missing_base.size:
            position = int(vector_positions[missing_base[0]])
            raise DecodeError(
                LIBCAER_CMP_ENCODING,
                position * CMP_WORD_BYTES,
                f"VECT_8 word {int(words[position]):#06x} comes before any VECT_BASE_Y word",
            )
        vectors_before_base = np.searchsorted(vector_positions, base_positions)
        base_values = values[base_positions]
        vector_index = np.arange(vector_positions.size)
        start_y[vector_rows] = (
            (base_values & CMP_MAX_COORDINATE)[base_of_vector - 1]
            + 8 * (vector_index - vectors_before_base[base_of_vector - 1])
        )
        polarity[vector_rows] = ((base_values >> 11) & 1)[base_of_vector - 1]
        event_counts[vector_rows] = POPCOUNT_12[values[vector_positions] & 0xFF]

    row_of_event = np.repeat(np.arange(event_positions.size), event_counts)  # (events,)
    y = start_y[row_of_event]
    if vector_positions.size:
        mask_rows, bits = set_bit_positions(values[vector_positions] & 0xFF, 8)
        vector_counts = event_counts[vector_rows]
        first_output = np.cumsum(event_counts) - event_counts
        rank_in_row = np.arange(mask_rows.size) - (np.cumsum(vector_counts) - vector_counts)[mask_rows]
        y[first_output[vector_rows[mask_rows]] + rank_in_row] += bits

    beyond = np.flatnonzero(y > CMP_MAX_COORDINATE)
    if beyond.size:
        position = int(event_positions[row_of_event[beyond[0]]])
        raise DecodeError(
            LIBCAER_CMP_ENCODING,
            position * CMP_WORD_BYTES,
            f"vector event y {int(y[beyond[0]])} exceeds the 11-bit maximum {CMP_MAX_COORDINATE}",
        )

    events = np.empty(row_of_event.size, dtype=EVENT_DTYPE)
    events["x"] = x_at_event[row_of_event]
    events["y"] = y
    events["p"] = polarity[row_of_event]
    events["t"] = (time_base_ns + offsets_us[row_of_event] * 1000) // 1000
    return events
