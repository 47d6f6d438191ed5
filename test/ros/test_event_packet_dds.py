"""EventPackets from a real ROS 2 bag, published over Fast DDS, decode to the same events."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import real_file

rclpy = pytest.importorskip("rclpy", reason="rclpy is installed by make setup")
event_camera_msgs = pytest.importorskip(
    "event_camera_msgs.msg", reason="event_camera_msgs is built by make setup"
)

from bag_packets import decode_messages, read_bag_packets, to_ros_message  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402

RECEIVER = Path(__file__).with_name("receive_event_packets.py")


@pytest.mark.ros
def test_bag_packets_over_dds_decode_identically(tmp_path):
    packets = read_bag_packets(real_file("test_events_1.db3"))
    assert len(packets) > 10
    expected_events = decode_messages(packets)
    topic = "/dds_test/events"
    output_path = tmp_path / "received.npy"

    receiver = subprocess.Popen(
        [sys.executable, str(RECEIVER), topic, str(len(packets)), str(output_path), "60"],
        env=dict(os.environ),
    )
    try:
        deadline = time.monotonic() + 30
        while not Path(str(output_path) + ".ready").exists() and time.monotonic() < deadline:
            time.sleep(0.05)

        rclpy.init()
        node = rclpy.create_node("event_packet_sender")
        qos = QoSProfile(
            reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=10000
        )
        publisher = node.create_publisher(event_camera_msgs.EventPacket, topic, qos)
        deadline = time.monotonic() + 30
        while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        assert publisher.get_subscription_count() == 1, "receiver did not subscribe within 30 s"

        for packet in packets:
            publisher.publish(to_ros_message(packet))
            # Pace the stream a little so a reliable writer never overruns history.
            rclpy.spin_once(node, timeout_sec=0.001)

        return_code = receiver.wait(timeout=90)
        node.destroy_node()
        rclpy.shutdown()
    finally:
        if receiver.poll() is None:
            receiver.kill()

    assert return_code == 0, "receiver did not get every packet"
    received_events = np.load(output_path)
    received_seq = np.load(str(output_path) + ".seq.npy")
    assert received_seq.tolist() == [packet.seq for packet in packets]
    assert received_events.dtype == expected_events.dtype
    assert received_events.shape == expected_events.shape
    np.testing.assert_array_equal(received_events, expected_events)
