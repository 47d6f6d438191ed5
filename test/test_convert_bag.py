"""spikems convert-bag: event-array bags written here with rosbags, converted and read back."""

import json
import logging

import numpy as np
import pytest
from conftest import real_file
from rosbags.highlevel import AnyReader
from rosbags.rosbag1 import Writer as Ros1Writer
from rosbags.rosbag2 import StoragePlugin
from rosbags.rosbag2 import Writer as Ros2Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from spikems_ros.bags.convert import convert_event_bag, event_packets, packet_slices
from spikems_ros.bags.source import header_frame_id
from spikems_ros.bags.types import output_typestore
from spikems_ros.bags.writer import OutputExistsError
from spikems_ros.cli import main
from spikems_ros.events.dtype import make_events
from spikems_ros.events.errors import FileFormatError
from spikems_ros.events.message_definitions import EVENT_MESSAGE_DEFINITIONS
from spikems_ros.events.packet import PacketDecoder
from spikems_ros.events.readers import read_file

DVS_ARRAY = "dvs_msgs/msg/EventArray"
PROPHESEE_ARRAY = "prophesee_event_msgs/msg/EventArray"
EVENT_PACKET = "event_camera_msgs/msg/EventPacket"
STRING = "std_msgs/msg/String"

WIDTH, HEIGHT = 346, 260
FRAME_ID = "dvs_camera"


def source_events():
    """Events over 40 s, so evt3's 24-bit microsecond counter (16.78 s) wraps between packets.

    Across the 20 s gap before the last burst the counter value still rises
    although it wrapped, so only the time state carried between packets keeps
    the times right. Several events share one microsecond, and the reversed
    messages make the reader sort.
    """
    rng = np.random.default_rng(5)
    bursts = [10_000_000, 10_000_400, 10_000_999, 10_001_000, 10_003_500, 17_000_000, 26_900_000, 30_000_123,
              50_000_000]
    times = np.concatenate([burst + np.sort(rng.integers(0, 3, size=7)) for burst in bursts])
    count = times.shape[0]
    return make_events(
        x=rng.integers(0, WIDTH, count), y=rng.integers(0, HEIGHT, count), t=times, p=rng.integers(0, 2, count)
    )


def event_typestore(ros1: bool):
    store = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_KILTED)
    types = {}
    for name, text in EVENT_MESSAGE_DEFINITIONS.items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


def array_messages(store, message_type: str, ros1: bool, events: np.ndarray, per_message: int):
    """Split events into EventArray messages, each in reverse time order, so the reader must sort."""
    Time = store.types["builtin_interfaces/msg/Time"]
    Header = store.types["std_msgs/msg/Header"]
    Event = store.types[message_type.replace("EventArray", "Event")]
    messages = []
    for start in range(0, events.shape[0], per_message):
        chunk = events[start : start + per_message][::-1]
        items = [
            Event(x=int(e["x"]), y=int(e["y"]), ts=Time(sec=int(e["t"]) // 1_000_000,
                  nanosec=int(e["t"]) % 1_000_000 * 1000 + 999), polarity=bool(e["p"]))
            for e in chunk
        ]
        stamp = Time(sec=int(chunk["t"].max()) // 1_000_000, nanosec=0)
        header = Header(seq=len(messages), stamp=stamp, frame_id=FRAME_ID) if ros1 else Header(
            stamp=stamp, frame_id=FRAME_ID)
        messages.append(store.types[message_type](header=header, height=HEIGHT, width=WIDTH, events=items))
    return messages


def write_event_bag(path, kind: str, message_type: str = DVS_ARRAY, events=None, *, with_strings=True,
                    event_topic="/dvs/events"):
    """Write a bag of ``kind`` 'ros1', 'sqlite3' or 'mcap' with an event topic and a /chatter String topic."""
    ros1 = kind == "ros1"
    store = event_typestore(ros1)
    events = source_events() if events is None else events
    messages = array_messages(store, message_type, ros1, events, per_message=10)
    serialize = store.serialize_ros1 if ros1 else store.serialize_cdr
    if ros1:
        writer = Ros1Writer(path)
    else:
        plugin = StoragePlugin.MCAP if kind == "mcap" else StoragePlugin.SQLITE3
        writer = Ros2Writer(path, version=9, storage_plugin=plugin)
    with writer:
        connection = writer.add_connection(event_topic, message_type, typestore=store)
        for index, message in enumerate(messages):
            writer.write(connection, 10**9 * (10 + index), serialize(message, message_type))
        if with_strings:
            chatter = writer.add_connection("/chatter", STRING, typestore=store)
            for index in range(3):
                message = store.types[STRING](data=f"hello {index}")
                writer.write(chatter, 10**9 * (10 + 5 * index) + 1, serialize(message, STRING))
    return path


def bag_path(tmp_path, kind: str, name="input"):
    return tmp_path / (f"{name}.bag" if kind == "ros1" else name)


def read_packets(path, topic="/dvs/events"):
    """Return (bag timestamp, EventPacket) pairs of ``topic`` in bag order."""
    with AnyReader([path], default_typestore=output_typestore()) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        return [(timestamp, reader.deserialize(raw, c.msgtype))
                for c, timestamp, raw in reader.messages(connections=connections)]


def stamp_us(message) -> int:
    return message.header.stamp.sec * 1_000_000 + message.header.stamp.nanosec // 1000


@pytest.mark.parametrize("message_type", [DVS_ARRAY, PROPHESEE_ARRAY])
@pytest.mark.parametrize("kind", ["ros1", "sqlite3", "mcap"])
@pytest.mark.parametrize("encoding", ["evt3", "mono"])
def test_converted_events_identical(tmp_path, kind, message_type, encoding):
    source = write_event_bag(bag_path(tmp_path, kind), kind, message_type)
    output = tmp_path / "converted"

    summary = convert_event_bag(source, output, encoding=encoding)

    original = read_file(source)
    converted = read_file(output)
    expected = source_events()
    expected = expected[np.argsort(expected["t"], kind="stable")]
    np.testing.assert_array_equal(np.sort(original.events, order=["t", "x", "y", "p"]),
                                  np.sort(expected, order=["t", "x", "y", "p"]))
    np.testing.assert_array_equal(converted.events, original.events)
    assert converted.format_name == "rosbag2-sqlite3"
    assert (converted.width, converted.height) == (WIDTH, HEIGHT)
    assert converted.topic == "/dvs/events"
    assert summary.events == expected.shape[0]
    assert summary.input_type == message_type


@pytest.mark.parametrize("encoding", ["evt3", "mono"])
def test_packets_stamped_and_counted(tmp_path, encoding):
    source = write_event_bag(bag_path(tmp_path, "sqlite3"), "sqlite3")
    output = tmp_path / "converted"

    summary = convert_event_bag(source, output, encoding=encoding)
    packets = read_packets(output)

    events = read_file(source).events
    millisecond_slots = np.unique(events["t"] // 1000)
    assert summary.packets == len(packets) == millisecond_slots.shape[0]
    assert [message.seq for _, message in packets] == list(range(len(packets)))
    stamps = [stamp_us(message) for _, message in packets]
    assert stamps == sorted(stamps)
    first_times = [int(events["t"][events["t"] // 1000 == slot][0]) for slot in millisecond_slots]
    assert stamps == first_times
    assert [timestamp for timestamp, _ in packets] == [stamp * 1000 for stamp in stamps]
    for _, message in packets:
        assert message.header.frame_id == FRAME_ID
        assert (message.width, message.height) == (WIDTH, HEIGHT)
        assert message.encoding == encoding
        assert not message.is_bigendian
    if encoding == "evt3":
        assert {message.time_base for _, message in packets} == {0}
    else:
        assert [message.time_base for _, message in packets] == [stamp * 1000 for stamp in stamps]


def test_evt3_time_state_carried(tmp_path):
    # One PacketDecoder over the packets in order returns the exact times
    # without re-anchoring to header stamps, across every counter wrap.
    source = write_event_bag(bag_path(tmp_path, "mcap"), "mcap")
    output = tmp_path / "converted"
    convert_event_bag(source, output, encoding="evt3")

    decoder = PacketDecoder()
    decoded = np.concatenate([
        decoder.decode(m.encoding, m.events, time_base_ns=m.time_base,
                       stamp_ns=m.header.stamp.sec * 10**9 + m.header.stamp.nanosec).events
        for _, m in read_packets(output)
    ])

    np.testing.assert_array_equal(decoded, read_file(source).events)
    assert decoder.reanchor_count == 0


def test_packet_duration_option(tmp_path):
    source = write_event_bag(bag_path(tmp_path, "sqlite3"), "sqlite3")
    output = tmp_path / "converted"

    summary = convert_event_bag(source, output, packet_duration_us=5000)

    events = read_file(source).events
    assert summary.packets == np.unique(events["t"] // 5000).shape[0]
    np.testing.assert_array_equal(read_file(output).events, events)


@pytest.mark.parametrize("kind", ["ros1", "sqlite3"])
def test_other_topics_copied(tmp_path, kind):
    source = write_event_bag(bag_path(tmp_path, kind), kind)
    output = tmp_path / "converted"

    summary = convert_event_bag(source, output, storage="mcap")

    with AnyReader([output]) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        chatter = [c for c in reader.connections if c.topic == "/chatter"]
        rows = [(timestamp, reader.deserialize(raw, c.msgtype).data)
                for c, timestamp, raw in reader.messages(connections=chatter)]
    assert topics == {"/dvs/events": EVENT_PACKET, "/chatter": STRING}
    assert rows == [(10**9 * (10 + 5 * index) + 1, f"hello {index}") for index in range(3)]
    assert summary.copied_topics == {"/chatter": 3}
    assert summary.skipped_topics == {}
    assert (output / "converted.mcap").is_file()


def test_messages_written_in_time_order(tmp_path):
    import sqlite3

    source = write_event_bag(bag_path(tmp_path, "ros1"), "ros1")
    output = tmp_path / "converted"

    convert_event_bag(source, output)

    # sqlite3 storage numbers rows in write order.
    with sqlite3.connect(output / "converted.db3") as database:
        rows = database.execute("SELECT topic_id, timestamp FROM messages ORDER BY id").fetchall()
    timestamps = [timestamp for _, timestamp in rows]
    assert timestamps == sorted(timestamps)
    assert len({topic_id for topic_id, _ in rows}) == 2


def test_topic_option_selects_array(tmp_path):
    store = event_typestore(False)
    events = source_events()
    path = tmp_path / "two"
    with Ros2Writer(path, version=9) as writer:
        for topic, part in (("/left/events", events[:20]), ("/right/events", events[20:])):
            connection = writer.add_connection(topic, DVS_ARRAY, typestore=store)
            for index, message in enumerate(array_messages(store, DVS_ARRAY, False, part, per_message=10)):
                writer.write(connection, index + 1, store.serialize_cdr(message, DVS_ARRAY))

    with pytest.raises(FileFormatError, match=r"several event topics"):
        convert_event_bag(path, tmp_path / "ambiguous")
    summary = convert_event_bag(path, tmp_path / "right", topic="/right/events")

    assert summary.topic == "/right/events"
    assert summary.copied_topics == {"/left/events": 2}
    np.testing.assert_array_equal(read_file(tmp_path / "right", topic="/right/events").events,
                                  read_file(path, topic="/right/events").events)


def test_no_event_topic_rejected(tmp_path):
    store = get_typestore(Stores.ROS2_KILTED)
    path = tmp_path / "strings"
    with Ros2Writer(path, version=9) as writer:
        connection = writer.add_connection("/chatter", STRING, typestore=store)
        writer.write(connection, 1, store.serialize_cdr(store.types[STRING](data="hi"), STRING))

    with pytest.raises(FileFormatError, match=r"no event topic"):
        convert_event_bag(path, tmp_path / "converted")
    assert not (tmp_path / "converted").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["strings"]


def test_non_bag_input_rejected(tmp_path):
    path = tmp_path / "events.npz"
    np.savez(path, events=np.zeros((3, 4), np.float32))

    with pytest.raises(FileFormatError, match=r"expected a ROS 1 or ROS 2 bag"):
        convert_event_bag(path, tmp_path / "converted")


def test_existing_output_needs_force(tmp_path):
    source = write_event_bag(bag_path(tmp_path, "sqlite3"), "sqlite3")
    output = tmp_path / "converted"
    output.mkdir()
    (output / "keep.txt").write_text("old")

    with pytest.raises(OutputExistsError, match=r"exists; pass --force to replace it"):
        convert_event_bag(source, output)
    assert (output / "keep.txt").read_text() == "old"

    # --force replaces earlier outputs, never a folder holding other files.
    with pytest.raises(OutputExistsError, match=r"holds files other than bag files"):
        convert_event_bag(source, output, force=True)
    assert (output / "keep.txt").read_text() == "old"

    (output / "keep.txt").unlink()
    convert_event_bag(source, output, force=True)
    convert_event_bag(source, output, force=True)
    np.testing.assert_array_equal(read_file(output).events, read_file(source).events)


def test_cli_summary_json(tmp_path, capsys):
    source = write_event_bag(bag_path(tmp_path, "ros1"), "ros1")
    output = tmp_path / "converted"

    code = main(["convert-bag", str(source), "--output", str(output), "--encoding", "mono", "--storage", "mcap",
                 "--json"])

    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert summary["events"] == source_events().shape[0]
    assert summary["encoding"] == "mono"
    assert summary["storage"] == "mcap"
    assert summary["frame_id"] == FRAME_ID
    assert summary["copied_topics"] == {"/chatter": 3}
    assert read_file(output).format_name == "rosbag2-mcap"


def test_cli_existing_output_error(tmp_path, capsys, caplog):
    source = write_event_bag(bag_path(tmp_path, "sqlite3"), "sqlite3")
    output = tmp_path / "converted"
    output.mkdir()

    with caplog.at_level(logging.ERROR):
        code = main(["convert-bag", str(source), "--output", str(output)])

    assert code == 2
    assert f"output {output} exists; pass --force to replace it" in caplog.text


def test_cli_packet_duration_invalid(tmp_path, caplog):
    source = write_event_bag(bag_path(tmp_path, "sqlite3"), "sqlite3")

    with caplog.at_level(logging.ERROR):
        code = main(["convert-bag", str(source), "--output", str(tmp_path / "out"), "--packet-duration-ms", "0"])

    assert code == 2
    assert "--packet-duration-ms 0.0 is invalid" in caplog.text


def test_packet_slices_golden():
    times = np.array([999, 1000, 1000, 1999, 2000, 5000, 5001], np.int64)

    assert packet_slices(times, 1000) == [(0, 1), (1, 4), (4, 5), (5, 7)]
    assert packet_slices(times[:0], 1000) == []


def test_event_packets_mono_golden():
    events = make_events(x=[1, 2], y=[3, 4], t=[5_000_001, 5_000_002], p=[1, 0])

    (packet,) = list(event_packets(events, packet_duration_us=1000, encoding="mono", frame_id="f", width=8,
                                   height=6))

    assert packet["header"] == {"stamp": {"sec": 5, "nanosec": 1000}, "frame_id": "f"}
    assert packet["time_base"] == 5_000_001_000
    assert packet["seq"] == 0
    words = packet["events"].view("<u8")
    assert words.tolist() == [(1 << 63) | (3 << 48) | (1 << 32) | 0, (4 << 48) | (2 << 32) | 1000]


def test_real_ros1_packet_bag_converts(tmp_path):
    source = real_file("test_events_1.bag")
    output = tmp_path / "converted"

    summary = convert_event_bag(source, output)

    original = read_file(source)
    converted = read_file(output)
    np.testing.assert_array_equal(converted.events, original.events)
    assert summary.frame_id == read_packets(output, "/event_camera/events")[0][1].header.frame_id
    assert (converted.width, converted.height) == (640, 480)


@pytest.mark.parametrize("little_endian", [True, False])
@pytest.mark.parametrize("frame_id", ["", "a", "camera_left"])
def test_header_frame_id_from_cdr(frame_id, little_endian):
    store = get_typestore(Stores.ROS2_KILTED)
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    raw = store.serialize_cdr(Header(stamp=Time(sec=1, nanosec=2), frame_id=frame_id), "std_msgs/msg/Header",
                              little_endian=little_endian)

    assert header_frame_id(raw, is_ros1=False) == frame_id


def test_header_frame_id_from_ros1():
    store = get_typestore(Stores.ROS1_NOETIC)
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    raw = store.serialize_ros1(Header(seq=7, stamp=Time(sec=1, nanosec=2), frame_id="dvs"), "std_msgs/msg/Header")

    assert header_frame_id(raw, is_ros1=True) == "dvs"
    with pytest.raises(ValueError, match=r"overruns"):
        header_frame_id(bytes(raw)[:-1], is_ros1=True)
