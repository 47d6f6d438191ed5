"""Fuzzing of the payload decoders: random bytes and mutated valid packets.

Every decoder must return events of EVENT_DTYPE, within its encoding's
coordinate range and at most as many as the payload size allows, or raise
DecodeError naming its encoding and a byte offset inside the payload. A
rejected payload leaves a stateful decoder as it was.
"""

import numpy as np
import pytest
from conftest import REAL_DATA_DIR
from hypothesis import given
from hypothesis import strategies as st

from spikems_ros.events.dtype import EVENT_DTYPE, TRIGGER_DTYPE
from spikems_ros.events.errors import DecodeError
from spikems_ros.events.evt2 import Evt2Decoder
from spikems_ros.events.evt3 import Evt3Decoder
from spikems_ros.events.libcaer import decode_libcaer, decode_libcaer_cmp
from spikems_ros.events.mono import decode_mono
from spikems_ros.events.packet import SUPPORTED_ENCODINGS, PacketDecoder

from .fuzz_tally import fuzz_input, fuzz_settings
from .seed_packets import all_seeds

# Examples per decoder and input kind. Seven decoders, two kinds: about 5,000
# inputs, which take about 20 s on two CPU cores.
MAX_EXAMPLES = 350
MAX_RANDOM_BYTES = 2048

FUZZ_SETTINGS = fuzz_settings(MAX_EXAMPLES)

# Epoch time base of the stateless decoders' inputs (2023-11-14), in nanoseconds.
EPOCH_TIME_BASE_NS = 1_700_000_000_000_000_000

# Encoding -> (maximum x, maximum y, maximum events per payload byte).
LIMITS = {
    "evt3": (2047, 2047, 6),  # a 2-byte VECT_12 word carries up to 12 events
    "evt2": (2047, 2047, 1 / 4),
    "mono": (65535, 32767, 1 / 8),
    "libcaer": (0x7FFF, 0x7FFF, 1 / 8),
    "libcaer_cmp": (2047, 2047, 4),  # a 2-byte VECT_8 word carries up to 8 events
}


class StatefulTarget:
    """A decoder with stream state: the state before a rejected payload must survive it."""

    def __init__(self, encoding: str, decoder):
        self.encoding = encoding
        self.decoder = decoder

    def state(self) -> dict:
        return dict(vars(self.decoder))

    def decode(self, payload: bytes):
        return self.decoder.decode(payload)


class StatelessTarget:
    def __init__(self, encoding: str, function):
        self.encoding = encoding
        self.function = function

    def state(self) -> dict:
        return {}

    def decode(self, payload: bytes):
        return self.function(payload, EPOCH_TIME_BASE_NS), None


TARGETS = {
    "evt3": lambda: StatefulTarget("evt3", Evt3Decoder()),
    "evt2": lambda: StatefulTarget("evt2", Evt2Decoder()),
    "mono": lambda: StatelessTarget("mono", decode_mono),
    "libcaer": lambda: StatelessTarget("libcaer", decode_libcaer),
    "libcaer_cmp": lambda: StatelessTarget("libcaer_cmp", decode_libcaer_cmp),
}


@pytest.fixture(scope="module")
def seeds() -> dict[str, list[bytes]]:
    return all_seeds(REAL_DATA_DIR)


@st.composite
def mutated(draw, payloads: list[bytes]) -> bytes:
    """One of ``payloads`` after one to four bit flips, truncations, splices, insertions or repeats."""
    payload = bytearray(draw(st.sampled_from(payloads)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "splice", "insert", "repeat"]))
        position = draw(st.integers(0, len(payload)))
        if kind == "flip" and payload:
            index = min(position, len(payload) - 1)
            payload[index] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del payload[position:]
        elif kind == "splice":
            donor = draw(st.sampled_from(payloads))
            start = draw(st.integers(0, len(donor)))
            payload[position:] = donor[start:start + draw(st.integers(0, 512))]
        elif kind == "insert":
            payload[position:position] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "repeat":
            length = draw(st.integers(1, 64))
            payload[position:position] = payload[position:position + length]
    return bytes(payload)


def check_decoded(encoding: str, payload: bytes, events: np.ndarray) -> None:
    max_x, max_y, events_per_byte = LIMITS[encoding]
    assert events.dtype == EVENT_DTYPE
    assert events.size <= len(payload) * events_per_byte, f"{events.size} events from {len(payload)} bytes"
    if events.size:
        assert int(events["x"].max()) <= max_x
        assert int(events["y"].max()) <= max_y
        assert int(events["p"].max()) <= 1


def check_rejection(encoding: str, payload: bytes, error: DecodeError) -> None:
    assert error.encoding == encoding
    assert 0 <= error.offset_bytes <= len(payload)
    assert f"invalid {encoding} payload at byte {error.offset_bytes}" in str(error)


def feed(target, payload: bytes, target_name: str) -> None:
    """Decode one payload and check the result or the rejection."""
    with fuzz_input(target_name):
        state_before = target.state()
        try:
            decoded = target.decode(payload)
        except DecodeError as error:
            check_rejection(target.encoding, payload, error)
            assert target.state() == state_before, "a rejected payload changed the decoder state"
            return
        events, triggers = decoded
        check_decoded(target.encoding, payload, events)
        if triggers is not None:
            assert triggers.dtype == TRIGGER_DTYPE


@pytest.mark.parametrize("encoding", sorted(TARGETS))
def test_random_bytes(encoding):
    target = TARGETS[encoding]()

    @FUZZ_SETTINGS
    @given(payloads=st.lists(st.binary(max_size=MAX_RANDOM_BYTES), min_size=1, max_size=3))
    def run(payloads):
        # Several payloads in a row, so stream state from one reaches the next.
        for payload in payloads:
            feed(target, payload, f"{encoding} random")

    run()


@pytest.mark.parametrize("encoding", sorted(TARGETS))
def test_mutated_packets(encoding, seeds):
    target = TARGETS[encoding]()
    payloads = seeds[encoding]

    @FUZZ_SETTINGS
    @given(data=st.data())
    def run(data):
        # A valid packet first sets the stream state that the mutated one meets.
        feed(target, data.draw(st.sampled_from(payloads)), f"{encoding} mutated")
        feed(target, data.draw(mutated(payloads)), f"{encoding} mutated")

    run()


@FUZZ_SETTINGS
@given(
    encoding=st.sampled_from(SUPPORTED_ENCODINGS + ("", "EVT3", "trigger", "mono ")),
    payload=st.binary(max_size=MAX_RANDOM_BYTES),
    time_base_ns=st.integers(0, (1 << 64) - 1),
    stamp_s=st.integers(0, (1 << 31) - 1),
    is_bigendian=st.booleans(),
)
def test_packet_decoder_fields(encoding, payload, time_base_ns, stamp_s, is_bigendian):
    decoder = PacketDecoder()
    with fuzz_input("PacketDecoder fields"):
        try:
            decoded = decoder.decode(
                encoding, payload, time_base_ns=time_base_ns, stamp_ns=stamp_s * 1_000_000_000,
                is_bigendian=is_bigendian,
            )
        except DecodeError as error:
            assert error.encoding == encoding
            assert 0 <= error.offset_bytes <= len(payload)
            return
        assert encoding in SUPPORTED_ENCODINGS
        check_decoded(encoding, payload, decoded.events)
        assert decoded.triggers.dtype == TRIGGER_DTYPE


def test_time_base_beyond_int64_rejected():
    with pytest.raises(DecodeError, match=r"invalid mono payload at byte 0: mono time_base_ns"):
        decode_mono(b"", (1 << 64) - 1)
