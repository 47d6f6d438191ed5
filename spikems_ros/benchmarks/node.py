"""Latency of the segmenter node over Fast DDS (``spikems bench node``).

A generated scene, scaled to the requested event rate, is published as 1 ms evt3
EventPackets in real time (each packet at its event time on the wall clock) to a
``segmenter_node`` process. The node publishes the foreground events of each
window on ``~/foreground_events``. For every input packet whose events come back
as foreground, the latency runs from the packet's publication to the arrival of
the foreground message with its events. That message is received by the
benchmark's subscriber on the same machine, so the latency includes DDS delivery. A window is
published once the output delay after it has been processed, so latency is at
least the output delay (6 bins by default) plus the rest of the 10 ms window.
Packets the node drops to hold its ``max_latency_ms`` never come back, so a node
slower than real time shows few returned packets rather than unbounded latency.
"""

import logging
import os
import subprocess
import sys
import time

import numpy as np

from spikems_ros.benchmarks.scenes import scene_stream
from spikems_ros.benchmarks.system import machine_summary

LOG = logging.getLogger(__name__)

EVENTS_TOPIC = "/spikems_bench/events"
PACKET_US = 1000
# Packets of the first part of the stream are not scored: the node loads its kernels
# and fills its output delay then.
WARMUP_S = 0.5
# The collection ends once no foreground message has arrived for this long.
QUIET_S = 3.0


def run_node_bench(rate_ev_s: float = 1e6, seconds: float = 3.0, width: int = 346, height: int = 260,
                   weights: str = "", timeout_s: float = 120.0) -> dict:
    """Publish a stream into a node process in real time; return latency percentiles in ms."""
    import rclpy
    from event_camera_msgs.msg import EventPacket
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    from spikems_ros.events.packet import PacketDecoder, stamp_to_ns
    from spikems_ros.outputs import NODE_NAME
    from spikems_ros.ros.demo import evt3_packet_message, stop_node_process, wait_for_subscriber

    events = scene_stream(width, height, rate_ev_s, seconds)
    packet_starts_us = np.arange(0, round(seconds * 1e6), PACKET_US)
    splits = np.searchsorted(events["t"], packet_starts_us[1:])
    packets = np.split(events, splits)

    command = [sys.executable, "-m", "spikems_ros.ros.segmenter_node", "--ros-args",
               "-r", f"~/events:={EVENTS_TOPIC}", "-p", "events_qos_reliable:=true",
               "-p", "events_qos_depth:=10000",
               # mono output carries absolute event times; evt3 output would be re-anchored
               # to its header stamps by the decoder here.
               "-p", "output_encoding:=mono"]
    if weights:
        command += ["-p", f"weights:={weights}"]
    node = subprocess.Popen(command, env=dict(os.environ))

    rclpy.init()
    client = rclpy.create_node("spikems_bench_player")
    decoder = PacketDecoder()
    published_s = np.full(len(packets), np.nan)
    returned_s = np.full(len(packets), np.nan)

    last_arrival_s = [time.perf_counter()]

    def on_foreground(message):
        arrived_s = time.perf_counter()
        last_arrival_s[0] = arrived_s
        foreground = decoder.decode(
            message.encoding, bytes(message.events), time_base_ns=message.time_base,
            stamp_ns=stamp_to_ns(message.header.stamp.sec, message.header.stamp.nanosec),
            is_bigendian=message.is_bigendian,
        ).events
        # Event times come back as published (microseconds from the stream start).
        indices = np.unique(foreground["t"] // PACKET_US)
        indices = indices[(indices >= 0) & (indices < len(packets))]
        first_arrival = np.isnan(returned_s[indices])
        returned_s[indices[first_arrival]] = arrived_s

    reliable = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=10000)
    client.create_subscription(EventPacket, f"/{NODE_NAME}/foreground_events", on_foreground, reliable)
    publisher = client.create_publisher(EventPacket, EVENTS_TOPIC, reliable)
    try:
        deadline = time.monotonic() + timeout_s
        wait_for_subscriber(client, publisher, node, deadline)

        previous_time_us = None
        started_s = time.perf_counter()
        for index, chunk in enumerate(packets):
            # Real time: packet k leaves at k ms after the start; spin while waiting.
            while time.perf_counter() < started_s + index * PACKET_US / 1e6:
                rclpy.spin_once(client, timeout_sec=0.0)
            message = evt3_packet_message(chunk, packet_starts_us[index], index, width, height, previous_time_us)
            published_s[index] = time.perf_counter()
            publisher.publish(message)
            if chunk.shape[0]:
                previous_time_us = int(chunk["t"][-1])

        # Collect what is still in flight: windows wait for the output delay, and a
        # node slower than real time works through its queue.
        last_arrival_s[0] = max(last_arrival_s[0], time.perf_counter())
        while time.perf_counter() < last_arrival_s[0] + QUIET_S and time.monotonic() < deadline:
            rclpy.spin_once(client, timeout_sec=0.05)
    finally:
        client.destroy_node()
        rclpy.shutdown()
        stop_node_process(node)

    scored = ~np.isnan(returned_s)
    scored[: int(WARMUP_S * 1e6 / PACKET_US)] = False
    latency_ms = (returned_s - published_s)[scored] * 1e3
    return {
        "machine": machine_summary(),
        "rate_ev_s": rate_ev_s,
        "seconds": seconds,
        "resolution": f"{width}x{height}",
        "packets_published": len(packets),
        "packets_scored": max(len(packets) - int(WARMUP_S * 1e6 / PACKET_US), 0),
        "packets_with_foreground": int(latency_ms.size),
        "latency_p50_ms": float(np.percentile(latency_ms, 50)) if latency_ms.size else float("nan"),
        "latency_p99_ms": float(np.percentile(latency_ms, 99)) if latency_ms.size else float("nan"),
    }


def format_node_report(report: dict) -> str:
    """Format the node latency report as a few lines."""
    machine = report["machine"]
    return "\n".join([
        f"machine: {machine['cpu_model']}, {machine['logical_cores']} logical cores, "
        f"load {machine['load_average_1_5_15_min']}, {machine['date_utc']} UTC",
        f"stream: {report['resolution']} at {report['rate_ev_s'] / 1e6:.2f} Mev/s for {report['seconds']} s",
        f"packets: {report['packets_published']} published, {report['packets_scored']} scored after a "
        f"{WARMUP_S} s warm-up, {report['packets_with_foreground']} of those came back as foreground",
        f"latency: p50 {report['latency_p50_ms']:.1f} ms, p99 {report['latency_p99_ms']:.1f} ms",
    ])
