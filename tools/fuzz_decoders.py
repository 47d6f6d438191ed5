"""Coverage-guided fuzzing of the event payload decoders with atheris, for long runs.

The first input byte picks the decoder, the rest is the payload. Every decoder
must return events within its encoding's limits or raise DecodeError; any other
exception stops the run and libFuzzer writes the input to crash-<hash>.

    pip install -r requirements/fuzz.txt
    python tools/fuzz_decoders.py -max_total_time=600 -max_len=8192 [CORPUS_DIR]

Options are libFuzzer's (-runs, -max_total_time, -jobs, ...). A corpus folder
keeps the inputs that reached new code between runs.
"""

import sys

import atheris

with atheris.instrument_imports():
    import numpy as np

    from spikems_ros.events.dtype import EVENT_DTYPE
    from spikems_ros.events.errors import DecodeError
    from spikems_ros.events.evt2 import Evt2Decoder
    from spikems_ros.events.evt3 import Evt3Decoder
    from spikems_ros.events.libcaer import decode_libcaer, decode_libcaer_cmp
    from spikems_ros.events.mono import decode_mono
    from spikems_ros.events.packet import SUPPORTED_ENCODINGS, PacketDecoder

# Epoch time base of the stateless decoders' inputs (2023-11-14), in nanoseconds.
EPOCH_TIME_BASE_NS = 1_700_000_000_000_000_000

# Encoding -> maximum events per payload byte (a 2-byte VECT_12 word of EVT 3.0 carries 12).
EVENTS_PER_BYTE = {"evt3": 6, "evt2": 1 / 4, "mono": 1 / 8, "libcaer": 1 / 8, "libcaer_cmp": 4}

DECODERS = (
    ("evt3", lambda payload: Evt3Decoder().decode(payload).events),
    ("evt2", lambda payload: Evt2Decoder().decode(payload).events),
    ("mono", lambda payload: decode_mono(payload, EPOCH_TIME_BASE_NS)),
    ("libcaer", lambda payload: decode_libcaer(payload, EPOCH_TIME_BASE_NS)),
    ("libcaer_cmp", lambda payload: decode_libcaer_cmp(payload, EPOCH_TIME_BASE_NS)),
)


def decode_packet(data: bytes) -> None:
    """Decode through PacketDecoder with an encoding and time fields taken from the input."""
    provider = atheris.FuzzedDataProvider(data)
    encoding = SUPPORTED_ENCODINGS[provider.ConsumeIntInRange(0, len(SUPPORTED_ENCODINGS) - 1)]
    time_base_ns = provider.ConsumeIntInRange(0, (1 << 64) - 1)
    stamp_ns = provider.ConsumeIntInRange(0, (1 << 31) - 1) * 1_000_000_000
    payload = provider.ConsumeBytes(provider.remaining_bytes())
    try:
        decoded = PacketDecoder().decode(encoding, payload, time_base_ns=time_base_ns, stamp_ns=stamp_ns)
    except DecodeError:
        return
    check(encoding, payload, decoded.events)


def check(encoding: str, payload: bytes, events: np.ndarray) -> None:
    if events.dtype != EVENT_DTYPE:
        raise AssertionError(f"{encoding} returned dtype {events.dtype}")
    if events.size > len(payload) * EVENTS_PER_BYTE[encoding]:
        raise AssertionError(f"{encoding} returned {events.size} events from {len(payload)} bytes")


def test_one_input(data: bytes) -> None:
    if not data:
        return
    choice, payload = data[0] % (len(DECODERS) + 1), data[1:]
    if choice == len(DECODERS):
        decode_packet(payload)
        return

    encoding, decode = DECODERS[choice]
    try:
        events = decode(payload)
    except DecodeError as error:
        if error.encoding != encoding or not 0 <= error.offset_bytes <= len(payload):
            raise AssertionError(f"DecodeError names {error.encoding!r} at byte {error.offset_bytes}") from error
        return
    check(encoding, payload, events)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
