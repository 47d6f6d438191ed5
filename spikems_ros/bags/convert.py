"""Conversion of event bags (ROS 1 or ROS 2, event arrays) into ROS 2 bags of EventPackets.

The event topic is decoded with ``read_file`` and re-published as
event_camera_msgs/EventPacket, one packet per fixed slot of event time as camera
drivers publish them. Every other topic is copied: ROS 2 messages byte for byte
with their stored definitions, ROS 1 messages converted to CDR by rosbags.
Topics that cannot be copied are listed in the summary and the log.
"""

import heapq
import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rosbags.interfaces import MessageDefinitionFormat
from rosbags.typesys import Stores, TypesysError, get_types_from_msg, get_typestore

from spikems_ros.bags.source import header_frame_id, open_bag
from spikems_ros.bags.types import output_typestore
from spikems_ros.bags.writer import BagWriter, check_output_is_not_input, replace_when_complete, time_fields
from spikems_ros.events.errors import FileFormatError
from spikems_ros.events.packet import ENCODABLE_ENCODINGS, encode_packet_payload
from spikems_ros.events.readers import read_file
from spikems_ros.events.readers.bags import BAG_ERRORS

LOG = logging.getLogger(__name__)

EVENT_PACKET_TYPE = "event_camera_msgs/msg/EventPacket"
DEFAULT_PACKET_DURATION_US = 1000


@dataclass
class ConversionSummary:
    """Settings and counts of one ``convert_event_bag`` run."""

    input: Path
    output: Path
    storage: str  # "sqlite3" or "mcap"
    topic: str  # event topic, the same name in input and output
    input_type: str  # message type of the event topic in the input
    encoding: str  # EventPacket encoding written
    width: int
    height: int
    frame_id: str
    events: int  # events decoded from the input topic, all written
    packets: int
    first_time_us: int | None
    last_time_us: int | None
    copied_topics: dict = field(default_factory=dict)  # topic -> messages copied
    skipped_topics: dict = field(default_factory=dict)  # topic -> reason it was not copied


def packet_slices(times_us: np.ndarray, packet_duration_us: int) -> list:
    """Return (start, stop) index pairs of events sorted by time, one per slot of ``packet_duration_us``.

    Slots are aligned to multiples of the duration in absolute time; slots
    without events produce no packet.
    """
    if packet_duration_us < 1:
        raise ValueError(f"packet_duration_us = {packet_duration_us} is invalid: expected an integer >= 1")
    if times_us.shape[0] == 0:
        return []
    slots = times_us // packet_duration_us
    starts = np.concatenate([[0], np.flatnonzero(np.diff(slots)) + 1])
    stops = np.concatenate([starts[1:], [times_us.shape[0]]])
    return list(zip(starts.tolist(), stops.tolist()))


def event_packets(events: np.ndarray, *, packet_duration_us: int, encoding: str, frame_id: str, width: int,
                  height: int):
    """Yield EventPacket fields for events sorted by time, one packet per slot of event time.

    Each header is stamped with the packet's first event time. evt3 packets have
    time_base 0 and are encoded relative to the previous packet's last event
    time, so that a decoder counts the 24-bit counter wraps across packets.
    mono packets carry the first event time as time_base. ``seq`` counts from 0.
    """
    if encoding not in ENCODABLE_ENCODINGS:
        raise ValueError(f"encoding {encoding!r} is invalid: expected one of {', '.join(ENCODABLE_ENCODINGS)}")
    previous_time_us = None
    for seq, (start, stop) in enumerate(packet_slices(events["t"], packet_duration_us)):
        packet_events = events[start:stop]
        payload, time_base_ns = encode_packet_payload(encoding, packet_events, previous_time_us=previous_time_us)
        first_time_us = int(packet_events["t"][0])
        previous_time_us = int(packet_events["t"][-1])
        yield {
            "header": {"stamp": time_fields(first_time_us * 1000), "frame_id": frame_id},
            "height": int(height),
            "width": int(width),
            "seq": seq,
            "time_base": int(time_base_ns),
            "encoding": encoding,
            "is_bigendian": False,
            "events": np.frombuffer(payload, dtype=np.uint8),
        }


def convert_event_bag(input_path, output_path, *, topic: str | None = None, encoding: str = "evt3",
                      packet_duration_us: int = DEFAULT_PACKET_DURATION_US, storage: str = "sqlite3",
                      force: bool = False) -> ConversionSummary:
    """Convert the event topic of a ROS 1 or ROS 2 bag to EventPackets in a new ROS 2 bag.

    ``topic`` selects the event topic when the bag has several. The output is
    written under a temporary name and moved to ``output_path`` when complete;
    an existing output raises OutputExistsError unless ``force`` is set.
    Raises FileFormatError for inputs that are not bags or hold no event topic.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if encoding not in ENCODABLE_ENCODINGS:
        raise ValueError(f"encoding {encoding!r} is invalid: expected one of {', '.join(ENCODABLE_ENCODINGS)}")
    if packet_duration_us < 1:
        raise ValueError(f"packet_duration_us = {packet_duration_us} is invalid: expected an integer >= 1")
    check_output_is_not_input(output_path, input_path)

    reader, is_ros1 = open_bag(input_path)
    try:
        with replace_when_complete(output_path, force=force, hint="pass --force to replace it") as staging_path:
            recording = read_file(input_path, topic)
            return _convert(reader, is_ros1, recording, staging_path, output_path, encoding=encoding,
                            packet_duration_us=packet_duration_us, storage=storage)
    finally:
        reader.close()


def _convert(reader, is_ros1, recording, staging_path, output_path, *, encoding, packet_duration_us, storage):
    topic = recording.topic
    event_connections = [c for c in reader.connections if c.topic == topic]
    input_type = event_connections[0].msgtype
    frame_id = _first_frame_id(reader, event_connections, is_ros1)
    events = recording.events

    summary = ConversionSummary(
        input=recording.source, output=output_path, storage=storage, topic=topic, input_type=input_type,
        encoding=encoding, width=recording.width, height=recording.height, frame_id=frame_id,
        events=int(events.shape[0]), packets=0,
        first_time_us=int(events["t"][0]) if events.shape[0] else None,
        last_time_us=int(events["t"][-1]) if events.shape[0] else None,
    )
    if not events.shape[0]:
        LOG.warning("%s: topic %s holds no events; the output topic has no messages", recording.source, topic)
    if recording.triggers.shape[0]:
        # NOTE: the evt3 and mono encoders write events only, so trigger edges are lost.
        LOG.warning("%s: %d external trigger edges on %s are not written; the packet encoders write events only",
                    recording.source, recording.triggers.shape[0], topic)

    with BagWriter(staging_path, storage=storage, typestore=output_typestore()) as writer:
        writer.add_topic(topic, EVENT_PACKET_TYPE)
        copiers = _add_copied_topics(writer, reader, is_ros1, topic, summary.skipped_topics)

        packets = event_packets(
            events, packet_duration_us=packet_duration_us, encoding=encoding, frame_id=frame_id,
            width=recording.width, height=recording.height,
        )
        packet_items = ((_stamp_ns(fields), 0, fields) for fields in packets)
        copied_connections = [c for c in reader.connections if c.id in copiers]
        other_items = (
            (timestamp, 1, (connection, raw))
            for connection, timestamp, raw in reader.messages(connections=copied_connections)
        ) if copied_connections else iter(())

        failed = {}
        for timestamp, kind, item in heapq.merge(packet_items, other_items, key=lambda entry: entry[0]):
            if kind == 0:
                writer.write(topic, item, timestamp)
                summary.packets += 1
                continue
            connection, raw = item
            output_topic, convert = copiers[connection.id]
            try:
                data = convert(raw)
            except BAG_ERRORS + (struct.error, ValueError, TypeError, IndexError) as error:
                failed.setdefault(output_topic, [0, error])[0] += 1
                continue
            writer.write_raw(output_topic, timestamp, data)

    for output_topic, count in writer.message_counts.items():
        if output_topic != topic and output_topic not in summary.skipped_topics:
            summary.copied_topics[output_topic] = count
    for output_topic, (count, error) in failed.items():
        LOG.warning("%s: %d messages on %s could not be converted and were skipped (first error: %s)",
                    recording.source, count, output_topic, error)
    for skipped_topic, reason in summary.skipped_topics.items():
        LOG.warning("%s: topic %s not copied: %s", recording.source, skipped_topic, reason)
    LOG.info("%s: wrote %d events in %d %s packets on %s, copied %d other topics",
             output_path, summary.events, summary.packets, encoding, topic, len(summary.copied_topics))
    return summary


def _stamp_ns(fields: dict) -> int:
    stamp = fields["header"]["stamp"]
    return stamp["sec"] * 1_000_000_000 + stamp["nanosec"]


def _first_frame_id(reader, connections, is_ros1: bool) -> str:
    for _, _, raw in reader.messages(connections=connections):
        try:
            return header_frame_id(raw, is_ros1)
        except ValueError as error:
            LOG.warning("cannot read header.frame_id of the first event message (%s); using ''", error)
            return ""
    return ""


def _add_copied_topics(writer, reader, is_ros1: bool, event_topic: str, skipped: dict) -> dict:
    """Add an output topic per copyable input topic; return connection id -> (topic, converter)."""
    ros1_typestore = _ros1_typestore(reader, skipped) if is_ros1 else None
    copiers = {}
    by_topic = {}  # output topic -> (message type, (topic, converter))
    for connection in reader.connections:
        topic = connection.topic
        if topic == event_topic or topic in skipped:
            continue
        if topic in by_topic:
            # rosbag2 stores one connection per topic and QoS; all go to one output topic.
            message_type, copier = by_topic[topic]
            if message_type == connection.msgtype:
                copiers[connection.id] = copier
            else:
                skipped[topic] = f"carries several message types ({message_type}, {connection.msgtype})"
            continue

        try:
            if is_ros1:
                converter = _add_ros1_topic(writer, ros1_typestore, connection)
            else:
                converter = _add_ros2_topic(writer, connection)
        except (TypesysError, KeyError, ValueError) as error:
            skipped[topic] = f"{connection.msgtype}: {error}"
            continue
        if converter is None:
            skipped[topic] = f"{connection.msgtype}: the bag stores no message definition for it"
            continue
        copiers[connection.id] = (topic, converter)
        by_topic[topic] = (connection.msgtype, copiers[connection.id])

    # Connections of a topic skipped after some were added are dropped again.
    return {connection_id: copier for connection_id, copier in copiers.items() if copier[0] not in skipped}


def _unchanged(raw):
    return raw


def _add_ros2_topic(writer, connection):
    """Copy a ROS 2 connection's definition; return the identity converter, or None without a definition."""
    definition = connection.msgdef
    qos = list(connection.ext.offered_qos_profiles)
    if definition.format != MessageDefinitionFormat.NONE and definition.data and connection.digest:
        writer.add_raw_topic(
            connection.topic, connection.msgtype, message_definition=definition.data, type_hash=connection.digest,
            serialization_format=connection.ext.serialization_format, offered_qos_profiles=qos,
        )
        return _unchanged
    if connection.msgtype in writer.typestore.fielddefs:
        # NOTE: older bags store no definitions; the ROS 2 Kilted definition is
        # assumed to match the serialized bytes, as the event reader assumes.
        writer.add_topic(connection.topic, connection.msgtype, offered_qos_profiles=qos)
        return _unchanged
    return None


def _ros1_typestore(reader, skipped: dict):
    """Build a typestore from the ROS 1 definitions in the bag, with the ROS 2 std_msgs/Header.

    rosbags' ROS 1 to CDR conversion drops the header's seq field, so the
    destination definitions use the ROS 2 header and otherwise the bag's own.
    """
    types = {}
    for connection in reader.connections:
        try:
            types.update(get_types_from_msg(connection.msgdef.data, connection.msgtype))
        except TypesysError as error:
            skipped[connection.topic] = f"{connection.msgtype}: invalid ROS 1 message definition: {error}"
    types["std_msgs/msg/Header"] = get_typestore(Stores.ROS2_KILTED).fielddefs["std_msgs/msg/Header"]
    typestore = get_typestore(Stores.EMPTY)
    try:
        typestore.register(types)
    except TypesysError as error:
        raise FileFormatError(reader.path, f"cannot build types from the bag's message definitions: {error}") from error
    return typestore


def _add_ros1_topic(writer, typestore, connection):
    """Add a ROS 2 topic for a ROS 1 connection; return its ROS 1 to CDR converter."""
    from rosbags.convert.converter import LATCH

    message_type = connection.msgtype
    definition, _ = typestore.generate_msgdef(message_type, ros_version=2)
    writer.add_raw_topic(
        connection.topic, message_type, message_definition=definition, type_hash=typestore.hash_rihs01(message_type),
        offered_qos_profiles=LATCH if connection.ext.latching else (),
    )

    def convert(raw):
        return typestore.ros1_to_cdr(raw, message_type)

    return convert
