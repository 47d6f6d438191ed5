"""PacketDecoder: encodings, the time rule per encoding and the real EventPacket bags."""

import logging

import numpy as np
import pytest
from conftest import real_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikems_ros.events.dtype import EVENT_DTYPE, TRIGGER_DTYPE, make_events
from spikems_ros.events.errors import DecodeError
from spikems_ros.events.message_definitions import EVENT_PACKET_MSG
from spikems_ros.events.mono import encode_mono
from spikems_ros.events.packet import (
    SUPPORTED_ENCODINGS,
    PacketDecoder,
    encode_packet_payload,
    stamp_to_ns,
)

EPOCH_US = 1_700_000_000_000_000  # 2023-11-14, in microseconds since the Unix epoch


def stream_events(start_us: int, count: int, spacing_us: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    times_us = start_us + spacing_us * np.arange(count)
    return make_events(rng.integers(0, 640, count), rng.integers(0, 480, count), times_us, rng.integers(0, 2, count))


def read_event_packets(path, type_name: str):
    """Yield (message, stamp_ns) for every message of an EventPacket-like type in a ROS 2 bag."""
    rosbag2 = pytest.importorskip("rosbags.rosbag2")
    typesys = pytest.importorskip("rosbags.typesys")
    typestore = typesys.get_typestore(typesys.Stores.ROS2_HUMBLE)
    typestore.register(typesys.get_types_from_msg(EVENT_PACKET_MSG, type_name))
    with rosbag2.Reader(path) as reader:
        for connection, _, raw in reader.messages():
            message = typestore.deserialize_cdr(raw, connection.msgtype)
            yield message, stamp_to_ns(message.header.stamp.sec, message.header.stamp.nanosec)


def test_stamp_to_ns_combines_fields():
    assert stamp_to_ns(1675956550, 318678998) == 1_675_956_550_318_678_998


def test_stamp_to_ns_rejects_invalid_nanosec():
    with pytest.raises(ValueError, match="nanosec"):
        stamp_to_ns(1, 1_000_000_000)


@pytest.mark.parametrize("encoding", ["trigger", "EVT3", "evt2", ""])
def test_unsupported_encoding_raises(encoding):
    with pytest.raises(DecodeError) as raised:
        PacketDecoder().decode(encoding, b"", time_base_ns=0, stamp_ns=0)

    assert raised.value.offset_bytes == 0
    for supported in SUPPORTED_ENCODINGS:
        assert supported in str(raised.value)


def test_mono_with_epoch_time_base_uses_it():
    events = stream_events(EPOCH_US, 5, 10)
    payload, time_base_ns = encode_packet_payload("mono", events)

    decoded = PacketDecoder().decode("mono", payload, time_base_ns=time_base_ns, stamp_ns=(EPOCH_US + 777) * 1000)

    assert np.array_equal(decoded.events, events)


def test_libcaer_with_epoch_time_base_uses_it():
    record = np.array([((3 << 17) | (4 << 2) | (1 << 1), 25)], dtype=[("data", "<u4"), ("timestamp", "<i4")])

    decoded = PacketDecoder().decode(
        "libcaer", record.tobytes(), time_base_ns=EPOCH_US * 1000, stamp_ns=0
    )

    assert int(decoded.events["t"][0]) == EPOCH_US + 25


def test_evt3_packets_follow_sensor_clock_not_stamp_jitter():
    events = stream_events(EPOCH_US + 123, 300, 97)
    decoder = PacketDecoder()
    jitter_us = [0, 900, -400, 2500, 30]
    pieces = []
    previous_time_us = None
    for index, packet in enumerate(np.array_split(events, len(jitter_us))):
        payload, time_base_ns = encode_packet_payload("evt3", packet, previous_time_us=previous_time_us)
        stamp_ns = (int(packet["t"][0]) + jitter_us[index]) * 1000
        pieces.append(decoder.decode("evt3", payload, time_base_ns=time_base_ns, stamp_ns=stamp_ns).events)
        previous_time_us = int(packet["t"][-1])

    decoded = np.concatenate(pieces)

    assert time_base_ns == 0
    assert np.array_equal(decoded, events)
    assert decoder.reanchor_count == 0


def test_evt3_times_cross_counter_wraps():
    # Packets 5 s apart cross the 16.78 s counter wrap several times.
    events = stream_events(EPOCH_US, 12, 5_000_000)
    decoder = PacketDecoder()
    previous_time_us = None
    decoded = []
    for packet in np.array_split(events, 6):
        payload, time_base_ns = encode_packet_payload("evt3", packet, previous_time_us=previous_time_us)
        stamp_ns = int(packet["t"][0]) * 1000
        decoded.append(decoder.decode("evt3", payload, time_base_ns=time_base_ns, stamp_ns=stamp_ns).events)
        previous_time_us = int(packet["t"][-1])

    assert np.array_equal(np.concatenate(decoded), events)


def test_evt3_driver_restart_reanchors(caplog):
    decoder = PacketDecoder()
    first = stream_events(5_000_000, 10, 100)
    payload, _ = encode_packet_payload("evt3", first)
    decoder.decode("evt3", payload, time_base_ns=0, stamp_ns=EPOCH_US * 1000)

    # The restarted driver counts sensor time from 0 again while host time goes on.
    restarted = stream_events(0, 10, 100, seed=1)
    payload, _ = encode_packet_payload("evt3", restarted)
    with caplog.at_level(logging.WARNING, logger="spikems_ros.events.packet"):
        decoded = decoder.decode("evt3", payload, time_base_ns=0, stamp_ns=(EPOCH_US + 2000) * 1000)

    assert decoder.reanchor_count == 1
    assert int(decoded.events["t"][0]) == EPOCH_US + 2000
    assert "re-anchored" in caplog.text


def test_reset_reanchors_on_next_packet():
    decoder = PacketDecoder()
    events = stream_events(1000, 4, 10)
    payload, _ = encode_packet_payload("evt3", events)
    decoder.decode("evt3", payload, time_base_ns=0, stamp_ns=EPOCH_US * 1000)

    decoder.reset()
    decoded = decoder.decode("evt3", payload, time_base_ns=0, stamp_ns=(EPOCH_US + 10**7) * 1000)

    assert int(decoded.events["t"][0]) == EPOCH_US + 10**7
    assert decoder.reanchor_count == 0


def test_evt3_with_epoch_time_base_anchors_to_it():
    events = stream_events(3000, 4, 10)
    payload, _ = encode_packet_payload("evt3", events)

    decoded = PacketDecoder().decode("evt3", payload, time_base_ns=EPOCH_US * 1000, stamp_ns=0)

    assert int(decoded.events["t"][0]) == EPOCH_US


def test_mono_with_sensor_time_base_anchors_to_stamp():
    events = stream_events(0, 5, 10)
    payload = encode_mono(events, 0)

    decoded = PacketDecoder().decode("mono", payload, time_base_ns=0, stamp_ns=EPOCH_US * 1000)

    assert [int(t) for t in decoded.events["t"]] == [EPOCH_US + 10 * i for i in range(5)]


def test_empty_packets_leave_anchor_unset():
    decoder = PacketDecoder()

    decoded = decoder.decode("evt3", b"", time_base_ns=0, stamp_ns=EPOCH_US * 1000)

    assert decoded.events.size == 0
    assert decoder.offset_us is None


def test_invalid_evt3_payload_raises_decode_error():
    with pytest.raises(DecodeError) as raised:
        PacketDecoder().decode("evt3", b"\x00\x90", time_base_ns=0, stamp_ns=0)

    assert raised.value.encoding == "evt3"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SUPPORTED_ENCODINGS), st.binary(max_size=256), st.booleans(), st.booleans())
def test_random_bytes_decode_or_raise_decode_error(encoding, payload, is_bigendian, epoch_time_base):
    time_base_ns = EPOCH_US * 1000 if epoch_time_base else 0
    try:
        decoded = PacketDecoder().decode(
            encoding, payload, time_base_ns=time_base_ns, stamp_ns=EPOCH_US * 1000, is_bigendian=is_bigendian
        )
    except DecodeError as error:
        assert error.encoding == encoding
        assert 0 <= error.offset_bytes <= len(payload)
        return

    assert decoded.events.dtype == EVENT_DTYPE
    assert decoded.triggers.dtype == TRIGGER_DTYPE


def test_encode_packet_payload_rejects_libcaer():
    with pytest.raises(ValueError, match="evt3, mono"):
        encode_packet_payload("libcaer", stream_events(0, 1, 1))


def test_real_evt3_bag_decodes_in_host_time():
    packets = list(read_event_packets(real_file("test_events_1.db3"), "event_camera_msgs/msg/EventPacket"))
    decoder = PacketDecoder()

    event_chunks = []
    trigger_count = 0
    for message, stamp_ns in packets:
        assert message.encoding == "evt3"
        assert message.time_base == 0
        decoded = decoder.decode(
            message.encoding, message.events, time_base_ns=message.time_base,
            stamp_ns=stamp_ns, is_bigendian=message.is_bigendian,
        )
        event_chunks.append(decoded.events)
        trigger_count += decoded.triggers.size
        if decoded.events.size:
            # metavision_driver stamps a packet near its first event; the offset
            # fixed on the first packet keeps every packet within a few ms.
            assert abs(int(decoded.events["t"][0]) - stamp_ns // 1000) < 10_000

    events = np.concatenate(event_chunks)

    assert len(packets) == 517
    assert events.size == 343_474
    assert trigger_count == 4157
    assert decoder.reanchor_count == 0
    assert np.all(np.diff(events["t"]) >= 0)
    assert int(events["x"].max()) < 640
    assert int(events["y"].max()) < 480


def test_real_mono_bag_anchors_sensor_time_base():
    # This bag stores EventArray of event_array_msgs, the predecessor of
    # EventPacket with the same field list.
    packets = list(read_event_packets(real_file("test_data_mono_cd_0.db3"), "event_array_msgs/msg/EventArray"))
    decoder = PacketDecoder()

    decoded = [
        decoder.decode(m.encoding, m.events, time_base_ns=m.time_base, stamp_ns=stamp_ns).events
        for m, stamp_ns in packets
    ]

    assert [m.time_base for m, _ in packets] == [0, 50_000]
    assert int(decoded[0]["t"][0]) == 1_639_872_000_000_000
    assert int(decoded[1]["t"][0]) == 1_639_872_000_000_050
    assert (int(decoded[0]["x"][0]), int(decoded[0]["y"][0]), int(decoded[0]["p"][0])) == (320, 240, 0)
    assert decoded[0].size == 50
