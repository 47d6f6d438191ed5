"""mono encoding: bit layout, round trips, big-endian payloads and malformed payloads."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikems_ros.events.dtype import make_events
from spikems_ros.events.errors import DecodeError
from spikems_ros.events.mono import decode_mono, encode_mono

TIME_BASE_NS = 1_700_000_000_000_000_000


def test_bit_layout_known_answer():
    word = (1 << 63) | (479 << 48) | (639 << 32) | 2500
    payload = np.array([word], dtype="<u8").tobytes()

    events = decode_mono(payload, TIME_BASE_NS)

    assert int(events["p"][0]) == 1
    assert int(events["y"][0]) == 479
    assert int(events["x"][0]) == 639
    assert int(events["t"][0]) == (TIME_BASE_NS + 2500) // 1000


def test_offset_rounds_down_to_microseconds():
    payload = np.array([999, 1000, 1999], dtype="<u8").tobytes()

    events = decode_mono(payload, 0)

    assert [int(t) for t in events["t"]] == [0, 1, 1]


def test_big_endian_payload_decodes():
    word = (345 << 32) | 7000
    big_endian = np.array([word], dtype=">u8").tobytes()

    events = decode_mono(big_endian, 0, is_bigendian=True)

    assert int(events["x"][0]) == 345
    assert int(events["t"][0]) == 7


def test_truncated_word_raises():
    with pytest.raises(DecodeError) as raised:
        decode_mono(bytes(12), 0)

    assert raised.value.encoding == "mono"
    assert raised.value.offset_bytes == 8


def test_negative_time_base_raises():
    with pytest.raises(ValueError, match="time_base_ns"):
        decode_mono(b"", -1)


def test_encoder_rejects_event_before_time_base():
    events = make_events([0], [0], [999], [0])

    with pytest.raises(ValueError, match="event 0"):
        encode_mono(events, 1_000_000)


def test_encoder_rejects_offset_beyond_32_bits():
    events = make_events([0, 0], [0, 0], [0, 4_294_968], [0, 1])

    with pytest.raises(ValueError, match="event 1"):
        encode_mono(events, 0)


def test_encoder_rejects_y_beyond_15_bits():
    with pytest.raises(ValueError, match="y = 32768"):
        encode_mono(make_events([0], [32768], [0], [0]), 0)


@st.composite
def event_sets(draw):
    """Random events within 2**32 ns of a time base, in any order, duplicates included."""
    size = draw(st.integers(0, 50))
    start_us = draw(st.integers(0, 10**15))
    offsets_us = draw(st.lists(st.integers(0, 4_294_966), min_size=size, max_size=size))
    x = draw(st.lists(st.integers(0, 65535), min_size=size, max_size=size))
    y = draw(st.lists(st.integers(0, 32767), min_size=size, max_size=size))
    p = draw(st.lists(st.integers(0, 1), min_size=size, max_size=size))
    times_us = start_us + np.array(offsets_us, dtype=np.int64)
    return make_events(x, y, times_us, p), start_us


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_sets(), st.booleans())
def test_encode_decode_identity(event_set, is_bigendian):
    events, start_us = event_set
    time_base_ns = start_us * 1000

    payload = encode_mono(events, time_base_ns, is_bigendian=is_bigendian)
    decoded = decode_mono(payload, time_base_ns, is_bigendian=is_bigendian)

    assert np.array_equal(decoded, events)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(event_sets(), st.lists(st.integers(0, 50), max_size=5))
def test_identity_with_packets_split_anywhere(event_set, split_events):
    events, _ = event_set
    events = np.sort(events, order="t", kind="stable")
    boundaries = sorted(set(min(split, events.size) for split in split_events) | {0, events.size})

    pieces = []
    for start, end in zip(boundaries, boundaries[1:]):
        packet = events[start:end]
        time_base_ns = int(packet["t"][0]) * 1000
        pieces.append(decode_mono(encode_mono(packet, time_base_ns), time_base_ns))

    decoded = np.concatenate(pieces) if pieces else events[:0]

    assert np.array_equal(decoded, events)
