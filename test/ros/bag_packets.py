"""EventPackets of real bags for the DDS tests: read with rosbags, republished with rclpy, decoded."""

from pathlib import Path

import numpy as np
from event_camera_msgs import msg as event_camera_msgs
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from spikems_ros.events.dtype import EVENT_DTYPE
from spikems_ros.events.message_definitions import EVENT_PACKET_MSG
from spikems_ros.events.packet import PacketDecoder, stamp_to_ns


def read_bag_packets(path):
    """Return the EventPacket messages of a ROS 2 bag, in bag order (rosbags messages)."""
    typestore = get_typestore(Stores.ROS2_KILTED)
    typestore.register(get_types_from_msg(EVENT_PACKET_MSG, "event_camera_msgs/msg/EventPacket"))
    with AnyReader([Path(path)], default_typestore=typestore) as reader:
        connections = [c for c in reader.connections if c.msgtype == "event_camera_msgs/msg/EventPacket"]
        return [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(connections=connections)]


def to_ros_message(packet):
    """rclpy EventPacket with the fields of a rosbags EventPacket."""
    message = event_camera_msgs.EventPacket()
    message.header.stamp.sec = packet.header.stamp.sec
    message.header.stamp.nanosec = packet.header.stamp.nanosec
    message.header.frame_id = packet.header.frame_id
    message.height = packet.height
    message.width = packet.width
    message.seq = packet.seq
    message.time_base = packet.time_base
    message.encoding = packet.encoding
    message.is_bigendian = packet.is_bigendian
    message.events = packet.events.tobytes()
    return message


def decode_messages(messages) -> np.ndarray:
    """Decode EventPackets (rclpy or rosbags messages) of one stream into one event array."""
    decoder = PacketDecoder()
    chunks = [
        decoder.decode(
            message.encoding,
            bytes(message.events),
            time_base_ns=message.time_base,
            stamp_ns=stamp_to_ns(message.header.stamp.sec, message.header.stamp.nanosec),
            is_bigendian=message.is_bigendian,
        ).events
        for message in messages
    ]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=EVENT_DTYPE)
