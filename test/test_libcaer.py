"""libcaer and libcaer_cmp payloads built from their byte layouts, with expected results."""

import numpy as np
import pytest

from spikems_ros.events.errors import DecodeError
from spikems_ros.events.libcaer import decode_libcaer, decode_libcaer_cmp

TIME_BASE_NS = 1_700_000_000_123_456_789


def libcaer_payload(events, byte_order: str = "<") -> bytes:
    """Pack (x, y, polarity, timestamp_us) tuples as libcaer polarity events."""
    records = np.empty(len(events), dtype=[("data", f"{byte_order}u4"), ("timestamp", f"{byte_order}i4")])
    for index, (x, y, polarity, timestamp_us) in enumerate(events):
        records[index] = ((x << 17) | (y << 2) | (polarity << 1) | 1, timestamp_us)
    return records.tobytes()


def cmp_words(*values: int) -> bytes:
    return np.array(values, dtype="<u2").tobytes()


def as_tuples(events: np.ndarray) -> list[tuple[int, int, int, int]]:
    return [(int(e["x"]), int(e["y"]), int(e["t"]), int(e["p"])) for e in events]


# ---------------------------------------------------------------- libcaer


def test_libcaer_known_answer():
    payload = libcaer_payload([(345, 259, 1, 10), (0, 0, 0, 11)])

    events = decode_libcaer(payload, TIME_BASE_NS)

    base_us = TIME_BASE_NS // 1000
    assert as_tuples(events) == [(345, 259, base_us + 10, 1), (0, 0, base_us + 11, 0)]


def test_libcaer_timestamp_wrap_inside_packet():
    payload = libcaer_payload([(1, 1, 0, (1 << 31) - 2), (2, 2, 1, 3)])

    events = decode_libcaer(payload, 0)

    assert [int(t) for t in events["t"]] == [(1 << 31) - 2, (1 << 31) + 3]


def test_libcaer_big_endian_payload():
    payload = libcaer_payload([(7, 8, 1, 9)], byte_order=">")

    events = decode_libcaer(payload, 0, is_bigendian=True)

    assert as_tuples(events) == [(7, 8, 9, 1)]


def test_libcaer_truncated_event_raises():
    with pytest.raises(DecodeError) as raised:
        decode_libcaer(libcaer_payload([(1, 1, 1, 1)]) + bytes(5), 0)

    assert raised.value.encoding == "libcaer"
    assert raised.value.offset_bytes == 8


def test_libcaer_negative_timestamp_raises():
    payload = libcaer_payload([(1, 1, 1, 5), (1, 1, 1, -3)])

    with pytest.raises(DecodeError) as raised:
        decode_libcaer(payload, 0)

    assert raised.value.encoding == "libcaer"
    assert raised.value.offset_bytes == 12


# ---------------------------------------------------------------- libcaer_cmp


def test_libcaer_cmp_known_answer():
    payload = cmp_words(
        0x2000 | 10,  # ADDR_X 10
        0x3000 | 0x800 | 5,  # ADDR_Y 5, polarity 1: event at offset 0
        0x1000 | 3,  # TIME_LOW 3 us
        0x4000 | 16,  # VECT_BASE_Y 16, polarity 0
        0x5000 | 0b101,  # VECT_8: y 16 and 18
        0x5000 | 0b1,  # VECT_8 after the base moved by 8: y 24
        0x0000 | 1,  # TIME_HIGH 1: offset 4096 + 3 us
        0x2000 | 11,  # ADDR_X 11
        0x3000 | 7,  # ADDR_Y 7, polarity 0
    )

    events = decode_libcaer_cmp(payload, TIME_BASE_NS)

    base_us = TIME_BASE_NS // 1000
    assert as_tuples(events) == [
        (10, 5, base_us, 1),
        (10, 16, base_us + 3, 0),
        (10, 18, base_us + 3, 0),
        (10, 24, base_us + 3, 0),
        (11, 7, base_us + 4099, 0),
    ]


def test_libcaer_cmp_time_offset_uses_nanosecond_base():
    payload = cmp_words(0x2000, 0x1000 | 1, 0x3000)

    events = decode_libcaer_cmp(payload, 1_999)

    # (1999 ns + 1 us) // 1000 = 2 us
    assert int(events["t"][0]) == 2


def test_libcaer_cmp_addr_y_before_addr_x_raises():
    with pytest.raises(DecodeError) as raised:
        decode_libcaer_cmp(cmp_words(0x1000 | 1, 0x3000 | 4), 0)

    assert raised.value.encoding == "libcaer_cmp"
    assert raised.value.offset_bytes == 2


def test_libcaer_cmp_vect8_before_base_raises():
    with pytest.raises(DecodeError) as raised:
        decode_libcaer_cmp(cmp_words(0x2000 | 1, 0x5000 | 1), 0)

    assert raised.value.offset_bytes == 2
    assert "VECT_BASE_Y" in str(raised.value)


@pytest.mark.parametrize("word_type", [6, 7, 0xA, 0xF])
def test_libcaer_cmp_unknown_word_type_raises(word_type):
    with pytest.raises(DecodeError) as raised:
        decode_libcaer_cmp(cmp_words(0x2000 | 1, word_type << 12), 0)

    assert raised.value.encoding == "libcaer_cmp"
    assert raised.value.offset_bytes == 2


def test_libcaer_cmp_odd_length_raises():
    with pytest.raises(DecodeError) as raised:
        decode_libcaer_cmp(cmp_words(0x2000 | 1) + b"\x00", 0)

    assert raised.value.offset_bytes == 2


def test_libcaer_cmp_y_beyond_11_bits_raises():
    with pytest.raises(DecodeError, match="2048"):
        decode_libcaer_cmp(cmp_words(0x2000, 0x4000 | 2040, 0x5000, 0x5000 | 1), 0)


def test_libcaer_second_wrap_raises():
    payload = libcaer_payload([(1, 1, 1, 100), (1, 1, 1, 5), (1, 1, 1, 9), (1, 1, 1, 2)])

    with pytest.raises(DecodeError) as raised:
        decode_libcaer(payload, 0)

    assert raised.value.offset_bytes == 3 * 8 + 4
    assert "second time" in str(raised.value)
