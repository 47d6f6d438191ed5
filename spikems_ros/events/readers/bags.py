"""Read one event topic from a ROS 1 bag or a ROS 2 bag (sqlite3 or mcap) with rosbags.

Supported message types:

- event_camera_msgs/EventPacket and its predecessor event_array_msgs/EventArray
  (same field list): each payload goes through one PacketDecoder per topic, in
  bag order, because encodings such as evt3 carry time state across messages.
- dvs_msgs/EventArray (EV-IMO's ``/dvs/events``) and prophesee_event_msgs/EventArray:
  arrays of (x, y, ts, polarity) records.

Message definitions stored in the bag take precedence; the published field lists
in ``message_definitions`` are the fallback for bags that store none.
"""

import logging
import struct
from pathlib import Path

import apsw
import numpy as np
from rosbags.interfaces import MessageDefinitionFormat
from rosbags.rosbag1 import Reader as Ros1Reader
from rosbags.rosbag1 import ReaderError as Ros1ReaderError
from rosbags.rosbag2 import Reader as Ros2Reader
from rosbags.rosbag2 import ReaderError as Ros2ReaderError
from rosbags.serde import SerdeError
from rosbags.typesys import Stores, TypesysError, get_types_from_idl, get_types_from_msg, get_typestore

from spikems_ros.events.dtype import EVENT_DTYPE, TRIGGER_DTYPE
from spikems_ros.events.errors import DecodeError, FileFormatError
from spikems_ros.events.message_definitions import EVENT_MESSAGE_DEFINITIONS, EVENT_PACKET_MSG
from spikems_ros.events.packet import PacketDecoder, stamp_to_ns
from spikems_ros.events.readers.detect import ROSBAG1, ROSBAG2_MCAP, ROSBAG2_SQLITE3
from spikems_ros.events.readers.recording import Recording, finish_recording, guess_resolution

LOG = logging.getLogger(__name__)

PACKET_TYPES = ("event_camera_msgs/msg/EventPacket", "event_array_msgs/msg/EventArray")
ARRAY_TYPES = ("dvs_msgs/msg/EventArray", "prophesee_event_msgs/msg/EventArray")
EVENT_TYPES = PACKET_TYPES + ARRAY_TYPES

# Element type of each event array type.
ARRAY_ELEMENT_TYPES = {
    "dvs_msgs/msg/EventArray": "dvs_msgs/msg/Event",
    "prophesee_event_msgs/msg/EventArray": "prophesee_event_msgs/msg/Event",
}

# event_array_msgs/EventArray, the earlier name of EventPacket, has the same
# fields. Bags recorded with it may store no definition, as the real mono
# recording read in the tests does.
FALLBACK_DEFINITIONS = {
    **EVENT_MESSAGE_DEFINITIONS,
    "event_array_msgs/msg/EventArray": EVENT_PACKET_MSG,
}

# Errors rosbags raises on damaged or truncated bags: its readers' errors, its
# deserializer's, those of apsw (the SQLite binding it uses for .db3 files), and
# UnicodeDecodeError from garbled topic names or message definitions.
# MemoryError comes from a damaged record length: rosbags 0.11 allocates a
# record's stated size before reading it.
# NOTE: a damaged length below the memory available is allocated in full before
# the short read is detected, so a damaged bag can use memory up to that size.
BAG_ERRORS = (Ros1ReaderError, Ros2ReaderError, SerdeError, apsw.Error, UnicodeDecodeError, MemoryError)

# One dvs/prophesee Event serialized for ROS 1: packed, no padding.
ROS1_EVENT_RECORD = np.dtype({
    "names": ["x", "y", "sec", "nanosec", "polarity"],
    "formats": ["<u2", "<u2", "<u4", "<u4", "u1"],
    "offsets": [0, 2, 4, 8, 12],
    "itemsize": 13,
})

# The same Event in little-endian CDR, which aligns each primitive to its size
# relative to the body start. The array starts 4-byte aligned, so element 0 has
# no padding and ends at byte 13. Element 1's x is then padded to byte 14 and its
# ts.sec to byte 20. From there on, every element takes 16 bytes, with 2 padding
# bytes after y.
CDR_FIRST_EVENT_RECORD = np.dtype({
    "names": ["x", "y", "sec", "nanosec", "polarity"],
    "formats": ["<u2", "<u2", "<i4", "<u4", "u1"],
    "offsets": [0, 2, 4, 8, 12],
    "itemsize": 13,
})
CDR_NEXT_EVENT_RECORD = np.dtype({
    "names": ["x", "y", "sec", "nanosec", "polarity"],
    "formats": ["<u2", "<u2", "<i4", "<u4", "u1"],
    "offsets": [0, 2, 6, 10, 14],
    "itemsize": 16,
})
# rosbags 0.11 picks the storage of a bare ROS 2 file by its suffix.
BARE_ROS2_SUFFIXES = {ROSBAG2_SQLITE3: ".db3", ROSBAG2_MCAP: ".mcap"}

CDR_LITTLE_ENDIAN_HEADER = b"\x00\x01"
CDR_ENCAPSULATION_BYTES = 4


def read_bag(path: Path, format_name: str, topic: str | None = None) -> Recording:
    """Read the events of one topic from a ROS 1 bag or a rosbag2 folder, .db3 or .mcap file.

    With ``topic=None`` the bag must hold exactly one event topic. Raises
    FileFormatError for a missing or ambiguous topic, or for a damaged bag; the
    latter names how many messages were read before the damage.
    """
    is_ros1 = format_name == ROSBAG1
    if not is_ros1 and path.is_file() and path.suffix != BARE_ROS2_SUFFIXES[format_name]:
        raise FileFormatError(
            path, f"rosbags opens a bare {format_name} file only with the suffix "
            f"{BARE_ROS2_SUFFIXES[format_name]}; rename the file"
        )
    try:
        reader = Ros1Reader(path) if is_ros1 else Ros2Reader(path)
        reader.open()
    except BAG_ERRORS as error:
        # A ROS 1 bag cut short loses the index at its end, which 'rosbag reindex' rebuilds.
        hint = "; 'rosbag reindex' may repair a ROS 1 bag cut short" if is_ros1 else ""
        raise FileFormatError(
            path, f"cannot open the {format_name} bag, 0 messages read: {_describe(error)}{hint}"
        ) from error

    try:
        topic = _choose_event_topic(path, reader.connections, topic)
        connections = [c for c in reader.connections if c.topic == topic]
        return _read_topic(path, reader, connections, topic, format_name, is_ros1)
    finally:
        reader.close()


def _describe(error: BaseException) -> str:
    """Return the message of a bag error; MemoryError carries none."""
    if isinstance(error, MemoryError):
        return "a record states a size larger than the memory available, so the file is damaged"
    return str(error)


def _choose_event_topic(path: Path, connections, topic: str | None) -> str:
    """Return the requested topic, or the only event topic when ``topic`` is None."""
    event_topics = sorted({c.topic for c in connections if c.msgtype in EVENT_TYPES})

    if topic is None:
        if len(event_topics) == 1:
            return event_topics[0]
        if not event_topics:
            present = sorted({f"{c.topic} ({c.msgtype})" for c in connections})
            raise FileFormatError(
                path,
                f"bag contains no event topic; topics present: {present}; "
                f"expected a topic of type {', '.join(EVENT_TYPES)}",
            )
        raise FileFormatError(
            path, f"bag contains several event topics {event_topics}; choose one with the topic argument"
        )

    if topic not in event_topics:
        raise FileFormatError(
            path, f"event topic {topic!r} not found; event topics present: {event_topics}"
        )
    return topic


def _read_topic(path, reader, connections, topic, format_name, is_ros1) -> Recording:
    message_types = {c.msgtype for c in connections}
    if len(message_types) > 1:
        raise FileFormatError(
            path, f"topic {topic!r} carries several message types {sorted(message_types)}; expected one"
        )
    message_type = message_types.pop()

    typestores = {c.id: _typestore_for(path, c, is_ros1) for c in connections}
    if message_type in PACKET_TYPES:
        decode_message = _PacketMessageDecoder(typestores, is_ros1)
    else:
        decode_message = _ArrayMessageDecoder(typestores, message_type, is_ros1)

    total = sum(c.msgcount for c in connections)
    event_chunks = []
    trigger_chunks = []
    resolutions = set()
    read_count = 0
    try:
        for connection, _, raw in reader.messages(connections=connections):
            events, triggers, width, height = decode_message(connection, raw)
            event_chunks.append(events)
            trigger_chunks.append(triggers)
            resolutions.add((width, height))
            read_count += 1
    except BAG_ERRORS as error:
        raise FileFormatError(
            path,
            f"damaged bag: {read_count} of {total} messages on {topic!r} read before "
            f"message {read_count + 1} failed: {_describe(error)}",
        ) from error
    except DecodeError as error:
        raise FileFormatError(
            path,
            f"cannot decode message {read_count + 1} of {total} on {topic!r} "
            f"({read_count} messages read): {error}",
        ) from error
    decode_message.report_dropped(path, topic)

    events = np.concatenate(event_chunks) if event_chunks else np.zeros(0, EVENT_DTYPE)
    triggers = np.concatenate(trigger_chunks) if trigger_chunks else np.zeros(0, TRIGGER_DTYPE)
    width, height = _bag_resolution(path, resolutions, events)
    LOG.info("%s: read %d events and %d triggers from %d messages on %s (%s, %dx%d)",
             path, len(events), len(triggers), read_count, topic, message_type, width, height)

    return finish_recording(events, width, height, format_name, path, triggers=triggers, topic=topic)


def _bag_resolution(path, resolutions: set, events: np.ndarray) -> tuple[int, int]:
    """Pick the resolution the messages state; guess from coordinates when they state none."""
    stated = {r for r in resolutions if r[0] > 0 and r[1] > 0}
    if not stated:
        width, height = guess_resolution(events)
        if resolutions:
            LOG.warning("%s: messages state no resolution (width/height 0); using %dx%d "
                        "from the event coordinates", path, width, height)
        return width, height
    if len(stated) > 1:
        LOG.warning("%s: messages state several resolutions %s; using the largest",
                    path, sorted(stated))
    return max(w for w, _ in stated), max(h for _, h in stated)


def _typestore_for(path, connection, is_ros1):
    """Build a typestore that deserializes ``connection``, preferring the bag's own definition."""
    definition = connection.msgdef
    try:
        if definition.format == MessageDefinitionFormat.MSG and definition.data:
            store = get_typestore(Stores.EMPTY)
            store.register(get_types_from_msg(definition.data, connection.msgtype))
            return store
        if definition.format == MessageDefinitionFormat.IDL and definition.data:
            store = get_typestore(Stores.EMPTY)
            store.register(_types_from_idl_bundle(definition.data))
            return store
    except TypesysError as error:
        raise FileFormatError(
            path,
            f"invalid message definition for {connection.msgtype} on {connection.topic!r}: {error}",
        ) from error
    return _fallback_typestore(is_ros1)


def _types_from_idl_bundle(text: str) -> dict:
    """Parse rosbag2's IDL definitions: several IDL files joined by '=' separator lines."""
    separator = "=" * 80 + "\n"
    if not text.startswith(separator + "IDL: "):
        return get_types_from_idl(text)
    types = {}
    for section in text.split(separator)[1:]:
        _, idl = section.split("\n", 1)
        types.update(get_types_from_idl(idl))
    return types


def _fallback_typestore(is_ros1):
    """Typestore of the ROS distribution plus the published event message definitions."""
    store = get_typestore(Stores.ROS1_NOETIC if is_ros1 else Stores.ROS2_KILTED)
    types = {}
    for name, text in FALLBACK_DEFINITIONS.items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


def _deserialize(store, raw, message_type: str, is_ros1: bool):
    if is_ros1:
        return store.deserialize_ros1(raw, message_type)
    return store.deserialize_cdr(raw, message_type)


class _PacketMessageDecoder:
    """Decode EventPacket messages of one topic with one PacketDecoder, in bag order."""

    def __init__(self, typestores: dict, is_ros1: bool):
        self.typestores = typestores
        self.is_ros1 = is_ros1
        self.decoder = PacketDecoder()

    def __call__(self, connection, raw):
        message = _deserialize(self.typestores[connection.id], raw, connection.msgtype, self.is_ros1)
        stamp = message.header.stamp
        decoded = self.decoder.decode(
            message.encoding,
            message.events,
            time_base_ns=int(message.time_base),
            stamp_ns=stamp_to_ns(stamp.sec, stamp.nanosec),
            is_bigendian=bool(message.is_bigendian),
        )
        return decoded.events, decoded.triggers, int(message.width), int(message.height)

    def report_dropped(self, path, topic: str) -> None:
        """Warn about evt3 events the decoder dropped because no time words preceded them."""
        dropped = self.decoder.untimed_events_dropped
        if dropped:
            LOG.warning("%s: %d evt3 events on %s came before the first time words and "
                        "have no time; the decoder dropped them", path, dropped, topic)


class _ArrayMessageDecoder:
    """Decode dvs_msgs or prophesee_event_msgs EventArray messages.

    Serialized bytes are parsed with numpy when the bag's definitions match the
    published ones, which is checked once per connection. Otherwise, and for
    big-endian CDR, rosbags deserializes each message: reading a 2-million-event
    bag then took 9 s instead of 0.5 to 0.7 s (rosbags 0.11.9, 2 CPU cores).
    """

    def __init__(self, typestores: dict, message_type: str, is_ros1: bool):
        self.typestores = typestores
        self.message_type = message_type
        self.is_ros1 = is_ros1
        reference = _fallback_typestore(is_ros1)
        compared_types = (message_type, ARRAY_ELEMENT_TYPES[message_type], "std_msgs/msg/Header")
        self.fast_connections = {
            connection_id
            for connection_id, store in typestores.items()
            if all(store.fielddefs.get(t) == reference.fielddefs[t] for t in compared_types)
        }

    def __call__(self, connection, raw):
        parsed = None
        if connection.id in self.fast_connections:
            parse = parse_ros1_event_array if self.is_ros1 else parse_cdr_event_array
            parsed = parse(raw)
        if parsed is None:
            parsed = self._deserialize_array(connection, raw)
        events, width, height = parsed
        return events, np.zeros(0, TRIGGER_DTYPE), width, height

    def report_dropped(self, path, topic: str) -> None:
        """Event arrays drop nothing; present so both decoders share one interface."""

    def _deserialize_array(self, connection, raw):
        store = self.typestores[connection.id]
        message = _deserialize(store, raw, connection.msgtype, self.is_ros1)
        count = len(message.events)
        events = np.empty(count, EVENT_DTYPE)
        events["x"] = [e.x for e in message.events]
        events["y"] = [e.y for e in message.events]
        seconds = np.array([e.ts.sec for e in message.events], dtype=np.int64)
        nanoseconds = np.array([e.ts.nanosec for e in message.events], dtype=np.int64)
        events["t"] = seconds * 1_000_000 + nanoseconds // 1000
        events["p"] = [bool(e.polarity) for e in message.events]
        return events, int(message.width), int(message.height)


def _events_from_records(records: np.ndarray) -> np.ndarray:
    """Convert (x, y, sec, nanosec, polarity) records to EVENT_DTYPE, time truncated to µs."""
    events = np.empty(len(records), EVENT_DTYPE)
    events["x"] = records["x"]
    events["y"] = records["y"]
    events["t"] = records["sec"].astype(np.int64) * 1_000_000 + records["nanosec"].astype(np.int64) // 1000
    events["p"] = records["polarity"] != 0
    return events


def parse_ros1_event_array(raw) -> tuple[np.ndarray, int, int] | None:
    """Parse a ROS 1 serialized dvs/prophesee EventArray into (events, width, height).

    Returns None when the byte count does not match the layout, so the caller
    can fall back to rosbags.
    """
    raw = memoryview(raw)
    # std_msgs/Header in ROS 1: uint32 seq, time stamp (2 x uint32), string frame_id.
    if len(raw) < 16:
        return None
    frame_id_bytes = struct.unpack_from("<I", raw, 12)[0]
    offset = 16 + frame_id_bytes
    if len(raw) < offset + 12:
        return None
    height, width, count = struct.unpack_from("<III", raw, offset)
    offset += 12
    if len(raw) != offset + ROS1_EVENT_RECORD.itemsize * count:
        return None
    records = np.frombuffer(raw, dtype=ROS1_EVENT_RECORD, count=count, offset=offset)
    return _events_from_records(records), width, height


def parse_cdr_event_array(raw) -> tuple[np.ndarray, int, int] | None:
    """Parse a little-endian CDR dvs/prophesee EventArray into (events, width, height).

    Returns None for big-endian CDR or when the byte count does not match the
    layout, so the caller can fall back to rosbags.
    """
    raw = memoryview(raw)
    if bytes(raw[:2]) != CDR_LITTLE_ENDIAN_HEADER:
        return None
    body = raw[CDR_ENCAPSULATION_BYTES:]

    # std_msgs/Header in ROS 2: int32 sec, uint32 nanosec, string frame_id
    # (uint32 length including the terminating NUL, then the bytes).
    if len(body) < 12:
        return None
    frame_id_bytes = struct.unpack_from("<I", body, 8)[0]
    offset = _align(12 + frame_id_bytes, 4)
    if len(body) < offset + 12:
        return None
    height, width, count = struct.unpack_from("<III", body, offset)
    offset += 12

    # Element 0 takes 13 bytes, each further element 16 (see CDR_NEXT_EVENT_RECORD);
    # a serializer may pad the end of the message to a multiple of 4 bytes.
    end = offset + 16 * count - 3 if count else offset
    if not end <= len(body) <= _align(end, 4):
        return None
    if count == 0:
        return np.zeros(0, EVENT_DTYPE), width, height

    first = np.frombuffer(body, dtype=CDR_FIRST_EVENT_RECORD, count=1, offset=offset)
    # The last element has no trailing padding byte, so pad the tail to whole records.
    tail = bytes(body[offset + 14:end]) + b"\x00"
    rest = np.frombuffer(tail, dtype=CDR_NEXT_EVENT_RECORD, count=count - 1)
    events = np.concatenate([_events_from_records(first), _events_from_records(rest)])
    return events, width, height


def _align(offset: int, size: int) -> int:
    return (offset + size - 1) // size * size
