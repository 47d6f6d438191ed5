"""EVT 2.0 decoder and encoder: hand-built words with expected results and round trips."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikems_ros.events.dtype import make_events
from spikems_ros.events.errors import DecodeError
from spikems_ros.events.evt2 import WRAP_US, Evt2Decoder, encode_evt2


def words(*values: int) -> bytes:
    """Pack 32-bit EVT 2.0 words as little-endian bytes."""
    return np.array(values, dtype="<u4").tobytes()


def time_high(value: int) -> int:
    return 0x8000_0000 | value


def cd(polarity: int, time_low: int, x: int, y: int) -> int:
    return (polarity << 28) | (time_low << 22) | (x << 11) | y


def trigger(time_low: int, channel: int, value: int) -> int:
    return 0xA000_0000 | (time_low << 22) | (channel << 8) | value


def as_tuples(events: np.ndarray) -> list[tuple[int, int, int, int]]:
    return [(int(e["x"]), int(e["y"]), int(e["t"]), int(e["p"])) for e in events]


def test_cd_words_decode_with_time_high():
    payload = words(time_high(10), cd(1, 5, 640, 480), cd(0, 63, 0, 2047))

    decoded = Evt2Decoder().decode(payload)

    assert as_tuples(decoded.events) == [(640, 480, 10 * 64 + 5, 1), (0, 2047, 10 * 64 + 63, 0)]


def test_trigger_words_become_triggers():
    payload = words(time_high(1), trigger(3, 1, 1), trigger(4, 0, 0))

    triggers = Evt2Decoder().decode(payload).triggers

    assert [int(t) for t in triggers["t"]] == [67, 68]
    assert [int(i) for i in triggers["id"]] == [1, 0]
    assert [int(v) for v in triggers["value"]] == [1, 0]


def test_events_before_time_high_are_dropped():
    decoder = Evt2Decoder()

    events = decoder.decode(words(cd(1, 0, 1, 1), trigger(0, 0, 1), time_high(2), cd(0, 1, 2, 2))).events

    assert as_tuples(events) == [(2, 2, 129, 0)]
    assert decoder.untimed_events_dropped == 1
    assert decoder.untimed_triggers_dropped == 1


def test_time_high_carries_across_packets():
    decoder = Evt2Decoder()
    decoder.decode(words(time_high(7)))

    events = decoder.decode(words(cd(1, 2, 3, 4))).events

    assert as_tuples(events) == [(3, 4, 7 * 64 + 2, 1)]


def test_time_high_wrap_is_unwrapped():
    decoder = Evt2Decoder()
    decoder.decode(words(time_high((1 << 28) - 1), cd(0, 0, 0, 0)))

    events = decoder.decode(words(time_high(0), cd(0, 9, 0, 0))).events

    assert int(events["t"][0]) == WRAP_US + 9


def test_others_and_continued_are_skipped():
    payload = words(time_high(0), 0xE000_1234, 0xF000_0001, cd(1, 0, 5, 6))

    assert as_tuples(Evt2Decoder().decode(payload).events) == [(5, 6, 0, 1)]


@pytest.mark.parametrize("reserved_type", [0x2, 0x7, 0x9, 0xB, 0xD])
def test_reserved_word_type_raises(reserved_type):
    payload = words(time_high(0), reserved_type << 28)

    with pytest.raises(DecodeError) as raised:
        Evt2Decoder().decode(payload)

    assert raised.value.encoding == "evt2"
    assert raised.value.offset_bytes == 4


def test_truncated_word_raises():
    with pytest.raises(DecodeError) as raised:
        Evt2Decoder().decode(words(time_high(0)) + b"\x00\x00")

    assert raised.value.encoding == "evt2"
    assert raised.value.offset_bytes == 4
    assert "truncated" in str(raised.value)


def test_encoder_rejects_unsorted_events():
    with pytest.raises(ValueError, match=r"t\[1\]"):
        encode_evt2(make_events([0, 0], [0, 0], [9, 8], [0, 0]))


def test_encoder_output_matches_hand_built_words():
    events = make_events([640, 0], [480, 2047], [645, 703], [1, 0])

    assert encode_evt2(events) == words(time_high(10), cd(1, 5, 640, 480), cd(0, 63, 0, 2047))


time_steps_us = st.one_of(st.just(0), st.integers(1, 100), st.integers(1, 1 << 40))


@st.composite
def sorted_event_streams(draw):
    size = draw(st.integers(0, 40))
    start_us = draw(st.integers(0, WRAP_US - 1))
    steps = draw(st.lists(time_steps_us, min_size=size, max_size=size))
    x = draw(st.lists(st.integers(0, 2047), min_size=size, max_size=size))
    y = draw(st.lists(st.integers(0, 2047), min_size=size, max_size=size))
    p = draw(st.lists(st.integers(0, 1), min_size=size, max_size=size))
    times_us = start_us + np.cumsum(np.array([0] + steps[1:], dtype=np.int64)) if size else []
    return make_events(x, y, times_us, p)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sorted_event_streams(), st.lists(st.integers(0, 40), max_size=5))
def test_identity_with_packets_encoded_separately(events, split_events):
    boundaries = sorted(set(min(split, events.size) for split in split_events) | {0, events.size})
    decoder = Evt2Decoder()
    pieces = []
    previous_time_us = None
    for start, end in zip(boundaries, boundaries[1:]):
        packet = events[start:end]
        pieces.append(decoder.decode(encode_evt2(packet, previous_time_us=previous_time_us)).events)
        previous_time_us = int(packet["t"][-1])

    decoded = np.concatenate(pieces) if pieces else events[:0]

    assert np.array_equal(decoded, events)
