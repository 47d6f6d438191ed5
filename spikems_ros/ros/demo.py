"""The built-in demo: a synthetic scene replayed over DDS into a running segmenter node.

1. Generate a short labelled synthetic scene (no download).
2. Start ``segmenter_node`` as its own process.
3. Publish the scene as evt3 EventPackets of 1 ms each over Fast DDS.
4. Collect the node's foreground events, images and diagnostics.
5. Score the published foreground against the ground truth and save an overlay.
"""

import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from event_camera_msgs.msg import EventPacket
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from spikems_ros.evaluation.metrics import event_pixel_iou
from spikems_ros.events.packet import PacketDecoder, encode_packet_payload, stamp_to_ns
from spikems_ros.outputs import NODE_NAME

LOG = logging.getLogger(__name__)

EVENTS_TOPIC = "/spikems_demo/events"
PACKET_DURATION_US = 1000


def _packets(events: np.ndarray, start_us: int, end_us: int) -> list:
    """Split events into consecutive 1 ms packets: (first event time or packet start, events)."""
    boundaries = np.arange(start_us, end_us + PACKET_DURATION_US, PACKET_DURATION_US)
    splits = np.searchsorted(events["t"], boundaries[1:-1])
    return [(int(boundaries[index]), chunk) for index, chunk in enumerate(np.split(events, splits))]


def evt3_packet_message(chunk: np.ndarray, packet_start_us: int, sequence_number: int, width: int, height: int,
                        previous_time_us, frame_id: str = "", stamp_us: int | None = None) -> EventPacket:
    """Encode one packet's events as an evt3 EventPacket stamped with ``stamp_us``, by default its first event time.

    ``previous_time_us`` is the last event time of the packet before (None for the
    first), which the evt3 encoder needs to carry its time words across packets. A
    driver such as metavision_driver stamps packets with host time instead, which
    ``stamp_us`` reproduces.
    """
    payload, time_base_ns = encode_packet_payload("evt3", chunk, previous_time_us=previous_time_us)
    if stamp_us is None:
        stamp_us = int(chunk["t"][0]) if chunk.shape[0] else int(packet_start_us)
    message = EventPacket()
    message.header.stamp.sec, message.header.stamp.nanosec = divmod(stamp_us * 1000, 1_000_000_000)
    message.header.frame_id = frame_id
    message.height, message.width = height, width
    message.seq = sequence_number
    message.time_base = time_base_ns
    message.encoding = "evt3"
    message.events = payload
    return message


def wait_for_subscriber(client, publisher, node_process: subprocess.Popen, deadline_monotonic: float) -> None:
    """Spin ``client`` until the node process subscribes to ``publisher``; raise RuntimeError if it never does."""
    while publisher.get_subscription_count() == 0:
        if node_process.poll() is not None or time.monotonic() > deadline_monotonic:
            raise RuntimeError(f"segmenter node did not start (exit code {node_process.poll()})")
        rclpy.spin_once(client, timeout_sec=0.1)


def stop_node_process(node_process: subprocess.Popen, timeout_s: float = 10.0) -> None:
    """Terminate the node process, and kill it if it has not exited after ``timeout_s``."""
    node_process.terminate()
    try:
        node_process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        node_process.kill()


def _diagnostic_values(message) -> dict:
    for status in message.status:
        if status.name.startswith(NODE_NAME):
            return {value.key: value.value for value in status.values}
    return {}


def window_ious(events: np.ndarray, truth: np.ndarray, predicted: np.ndarray, width: int, height: int,
                window_us: int, skip_us: int) -> list:
    """Event-pixel IoU per window of the published foreground against the labelled foreground."""
    ious = []
    first_us = int(events["t"][0])
    for start_us in range(first_us // window_us * window_us, int(events["t"][-1]) + 1, window_us):
        if start_us < first_us + skip_us:
            continue
        start, stop = np.searchsorted(events["t"], [start_us, start_us + window_us])
        window_events = events[start:stop]
        truth_pixels = np.zeros((height, width), dtype=bool)
        chosen = window_events[truth[start:stop]]
        truth_pixels[chosen["y"], chosen["x"]] = True
        if not truth_pixels.any():
            continue
        predicted_pixels = np.zeros((height, width), dtype=bool)
        chosen = window_events[predicted[start:stop]]
        predicted_pixels[chosen["y"], chosen["x"]] = True
        ious.append(event_pixel_iou(predicted_pixels, truth_pixels))
    return ious


def run_demo(output_dir: Path, *, weights: str = "", seconds: float = 0.5, seed: int = 4242, width: int = 346,
             height: int = 260, timeout_s: float = 300.0) -> dict:
    """Run the demo and return its figures; writes the overlay PNG into ``output_dir``."""
    from spikems_ros.simulation import SceneConfig, simulate_sequence

    # Check the weights before the scene is generated, so a bad path fails at once.
    from spikems_ros.ros.parameters import resolve_weights_path
    from spikems_ros.snn.weights import read_weights

    read_weights(resolve_weights_path(weights))
    if not timeout_s > 0:
        raise ValueError(f"timeout {timeout_s!r} s is invalid: expected a number > 0")

    output_dir.mkdir(parents=True, exist_ok=True)
    LOG.info("generating a %.2f s synthetic scene at %dx%d (seed %d)", seconds, width, height, seed)
    scene = simulate_sequence(SceneConfig(width=width, height=height, duration_s=seconds, seed=seed), 0)
    events, labels = scene.events, scene.labels > 0
    packets = _packets(events, 0, scene.meta["duration_us"])

    node_command = [
        sys.executable, "-m", "spikems_ros.ros.segmenter_node", "--ros-args",
        "-r", f"~/events:={EVENTS_TOPIC}",
        "-p", "events_qos_reliable:=true",
        "-p", "events_qos_depth:=10000",
        # The replay goes as fast as DDS allows; nothing may be dropped for the score.
        "-p", "max_latency_ms:=100000",
        "-p", "diagnostics_period_s:=0.5",
    ]
    if weights:
        node_command += ["-p", f"weights:={weights}"]
    node = subprocess.Popen(node_command, env=dict(os.environ))

    rclpy.init()
    client = rclpy.create_node("spikems_demo_player")
    received_chunks, diagnostics, last_image, real_time_factors = [], {}, {}, []
    decoder = PacketDecoder()

    def on_foreground(message):
        received_chunks.append(
            decoder.decode(
                message.encoding, bytes(message.events), time_base_ns=message.time_base,
                stamp_ns=stamp_to_ns(message.header.stamp.sec, message.header.stamp.nanosec),
                is_bigendian=message.is_bigendian,
            ).events
        )

    def on_diagnostics(message):
        values = _diagnostic_values(message)
        if values:
            diagnostics.update(values)
            # Each report covers one diagnostics period; idle periods report 0.
            if float(values.get("real_time_factor", 0.0)) > 0:
                real_time_factors.append(float(values["real_time_factor"]))

    def on_image(message):
        last_image["message"] = message

    reliable = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=10000)
    client.create_subscription(EventPacket, f"/{NODE_NAME}/foreground_events", on_foreground, reliable)
    client.create_subscription(Image, f"/{NODE_NAME}/image", on_image, reliable)
    client.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, reliable)
    publisher = client.create_publisher(EventPacket, EVENTS_TOPIC, reliable)

    try:
        deadline = time.monotonic() + timeout_s
        wait_for_subscriber(client, publisher, node, deadline)

        previous_time_us = None
        for sequence_number, (packet_start_us, chunk) in enumerate(packets):
            message = evt3_packet_message(
                chunk, packet_start_us, sequence_number, width, height, previous_time_us, frame_id="demo_camera"
            )
            publisher.publish(message)
            if chunk.shape[0]:
                previous_time_us = int(chunk["t"][-1])
            rclpy.spin_once(client, timeout_sec=0.0)
        LOG.info("published %d packets, %d events", len(packets), events.shape[0])

        # Wait until the node reports every event processed and its windows published.
        while time.monotonic() < deadline:
            rclpy.spin_once(client, timeout_sec=0.1)
            if node.poll() is not None:
                raise RuntimeError(f"segmenter node exited with code {node.returncode}")
            if int(diagnostics.get("events_processed", -1)) >= events.shape[0] and int(
                diagnostics.get("queued_packets", 0)
            ) == 0:
                settle_until = time.monotonic() + 1.0
                while time.monotonic() < settle_until:
                    rclpy.spin_once(client, timeout_sec=0.05)
                break
        else:
            raise TimeoutError(f"the node did not process the scene within {timeout_s:.0f} s")
    finally:
        client.destroy_node()
        rclpy.shutdown()
        stop_node_process(node)

    foreground = np.concatenate(received_chunks) if received_chunks else events[:0]
    base_us = int(events["t"][0]) if events.shape[0] else 0
    predicted = np.isin(_event_keys(events, base_us), _event_keys(foreground, base_us))
    ious = window_ious(events, labels, predicted, width, height, window_us=10_000, skip_us=30_000)

    overlay_path = output_dir / "overlay.png"
    if "message" in last_image:
        _save_image(last_image["message"], overlay_path)
    return {
        "events_in": int(diagnostics.get("events_processed", 0)),
        "events_sent": int(events.shape[0]),
        "foreground": int(foreground.shape[0]),
        "iou": float(np.mean(ious)) if ious else float("nan"),
        "rtf": float(np.median(real_time_factors)) if real_time_factors else float("nan"),
        "overlay": str(overlay_path) if overlay_path.exists() else "",
    }


def _event_keys(events: np.ndarray, base_us: int) -> np.ndarray:
    """Pack each event into one int64 key for set membership: time since ``base_us`` above 34 bits of x, y and p.

    Unique while the times span less than 2**29 us (537 s), far more than a demo scene.
    """
    packed = (events["x"].astype(np.int64) << 17) | (events["y"].astype(np.int64) << 1) | (events["p"] & 1)
    return (events["t"].astype(np.int64) - base_us) * (1 << 34) + packed


def _save_image(message, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pixels = np.frombuffer(bytes(message.data), dtype=np.uint8).reshape(message.height, message.width, -1)
    if message.encoding == "bgr8":
        pixels = pixels[..., ::-1]
    plt.imsave(path, np.ascontiguousarray(pixels))
