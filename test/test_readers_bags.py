"""Reading event topics from ROS 1 and ROS 2 bags written here with rosbags, and real bags."""

import logging
import struct

import numpy as np
import pytest
from conftest import real_file
from rosbags.rosbag1 import Writer as Ros1Writer
from rosbags.rosbag2 import StoragePlugin
from rosbags.rosbag2 import Writer as Ros2Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from spikems_ros.events.dtype import EVENT_DTYPE, make_events
from spikems_ros.events.errors import FileFormatError
from spikems_ros.events.message_definitions import EVENT_MESSAGE_DEFINITIONS
from spikems_ros.events.packet import PacketDecoder
from spikems_ros.events.readers import detect_format, read_file
from spikems_ros.events.readers.bags import parse_cdr_event_array, parse_ros1_event_array

DVS_ARRAY = "dvs_msgs/msg/EventArray"
PROPHESEE_ARRAY = "prophesee_event_msgs/msg/EventArray"
EVENT_PACKET = "event_camera_msgs/msg/EventPacket"

# Two messages. The second contains an event older than the first message's, so
# the reader must sort. Nanoseconds are truncated to microseconds.
MESSAGE_EVENTS = [
    # (x, y, sec, nanosec, polarity)
    [(0, 0, 10, 1_000, True), (5, 7, 10, 2_500, False), (345, 259, 10, 999_999_999, True)],
    [(3, 4, 10, 500, False), (100, 200, 11, 0, True)],
]
EXPECTED_EVENTS = make_events(
    x=[3, 0, 5, 345, 100],
    y=[4, 0, 7, 259, 200],
    t=[10_000_000, 10_000_001, 10_000_002, 10_999_999, 11_000_000],
    p=[0, 1, 0, 1, 1],
)


def event_typestore(ros1: bool):
    store = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_KILTED)
    types = {}
    for name, text in EVENT_MESSAGE_DEFINITIONS.items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


def header(store, ros1: bool, sec: int = 10, frame_id: str = "dvs"):
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    if ros1:
        return Header(seq=0, stamp=Time(sec=sec, nanosec=0), frame_id=frame_id)
    return Header(stamp=Time(sec=sec, nanosec=0), frame_id=frame_id)


def array_message(store, message_type, ros1, records, width=346, height=260, frame_id="dvs"):
    element_type = message_type.replace("EventArray", "Event")
    Event = store.types[element_type]
    Time = store.types["builtin_interfaces/msg/Time"]
    events = [Event(x=x, y=y, ts=Time(sec=s, nanosec=n), polarity=p) for x, y, s, n, p in records]
    return store.types[message_type](
        header=header(store, ros1, frame_id=frame_id), height=height, width=width, events=events
    )


def packet_message(store, ros1, payload: bytes, time_base_ns: int, encoding="mono", width=640, height=480):
    return store.types[EVENT_PACKET](
        header=header(store, ros1), height=height, width=width, seq=0, time_base=time_base_ns,
        encoding=encoding, is_bigendian=False, events=np.frombuffer(payload, np.uint8),
    )


def write_bag(path, kind: str, topics: dict):
    """Write a bag of ``kind`` 'ros1', 'sqlite3' or 'mcap'; topics maps name -> (type, messages)."""
    ros1 = kind == "ros1"
    store = event_typestore(ros1)
    if ros1:
        writer = Ros1Writer(path)
    else:
        plugin = StoragePlugin.MCAP if kind == "mcap" else StoragePlugin.SQLITE3
        writer = Ros2Writer(path, version=9, storage_plugin=plugin)
    serialize = store.serialize_ros1 if ros1 else store.serialize_cdr
    with writer:
        for topic, (message_type, messages) in topics.items():
            connection = writer.add_connection(topic, message_type, typestore=store)
            for index, message in enumerate(messages):
                writer.write(connection, 1_000_000_000 * (index + 1), serialize(message, message_type))
    return path


def array_bag(tmp_path, kind, message_type=DVS_ARRAY, name="events"):
    ros1 = kind == "ros1"
    store = event_typestore(ros1)
    messages = [array_message(store, message_type, ros1, records) for records in MESSAGE_EVENTS]
    path = tmp_path / (f"{name}.bag" if ros1 else name)
    return write_bag(path, kind, {"/dvs/events": (message_type, messages)})


@pytest.mark.parametrize("message_type", [DVS_ARRAY, PROPHESEE_ARRAY])
@pytest.mark.parametrize(
    ("kind", "format_name"),
    [("ros1", "rosbag1"), ("sqlite3", "rosbag2-sqlite3"), ("mcap", "rosbag2-mcap")],
)
def test_event_array_bag_exact(tmp_path, kind, format_name, message_type):
    path = array_bag(tmp_path, kind, message_type)

    recording = read_file(path)

    np.testing.assert_array_equal(recording.events, EXPECTED_EVENTS)
    assert recording.events.dtype == EVENT_DTYPE
    assert (recording.width, recording.height) == (346, 260)
    assert recording.format_name == format_name
    assert recording.topic == "/dvs/events"
    assert recording.source == path
    assert len(recording.triggers) == 0
    assert recording.masks is None


@pytest.mark.parametrize(("kind", "suffix"), [("sqlite3", ".db3"), ("mcap", ".mcap")])
def test_bare_ros2_storage_file(tmp_path, kind, suffix):
    folder = array_bag(tmp_path, kind)
    bare_file = folder / f"events{suffix}"
    assert bare_file.is_file()

    recording = read_file(bare_file)

    np.testing.assert_array_equal(recording.events, EXPECTED_EVENTS)
    assert recording.format_name == f"rosbag2-{kind}"


def test_bare_file_with_other_suffix(tmp_path):
    folder = array_bag(tmp_path, "sqlite3")
    renamed = tmp_path / "events.sqlite"
    (folder / "events.db3").rename(renamed)

    with pytest.raises(FileFormatError, match=r"only with the suffix \.db3"):
        read_file(renamed)


@pytest.mark.parametrize("frame_id", ["", "a", "ab", "abc", "abcd", "camera_frame"])
@pytest.mark.parametrize("count", [0, 1, 2, 3, 17])
@pytest.mark.parametrize("ros1", [True, False])
def test_array_parser_matches_rosbags(ros1, count, frame_id):
    # The numpy parsers must agree with rosbags' own deserializer for every
    # header length (which moves the CDR alignment) and element count.
    store = event_typestore(ros1)
    rng = np.random.default_rng(count)
    records = [
        (int(rng.integers(0, 65536)), int(rng.integers(0, 65536)), int(rng.integers(0, 2**31)),
         int(rng.integers(0, 10**9)), bool(rng.integers(0, 2)))
        for _ in range(count)
    ]
    message = array_message(store, DVS_ARRAY, ros1, records, width=640, height=480, frame_id=frame_id)
    raw = store.serialize_ros1(message, DVS_ARRAY) if ros1 else store.serialize_cdr(message, DVS_ARRAY)

    parse = parse_ros1_event_array if ros1 else parse_cdr_event_array
    events, width, height = parse(raw)

    assert (width, height) == (640, 480)
    assert len(events) == count
    np.testing.assert_array_equal(events["x"], [r[0] for r in records])
    np.testing.assert_array_equal(events["y"], [r[1] for r in records])
    np.testing.assert_array_equal(events["t"], [r[2] * 1_000_000 + r[3] // 1000 for r in records])
    np.testing.assert_array_equal(events["p"], [int(r[4]) for r in records])


@pytest.mark.parametrize("ros1", [True, False])
def test_array_parser_rejects_wrong_length(ros1):
    store = event_typestore(ros1)
    message = array_message(store, DVS_ARRAY, ros1, MESSAGE_EVENTS[0])
    raw = store.serialize_ros1(message, DVS_ARRAY) if ros1 else store.serialize_cdr(message, DVS_ARRAY)
    parse = parse_ros1_event_array if ros1 else parse_cdr_event_array

    assert parse(raw[:-5]) is None
    assert parse(bytes(raw) + b"\x00" * 8) is None


def test_bag_definition_preferred(tmp_path):
    # A bag whose dvs_msgs/Event has an extra field: the numpy parser would
    # misread it, so the reader must deserialize with the bag's definition.
    extended_event = "uint16 x\nuint16 y\ntime ts\nbool polarity\nuint8 confidence\n"
    store = get_typestore(Stores.ROS2_KILTED)
    types = get_types_from_msg(extended_event, "dvs_msgs/msg/Event")
    types.update(get_types_from_msg(EVENT_MESSAGE_DEFINITIONS[DVS_ARRAY], DVS_ARRAY))
    store.register(types)
    Event = store.types["dvs_msgs/msg/Event"]
    Time = store.types["builtin_interfaces/msg/Time"]
    messages = [
        store.types[DVS_ARRAY](
            header=header(store, False), height=260, width=346,
            events=[Event(x=x, y=y, ts=Time(sec=s, nanosec=n), polarity=p, confidence=9)
                    for x, y, s, n, p in records],
        )
        for records in MESSAGE_EVENTS
    ]
    path = tmp_path / "extended"
    with Ros2Writer(path, version=9) as writer:
        connection = writer.add_connection("/dvs/events", DVS_ARRAY, typestore=store)
        for index, message in enumerate(messages):
            writer.write(connection, index + 1, store.serialize_cdr(message, DVS_ARRAY))

    recording = read_file(path)

    np.testing.assert_array_equal(recording.events, EXPECTED_EVENTS)


def mono_payload(x, y, offset_ns, p) -> bytes:
    words = (
        (np.asarray(p, np.uint64) << np.uint64(63))
        | (np.asarray(y, np.uint64) << np.uint64(48))
        | (np.asarray(x, np.uint64) << np.uint64(32))
        | np.asarray(offset_ns, np.uint64)
    )
    return words.astype("<u8").tobytes()


@pytest.mark.parametrize("kind", ["ros1", "sqlite3", "mcap"])
def test_event_packet_bag_matches_decoder(tmp_path, kind):
    ros1 = kind == "ros1"
    store = event_typestore(ros1)
    payloads = [
        (mono_payload([1, 2, 639], [3, 4, 479], [0, 1_000, 5_000], [1, 0, 1]), 1_000_000_000),
        (mono_payload([7], [8], [2_000], [0]), 1_000_010_000),
    ]
    messages = [packet_message(store, ros1, payload, time_base) for payload, time_base in payloads]
    path = tmp_path / ("packets.bag" if ros1 else "packets")
    write_bag(path, kind, {"/event_camera/events": (EVENT_PACKET, messages)})

    recording = read_file(path)

    decoder = PacketDecoder()
    expected = np.concatenate([
        decoder.decode("mono", payload, time_base_ns=time_base, stamp_ns=10 * 10**9).events
        for payload, time_base in payloads
    ])
    np.testing.assert_array_equal(recording.events, np.sort(expected, order="t", kind="stable"))
    np.testing.assert_array_equal(np.sort(recording.events["x"]), [1, 2, 7, 639])
    assert (recording.width, recording.height) == (640, 480)
    assert recording.topic == "/event_camera/events"


def test_unsupported_encoding_names_message(tmp_path):
    store = event_typestore(False)
    message = packet_message(store, False, b"\x00" * 8, 0, encoding="trigger")
    path = write_bag(tmp_path / "trigger", "sqlite3", {"/event_camera/events": (EVENT_PACKET, [message])})

    with pytest.raises(FileFormatError, match=r"cannot decode message 1 of 1 .*unsupported encoding 'trigger'"):
        read_file(path)


def evt3_words(*words) -> bytes:
    return np.array(words, "<u2").tobytes()


def test_untimed_evt3_events_reported(tmp_path, caplog):
    # ADDR_Y 5, ADDR_X 3 before any time word, then TIME_HIGH 1, TIME_LOW 2, ADDR_X 4.
    payload = evt3_words(0x0005, 0x2003, 0x8001, 0x6002, 0x2004)
    store = event_typestore(False)
    message = packet_message(store, False, payload, 0, encoding="evt3")
    path = write_bag(tmp_path / "evt3", "sqlite3", {"/event_camera/events": (EVENT_PACKET, [message])})

    with caplog.at_level(logging.WARNING):
        recording = read_file(path)

    np.testing.assert_array_equal(recording.events["x"], [4])
    assert "1 evt3 events on /event_camera/events came before the first time words" in caplog.text


def two_topic_bag(tmp_path):
    store = event_typestore(False)
    messages = [array_message(store, DVS_ARRAY, False, MESSAGE_EVENTS[0])]
    other = [array_message(store, DVS_ARRAY, False, MESSAGE_EVENTS[1])]
    return write_bag(tmp_path / "two", "sqlite3", {
        "/left/events": (DVS_ARRAY, messages),
        "/right/events": (DVS_ARRAY, other),
    })


def test_several_topics_need_topic(tmp_path):
    path = two_topic_bag(tmp_path)

    with pytest.raises(FileFormatError) as error:
        read_file(path)

    assert "/left/events" in str(error.value)
    assert "/right/events" in str(error.value)


def test_topic_selects_one(tmp_path):
    path = two_topic_bag(tmp_path)

    recording = read_file(path, topic="/right/events")

    assert recording.topic == "/right/events"
    np.testing.assert_array_equal(recording.events["x"], [3, 100])


def test_missing_topic_lists_event_topics(tmp_path):
    path = two_topic_bag(tmp_path)

    with pytest.raises(FileFormatError) as error:
        read_file(path, topic="/dvs/events")

    message = str(error.value)
    assert "'/dvs/events'" in message
    assert "/left/events" in message
    assert "/right/events" in message
    assert str(path) in message


def test_bag_without_event_topic(tmp_path):
    store = get_typestore(Stores.ROS2_KILTED)
    String = store.types["std_msgs/msg/String"]
    path = tmp_path / "strings"
    with Ros2Writer(path, version=9) as writer:
        connection = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=store)
        writer.write(connection, 1, store.serialize_cdr(String(data="hi"), "std_msgs/msg/String"))

    with pytest.raises(FileFormatError, match=r"no event topic.*/chatter \(std_msgs/msg/String\)"):
        read_file(path)


def test_out_of_range_events_kept(tmp_path, caplog):
    store = event_typestore(False)
    message = array_message(store, DVS_ARRAY, False, MESSAGE_EVENTS[0], width=100, height=100)
    path = write_bag(tmp_path / "small", "sqlite3", {"/dvs/events": (DVS_ARRAY, [message])})

    with caplog.at_level(logging.WARNING):
        recording = read_file(path)

    assert len(recording.events) == 3
    assert (recording.width, recording.height) == (100, 100)
    assert "1 of 3 events lie outside the 100x100 sensor" in caplog.text


def many_message_bag(tmp_path, kind, count=200):
    ros1 = kind == "ros1"
    store = event_typestore(ros1)
    records = [(1, 2, 10, 1000 * i, True) for i in range(50)]
    messages = [array_message(store, DVS_ARRAY, ros1, records) for _ in range(count)]
    path = tmp_path / ("many.bag" if ros1 else "many")
    return write_bag(path, kind, {"/dvs/events": (DVS_ARRAY, messages)})


@pytest.mark.parametrize("kind", ["ros1", "sqlite3", "mcap"])
def test_truncated_bag_raises(tmp_path, kind):
    path = many_message_bag(tmp_path, kind)
    data_file = path
    if kind != "ros1":
        data_file = next(path.glob("*.db3" if kind == "sqlite3" else "*.mcap"))
    content = data_file.read_bytes()
    data_file.write_bytes(content[: len(content) // 2])

    with pytest.raises(FileFormatError, match=r"messages.* read"):
        read_file(data_file)


def test_corrupt_sqlite_message_raises(tmp_path):
    import sqlite3

    path = many_message_bag(tmp_path, "sqlite3", count=5)
    database = next(path.glob("*.db3"))
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE messages SET data = X'00010000' WHERE id = 3")

    with pytest.raises(FileFormatError, match=r"2 of 5 messages on '/dvs/events' read"):
        read_file(path)


def test_wrong_content_for_suffix(tmp_path):
    path = tmp_path / "not_a_bag.bag"
    path.write_bytes(b"hello, this is text")

    with pytest.raises(FileFormatError, match=r"ROS 1 bag"):
        read_file(path)


def test_real_ros1_and_ros2_bags_identical():
    ros1 = read_file(real_file("test_events_1.bag"))
    ros2 = read_file(real_file("test_events_1.db3"))

    assert ros1.format_name == "rosbag1"
    assert ros2.format_name == "rosbag2-sqlite3"
    assert (ros1.width, ros1.height) == (640, 480)
    assert (ros2.width, ros2.height) == (640, 480)
    assert ros1.topic == ros2.topic == "/event_camera/events"
    assert len(ros1.events) > 100_000
    np.testing.assert_array_equal(ros1.events, ros2.events)
    np.testing.assert_array_equal(ros1.triggers, ros2.triggers)
    assert np.all(np.diff(ros1.events["t"]) >= 0)
    assert ros1.events["x"].max() < 640
    assert ros1.events["y"].max() < 480


def test_real_mono_bag_plausible():
    path = real_file("test_data_mono_cd_0.db3")

    recording = read_file(path)

    assert detect_format(path) == "rosbag2-sqlite3"
    assert (recording.width, recording.height) == (640, 480)
    # Two messages of 400 payload bytes, 8 bytes per mono event.
    assert len(recording.events) == 100
    assert recording.events["x"].max() < 640
    assert recording.events["y"].max() < 480
    assert set(np.unique(recording.events["p"])) <= {0, 1}
    # The messages are stamped 50 microseconds apart, so the events span about that.
    assert 0 <= int(recording.events["t"][-1] - recording.events["t"][0]) < 1_000_000


def test_ros1_event_layout_constant():
    # Guard for the packed ROS 1 record size used by the parser: 2+2+4+4+1 bytes.
    assert struct.calcsize("<HHIIB") == 13
