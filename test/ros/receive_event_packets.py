"""Receive EventPackets on a topic in its own process, decode them and save the events.

Usage: python receive_event_packets.py TOPIC EXPECTED_PACKETS OUTPUT.npy TIMEOUT_S
Writes a ready file (OUTPUT.npy + '.ready') once subscribed, then the decoded
events (EVENT_DTYPE) when EXPECTED_PACKETS packets arrived.
"""

import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from event_camera_msgs.msg import EventPacket
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from spikems_ros.events.packet import PacketDecoder, stamp_to_ns


def main() -> int:
    topic, expected_packets, output_path, timeout_s = sys.argv[1:5]
    expected_packets = int(expected_packets)
    output_path = Path(output_path)

    rclpy.init()
    node = rclpy.create_node("event_packet_receiver")
    decoder = PacketDecoder()
    chunks = []
    sequence_numbers = []

    def on_packet(message):
        decoded = decoder.decode(
            message.encoding,
            bytes(message.events),
            time_base_ns=message.time_base,
            stamp_ns=stamp_to_ns(message.header.stamp.sec, message.header.stamp.nanosec),
            is_bigendian=message.is_bigendian,
        )
        chunks.append(decoded.events)
        sequence_numbers.append(message.seq)

    qos = QoSProfile(
        reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=10000
    )
    node.create_subscription(EventPacket, topic, on_packet, qos)
    Path(str(output_path) + ".ready").touch()

    deadline = time.monotonic() + float(timeout_s)
    while len(chunks) < expected_packets and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)

    events = np.concatenate(chunks) if chunks else np.zeros(0)
    np.save(output_path, events)
    np.save(str(output_path) + ".seq.npy", np.asarray(sequence_numbers, dtype=np.uint64))
    node.destroy_node()
    rclpy.shutdown()
    return 0 if len(chunks) == expected_packets else 1


if __name__ == "__main__":
    sys.exit(main())
