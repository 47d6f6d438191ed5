"""The segmenter node as a separate process over Fast DDS: a real bag replayed into it, and input faults.

Each test starts ``python -m spikems_ros.ros.segmenter_node`` in its own
namespace, publishes EventPackets best effort as a camera driver does, and
records every output topic and /diagnostics in the test process.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import real_file

rclpy = pytest.importorskip("rclpy", reason="rclpy is installed by make setup")
event_camera_msgs = pytest.importorskip("event_camera_msgs.msg", reason="event_camera_msgs is built by make setup")
vision_msgs = pytest.importorskip("vision_msgs.msg", reason="vision_msgs is built by make setup")

import torch  # noqa: E402
from bag_packets import decode_messages, read_bag_packets, to_ros_message  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from spikems_ros.events.dtype import make_events  # noqa: E402
from spikems_ros.events.packet import encode_packet_payload, stamp_to_ns  # noqa: E402
from spikems_ros.msg import SynapticOps  # noqa: E402
from spikems_ros.snn.network import SpikeMSNetwork  # noqa: E402
from spikems_ros.snn.weights import save_weights  # noqa: E402

OUTPUT_TYPES = {
    "foreground_events": event_camera_msgs.EventPacket,
    "detections": vision_msgs.Detection2DArray,
    "image": Image,
    "mask": Image,
    "synaptic_ops": SynapticOps,
}
STATUS_NAME = "spikems_segmenter: pipeline"

# Node start-up imports PyTorch and loads the weights; on a busy machine that takes a while.
STARTUP_TIMEOUT_S = 40.0
PROCESSING_TIMEOUT_S = 45.0

# Packets of test_events_1.db3 replayed: about 76 ms of events (about 6,000 events,
# 640x480). The network costs about 0.1 s per 1 ms bin at 640x480 on one CPU
# thread, so the whole 2 s recording would take minutes.
REPLAY_PACKETS = 20

# Packets of the same recording played twice in the loop test (about 30 ms each time).
LOOP_PACKETS = 8

# Epoch microseconds of the synthetic streams (2023-11-14).
SYNTHETIC_START_US = 1_700_000_000_000_000


@pytest.fixture(scope="module")
def weights_path(tmp_path_factory):
    """A weights file of a seeded random network whose weights are made positive.

    Positive weights make the untrained network fire on part of the input, so
    the outputs hold both foreground and background events to check.
    """
    torch.manual_seed(0)
    network = SpikeMSNetwork()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.abs_()
    path = tmp_path_factory.mktemp("weights") / "positive.pt"
    save_weights(path, network, {"output_delay_bins": 6, "bin_us": 1000})
    return path


class NodeProcess:
    """The segmenter node in a child process, in ``namespace``, logging to ``log_path``."""

    def __init__(self, namespace: str, weights, log_path: Path, **parameters):
        arguments = [
            sys.executable, "-m", "spikems_ros.ros.segmenter_node", "--ros-args",
            "-r", f"__ns:={namespace}",
            "-r", f"~/events:={namespace}/events",
            "-p", f"weights:={weights}",
            # Nothing may be dropped: the checks count every event.
            "-p", "max_latency_ms:=600000",
            "-p", "diagnostics_period_s:=0.5",
        ]
        for name, value in parameters.items():
            arguments += ["-p", f"{name}:={value}"]
        environment = dict(os.environ)
        # One PyTorch thread: on a machine whose cores are shared, more threads
        # make every network step many times slower.
        environment["OMP_NUM_THREADS"] = "1"
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(arguments, env=environment, stdout=self._log, stderr=subprocess.STDOUT)

    def is_running(self) -> bool:
        return self.process.poll() is None

    def interrupt(self, timeout_s: float = 15.0) -> int:
        """Send SIGINT (Ctrl-C) and return the exit code."""
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        """Make sure the process is gone: SIGINT first, then SIGKILL."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


class RosDriver:
    """A ROS context in the test process: publishes events and records every output of the node."""

    def __init__(self, namespace: str):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("segmenter_test_driver", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)

        reliable = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=1000)
        self.messages = {topic: [] for topic in OUTPUT_TYPES}
        self.subscriptions = []
        for topic, message_type in OUTPUT_TYPES.items():
            self.subscriptions.append(
                self.node.create_subscription(
                    message_type, f"{namespace}/spikems_segmenter/{topic}",
                    lambda message, topic=topic: self.messages[topic].append(message), reliable,
                )
            )
        self.statuses = []
        self.subscriptions.append(
            self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, reliable)
        )
        best_effort = QoSProfile(reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST, depth=1000)
        self.publisher = self.node.create_publisher(event_camera_msgs.EventPacket, f"{namespace}/events", best_effort)

    def _on_diagnostics(self, message) -> None:
        for status in message.status:
            if status.name == STATUS_NAME:
                self.statuses.append(status)

    def diagnostics(self) -> dict:
        """Key-value pairs of the latest status of the node, or {} before the first one."""
        if not self.statuses:
            return {}
        return {value.key: value.value for value in self.statuses[-1].values}

    def spin_until(self, condition, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return True
            self.executor.spin_once(timeout_sec=0.05)
        return condition()

    def spin_for(self, duration_s: float) -> None:
        self.spin_until(lambda: False, duration_s)

    def wait_connected(self, timeout_s: float) -> bool:
        """Wait until the node subscribes to the events and publishes every output and diagnostics."""
        return self.spin_until(
            lambda: self.publisher.get_subscription_count() >= 1
            and all(subscription.get_publisher_count() >= 1 for subscription in self.subscriptions)
            and bool(self.statuses),
            timeout_s,
        )

    def publish(self, packets) -> None:
        for packet in packets:
            self.publisher.publish(packet)
            # Pace the stream so the best-effort reader keeps up, and record outputs meanwhile.
            self.executor.spin_once(timeout_sec=0.002)

    def wait_processed(self, packet_count: int, event_count: int, timeout_s: float) -> bool:
        """Wait until the node reports the packets and events processed and every window received."""
        def done() -> bool:
            values = self.diagnostics()
            return (
                values.get("packets_processed") == str(packet_count)
                and values.get("events_processed") == str(event_count)
                and int(values.get("windows_published", -1)) == len(self.messages["synaptic_ops"])
                and all(len(messages) == len(self.messages["synaptic_ops"]) for messages in self.messages.values())
            )
        return self.spin_until(done, timeout_s)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def event_set(events: np.ndarray) -> set:
    return set(zip(events["x"].tolist(), events["y"].tolist(), events["t"].tolist(), events["p"].tolist()))


def stamp_us(message) -> int:
    return stamp_to_ns(message.header.stamp.sec, message.header.stamp.nanosec) // 1000


def synthetic_packet(rng, *, seq: int, start_us: int, width: int, height: int, duration_us: int = 2000,
                     event_count: int = 150, frame_id: str = "synthetic_camera"):
    """A mono EventPacket of random events over ``duration_us`` from ``start_us`` (epoch time base)."""
    events = make_events(
        rng.integers(0, width, event_count),
        rng.integers(0, height, event_count),
        np.sort(rng.integers(start_us, start_us + duration_us, event_count)),
        rng.integers(0, 2, event_count),
    )
    payload, time_base_ns = encode_packet_payload("mono", events)
    message = event_camera_msgs.EventPacket()
    message.header.stamp.sec = start_us // 1_000_000
    message.header.stamp.nanosec = (start_us % 1_000_000) * 1000
    message.header.frame_id = frame_id
    message.width = width
    message.height = height
    message.seq = seq
    message.time_base = time_base_ns
    message.encoding = "mono"
    message.is_bigendian = False
    message.events = payload
    return message


def synthetic_stream(rng, *, count: int, first_seq: int, start_us: int, width: int = 64, height: int = 48):
    return [
        synthetic_packet(rng, seq=first_seq + index, start_us=start_us + index * 2000, width=width, height=height)
        for index in range(count)
    ]


def event_count(packets) -> int:
    return int(decode_messages(packets).shape[0])


def run_node(tmp_path, weights_path, namespace, **parameters):
    node = NodeProcess(namespace, weights_path, tmp_path / "node.log", **parameters)
    driver = None
    try:
        driver = RosDriver(namespace)
        connected = driver.wait_connected(STARTUP_TIMEOUT_S)
    except BaseException:
        if driver is not None:
            driver.close()
        node.stop()
        raise
    if not connected:
        driver.close()
        node.stop()
        pytest.fail(f"node did not connect within {STARTUP_TIMEOUT_S} s; its log:\n{node.log_text()}")
    return node, driver


@pytest.mark.ros
def test_bag_replay_publishes_every_output(tmp_path, weights_path):
    bag_packets = read_bag_packets(real_file("test_events_1.db3"))[:REPLAY_PACKETS]
    sent_events = decode_messages(bag_packets)
    expected_lost = sum(max(int(b.seq) - int(a.seq) - 1, 0) for a, b in zip(bag_packets, bag_packets[1:]))
    width, height = int(bag_packets[0].width), int(bag_packets[0].height)

    # Every foreground pixel makes or joins a box, so the boxes can be checked exactly.
    node, driver = run_node(
        tmp_path, weights_path, "/bag_replay", box_min_pixels=1, box_noise_min_neighbours=0, tracking="false"
    )
    try:
        driver.publish([to_ros_message(packet) for packet in bag_packets])
        processed = driver.wait_processed(len(bag_packets), len(sent_events), PROCESSING_TIMEOUT_S)
        diagnostics = driver.diagnostics()
        exit_code = node.interrupt()
    finally:
        driver.close()
        node.stop()
    log = node.log_text()
    assert processed, f"node did not process every event; diagnostics {diagnostics}; log:\n{log}"
    assert exit_code == 0, f"node exited with {exit_code} on SIGINT; log:\n{log}"

    messages = driver.messages
    for topic, received in messages.items():
        assert received, f"nothing received on {topic}"
    assert diagnostics["events_received"] == str(len(sent_events))
    assert diagnostics["events_processed"] == str(len(sent_events))
    assert diagnostics["packets_received"] == str(len(bag_packets))
    assert diagnostics["lost_packets"] == str(expected_lost)
    assert expected_lost == 0
    assert diagnostics["decode_errors"] == "0"
    assert diagnostics["dropped_packets"] == "0"
    assert diagnostics["time_resets"] == "0"
    assert diagnostics["resolution"] == f"{width}x{height}"
    assert float(diagnostics["bin_processing_ms_median"]) > 0.0

    foreground = decode_messages(messages["foreground_events"])
    assert foreground.shape[0] > 0, "the test network marked no event as foreground"
    assert foreground.shape[0] < len(sent_events), "the test network marked every event as foreground"
    assert event_set(foreground) <= event_set(sent_events)
    assert len(event_set(foreground)) == foreground.shape[0]
    assert diagnostics["events_foreground"] == str(foreground.shape[0])

    for topic, received in messages.items():
        stamps = [stamp_us(message) for message in received]
        assert stamps == sorted(stamps), f"stamps on {topic} are not monotonic: {stamps}"
        assert stamps[0] >= int(sent_events["t"].min()), f"{topic} is stamped before the first event"
        assert stamps[-1] <= int(sent_events["t"].max()) + 20_000, f"{topic} is stamped after the last window"
        for message in received:
            assert message.header.frame_id == bag_packets[0].header.frame_id

    for window_index, (packet, mask, image) in enumerate(zip(messages["foreground_events"], messages["mask"],
                                                              messages["image"])):
        assert (mask.width, mask.height, mask.encoding) == (width, height, "mono8")
        assert (image.width, image.height, image.encoding) == (width, height, "bgr8")
        pixels = np.frombuffer(bytes(mask.data), dtype=np.uint8).reshape(height, width)
        window_events = decode_messages([packet])
        expected = np.zeros((height, width), dtype=np.uint8)
        expected[window_events["y"], window_events["x"]] = 255
        np.testing.assert_array_equal(pixels, expected, err_msg=f"mask of window {window_index}")

    boxes_total = 0
    for packet, detections in zip(messages["foreground_events"], messages["detections"]):
        window_events = decode_messages([packet])
        boxes = [
            (
                detection.bbox.center.position.x - (detection.bbox.size_x - 1) / 2,
                detection.bbox.center.position.y - (detection.bbox.size_y - 1) / 2,
                detection.bbox.center.position.x + (detection.bbox.size_x - 1) / 2,
                detection.bbox.center.position.y + (detection.bbox.size_y - 1) / 2,
            )
            for detection in detections.detections
        ]
        boxes_total += len(boxes)
        for x, y in zip(window_events["x"].tolist(), window_events["y"].tolist()):
            assert any(x_min <= x <= x_max and y_min <= y <= y_max for x_min, y_min, x_max, y_max in boxes), (
                f"foreground pixel ({x}, {y}) is in no box of window {stamp_us(detections)}"
            )
        for detection in detections.detections:
            assert detection.id == ""
            assert detection.results[0].hypothesis.class_id == "moving"
    assert boxes_total > 0

    layer_names = list(SpikeMSNetwork().layer_names)
    for operations in messages["synaptic_ops"]:
        assert [layer.name for layer in operations.layers] == layer_names
        assert operations.total_synaptic_ops == sum(layer.synaptic_ops for layer in operations.layers)
        assert operations.bin_width_us == 1000


@pytest.mark.ros
def test_bag_loop_resets_state(tmp_path, weights_path):
    bag_packets = read_bag_packets(real_file("test_events_1.db3"))[:LOOP_PACKETS]
    # Played in a loop, the recording starts over: stamps, sensor time and seq go back.
    looped = bag_packets + bag_packets
    sent_events = decode_messages(looped)

    node, driver = run_node(tmp_path, weights_path, "/bag_loop")
    try:
        driver.publish([to_ros_message(packet) for packet in looped])
        processed = driver.wait_processed(len(looped), len(sent_events), PROCESSING_TIMEOUT_S)
        diagnostics = driver.diagnostics()
        running = node.is_running()
    finally:
        driver.close()
        node.stop()
    log = node.log_text()
    assert processed, f"node did not process every event; diagnostics {diagnostics}; log:\n{log}"
    assert running
    assert diagnostics["time_resets"] == "1"
    assert diagnostics["lost_packets"] == "0"
    assert diagnostics["decode_errors"] == "0"
    assert "event time jumped" in log

    # The second pass decodes to the same times as the first, so its windows repeat the first pass's stamps.
    window_ends_us = [stamp_us(message) for message in driver.messages["detections"]]
    restarts = [index for index in range(1, len(window_ends_us)) if window_ends_us[index] < window_ends_us[index - 1]]
    assert len(restarts) == 1, f"window end stamps {window_ends_us}"
    restart = restarts[0]
    assert window_ends_us[restart] == window_ends_us[0]
    foreground = decode_messages(driver.messages["foreground_events"][restart:])
    assert event_set(foreground) <= event_set(sent_events)


@pytest.mark.ros
def test_undecodable_packets_are_skipped(tmp_path, weights_path):
    rng = np.random.default_rng(1)
    before = synthetic_stream(rng, count=10, first_seq=0, start_us=SYNTHETIC_START_US)
    bad_start_us = SYNTHETIC_START_US + 10 * 2000

    unknown_encoding = synthetic_packet(rng, seq=10, start_us=bad_start_us, width=64, height=48)
    unknown_encoding.encoding = "no_such_encoding"
    truncated_evt3 = synthetic_packet(rng, seq=11, start_us=bad_start_us, width=64, height=48)
    truncated_evt3.encoding = "evt3"
    truncated_evt3.time_base = 0
    truncated_evt3.events = b"\x00\x80\x01"  # one TIME_HIGH word and one byte of the next
    # seq 12 and 13 never arrive.
    after = synthetic_stream(rng, count=10, first_seq=14, start_us=bad_start_us)
    good_events = event_count(before) + event_count(after)

    node, driver = run_node(tmp_path, weights_path, "/undecodable")
    try:
        driver.publish(before + [unknown_encoding, truncated_evt3] + after)
        processed = driver.wait_processed(len(before) + len(after), good_events, PROCESSING_TIMEOUT_S)
        diagnostics = driver.diagnostics()
        running = node.is_running()
    finally:
        driver.close()
        node.stop()
    log = node.log_text()
    assert processed, f"node did not process the good packets; diagnostics {diagnostics}; log:\n{log}"
    assert running
    assert diagnostics["decode_errors"] == "2"
    assert diagnostics["lost_packets"] == "2"
    assert diagnostics["packets_received"] == "22"
    assert "skipped undecodable packet seq 10" in log
    window_ends_us = [stamp_us(message) for message in driver.messages["detections"]]
    assert max(window_ends_us) > bad_start_us, "no window after the undecodable packets was published"
    assert driver.statuses[-1].level in (b"\x00", b"\x01")


@pytest.mark.ros
def test_time_jump_backwards_resets(tmp_path, weights_path):
    rng = np.random.default_rng(2)
    first_loop = synthetic_stream(rng, count=12, first_seq=0, start_us=SYNTHETIC_START_US)
    # A bag played in a loop starts over one second earlier.
    second_loop = synthetic_stream(rng, count=12, first_seq=12, start_us=SYNTHETIC_START_US - 1_000_000)
    total_events = event_count(first_loop) + event_count(second_loop)

    node, driver = run_node(tmp_path, weights_path, "/time_jump")
    try:
        driver.publish(first_loop + second_loop)
        processed = driver.wait_processed(24, total_events, PROCESSING_TIMEOUT_S)
        diagnostics = driver.diagnostics()
        running = node.is_running()
    finally:
        driver.close()
        node.stop()
    log = node.log_text()
    assert processed, f"node did not process every event; diagnostics {diagnostics}; log:\n{log}"
    assert running
    assert diagnostics["time_resets"] == "1"
    assert "event time jumped" in log
    window_ends_us = [stamp_us(message) for message in driver.messages["detections"]]
    assert any(end_us > SYNTHETIC_START_US for end_us in window_ends_us)
    assert window_ends_us[-1] < SYNTHETIC_START_US, "no window of the second loop was published last"


@pytest.mark.ros
def test_resolution_change_rebuilds(tmp_path, weights_path):
    rng = np.random.default_rng(3)
    small = synthetic_stream(rng, count=12, first_seq=0, start_us=SYNTHETIC_START_US, width=64, height=48)
    large = synthetic_stream(rng, count=12, first_seq=12, start_us=SYNTHETIC_START_US + 24_000, width=80, height=60)
    total_events = event_count(small) + event_count(large)

    node, driver = run_node(tmp_path, weights_path, "/resolution")
    try:
        driver.publish(small + large)
        processed = driver.wait_processed(24, total_events, PROCESSING_TIMEOUT_S)
        diagnostics = driver.diagnostics()
        running = node.is_running()
    finally:
        driver.close()
        node.stop()
    log = node.log_text()
    assert processed, f"node did not process every event; diagnostics {diagnostics}; log:\n{log}"
    assert running
    assert diagnostics["resolution_changes"] == "1"
    assert diagnostics["resolution"] == "80x60"
    masks = driver.messages["mask"]
    assert (masks[0].width, masks[0].height) == (64, 48)
    assert (masks[-1].width, masks[-1].height) == (80, 60)
    assert (driver.messages["foreground_events"][-1].width, driver.messages["foreground_events"][-1].height) == (80, 60)
