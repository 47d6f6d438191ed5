"""ROS 2 node ``spikems_segmenter``: segment moving objects in an event stream with SpikeMS.

Subscribes ``~/events`` (event_camera_msgs/EventPacket). The subscription
callback only decodes and queues; a worker thread runs the segmentation
pipeline and publishes, once per window of ``publish_period_ms`` event time:

- ``~/foreground_events`` (EventPacket): the input events the network marks as moving;
- ``~/detections`` (vision_msgs/Detection2DArray): boxes of moving objects;
- ``~/image`` (sensor_msgs/Image, bgr8) and ``~/mask`` (mono8), when ``publish_images``;
- ``~/synaptic_ops`` (spikems_ros/SynapticOps): the network's work and energy estimate;
- ``/diagnostics`` (diagnostic_msgs/DiagnosticArray), every ``diagnostics_period_s``.

Outputs are stamped with event time, so a replayed bag gives replayed stamps.
Run it with ``ros2 run spikems_ros segmenter_node`` or ``segmenter_node`` from
a pip installation, or ``python -m spikems_ros.ros.segmenter_node``.
"""

import dataclasses
import sys
import threading
import time

import numpy as np
import rclpy
import rclpy.logging
import torch
from diagnostic_msgs.msg import DiagnosticArray
from event_camera_msgs.msg import EventPacket
from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.executors import ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from spikems_ros import outputs
from spikems_ros.events.packet import PacketDecoder, stamp_to_ns
from spikems_ros.msg import SynapticOps
from spikems_ros.pipeline import SegmentationPipeline, WindowResult
from spikems_ros.ros.event_queue import EventQueue
from spikems_ros.ros.health import HealthSnapshot, health_report
from spikems_ros.ros.log_bridge import library_logs_forwarded
from spikems_ros.ros.messages import make_message
from spikems_ros.ros.parameters import (
    PARAMETER_SPECS,
    ParameterError,
    pipeline_config,
    resolve_weights_path,
    settings_from_values,
)
from spikems_ros.snn.weights import load_network, read_weights

NODE_NAME = outputs.NODE_NAME

# Minimum time between two repeats of one hot-path warning, in seconds.
LOG_THROTTLE_S = 5.0

# How long the worker waits for a packet before checking whether to stop, in seconds.
WORKER_POLL_S = 0.1

# Packets the worker joins into one network call, and the largest time from one packet's
# latest event to the next packet's earliest event that still joins them. Larger gaps,
# and any step backwards, go through the pipeline's time-jump handling packet by packet.
MAX_PACKETS_PER_CALL = 100
MAX_JOIN_GAP_US = 10_000

# Largest width or height accepted from an EventPacket. It keeps a corrupt header
# from allocating network state for an absurd frame, and is far above the
# sensors in use (the Prophesee IMX636 is 1280x720).
MAX_SENSOR_SIZE = 4096

_PARAMETER_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}

_MESSAGE_TYPES = {
    "foreground_events": EventPacket,
    "detections": Detection2DArray,
    "image": Image,
    "mask": Image,
    "synaptic_ops": SynapticOps,
}


class SegmenterNode(Node):
    """Motion segmentation of an event stream with the SpikeMS spiking network.

    ``node_options`` go to rclpy's Node (``parameter_overrides``, ``cli_args``,
    ...). Raises ParameterError or WeightsError (both ValueError) for invalid
    parameters or weights, before any topic is created.
    """

    def __init__(self, **node_options):
        super().__init__(NODE_NAME, **node_options)
        self._stop = threading.Event()
        self._worker = None
        try:
            self._set_up()
        except BaseException:
            # Release the rcl node now; the context would otherwise destroy it later.
            self.destroy_node()
            raise

    def _set_up(self) -> None:
        """Validate the parameters, load the network, then create the topics and the worker."""
        self.settings = settings_from_values(self._declare_parameters())
        settings = self.settings

        if settings.device.startswith("cuda") and not torch.cuda.is_available():
            raise ParameterError("device", settings.device, "cpu, because CUDA is not available to PyTorch here")
        self.weights_path = resolve_weights_path(settings.weights)
        metadata = read_weights(self.weights_path).metadata
        self.network = load_network(self.weights_path, settings.device)
        self.config = pipeline_config(settings, metadata, round(self.network.bin_ms * 1000))
        self.get_logger().info(
            f"loaded {self.weights_path} on {settings.device}: bins of {self.config.bin_width_us} us, "
            f"windows of {self.config.window_bins} bins, output delay {self.config.output_delay_bins} bins"
        )

        # Written by the subscription callback (executor thread), read by diagnostics.
        self._decoder = PacketDecoder()
        self._last_seq = None
        self._packets_received = 0
        self._events_received = 0
        self._lost_packets = 0
        self._seq_repeats = 0
        self._duplicate_packets = 0
        self._last_packet_key = None
        self._decode_errors = 0
        self._events_out_of_range = 0
        self._queue = EventQueue(settings.max_latency_ms * 1000)

        # Written by the worker thread only.
        self._pipeline = None
        self._resolution_changes = 0
        self._processing_errors = 0
        self._packets_processed = 0
        self._windows_published = 0
        # Wall time of the worker's finished calls and the bins they ran, in seconds and bins.
        self._worker_totals = (0.0, 0)
        self._output_seq = 0
        self._last_foreground_time_us = None
        self._last_window_end_us = None
        self._frame_id = settings.frame_id

        result_qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=10)
        self._result_publishers = {
            topic: self.create_publisher(message_type, f"~/{topic}", result_qos)
            for topic, message_type in _MESSAGE_TYPES.items()
            if settings.publish_images or topic not in ("image", "mask")
        }
        self._diagnostics_publisher = self.create_publisher(DiagnosticArray, outputs.DIAGNOSTICS_TOPIC, result_qos)

        events_qos = QoSProfile(
            reliability=ReliabilityPolicy.RELIABLE if settings.events_qos_reliable else ReliabilityPolicy.BEST_EFFORT,
            history=HistoryPolicy.KEEP_LAST,
            depth=settings.events_qos_depth,
        )
        self._subscription = self.create_subscription(EventPacket, "~/events", self._on_packet, events_qos)

        self._previous_snapshot = None
        self._diagnostics_timer = self.create_timer(settings.diagnostics_period_s, self._publish_diagnostics)

        self._worker = threading.Thread(target=self._run_worker, name="spikems_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"subscribed to {self._subscription.topic_name} "
            f"({'reliable' if settings.events_qos_reliable else 'best effort'}, depth {settings.events_qos_depth})"
        )

    def _declare_parameters(self) -> dict:
        """Declare every parameter with its descriptor and return the values set."""
        values = {}
        for spec in PARAMETER_SPECS:
            descriptor = ParameterDescriptor(
                name=spec.name,
                type=_PARAMETER_TYPES[type(spec.default)],
                description=spec.description,
                additional_constraints=spec.constraints,
                read_only=True,
                # rclpy would reject a value of another type without naming the
                # accepted range. settings_from_values checks types itself and
                # converts integers given for doubles (1 for 1.0).
                dynamic_typing=True,
            )
            values[spec.name] = self.declare_parameter(spec.name, spec.default, descriptor).value
        return values

    # Subscription callback: decode and queue, nothing else.

    def _on_packet(self, message: EventPacket) -> None:
        self._packets_received += 1
        if self._is_duplicate(message):
            self._duplicate_packets += 1
            self.get_logger().warning(
                f"skipped a duplicate of packet seq {message.seq} ({self._duplicate_packets} skipped so far)",
                throttle_duration_sec=LOG_THROTTLE_S,
            )
            return
        self._count_lost_packets(int(message.seq))

        if not (0 < message.width <= MAX_SENSOR_SIZE and 0 < message.height <= MAX_SENSOR_SIZE):
            self._decode_errors += 1
            self.get_logger().warning(
                f"skipped packet seq {message.seq}: size {message.width}x{message.height} is invalid, "
                f"expected 1 to {MAX_SENSOR_SIZE} pixels per side ({self._decode_errors} skipped so far)",
                throttle_duration_sec=LOG_THROTTLE_S,
            )
            return

        try:
            decoded = self._decoder.decode(
                message.encoding,
                message.events,
                time_base_ns=message.time_base,
                stamp_ns=stamp_to_ns(message.header.stamp.sec, message.header.stamp.nanosec),
                is_bigendian=message.is_bigendian,
            )
        except ValueError as error:
            # DecodeError is a ValueError. The decoders check a payload before
            # changing their state, so the stream continues with the next packet.
            self._decode_errors += 1
            self.get_logger().warning(
                f"skipped undecodable packet seq {message.seq}: {error} ({self._decode_errors} skipped so far)",
                throttle_duration_sec=LOG_THROTTLE_S,
            )
            return

        events = self._drop_out_of_range(decoded.events, message)
        dropped = self._queue.put(events, message.width, message.height, message.header.frame_id)
        if dropped:
            self.get_logger().warning(
                f"processing is behind by more than max_latency_ms = {self.settings.max_latency_ms}; "
                f"dropped the {dropped} oldest packets ({self._queue.counters.dropped_packets} so far)",
                throttle_duration_sec=LOG_THROTTLE_S,
            )

    def _is_duplicate(self, message: EventPacket) -> bool:
        """Return whether the packet repeats the previous one: same seq, stamp and payload.

        Decoding a repeat would feed its events a second time, which the binner
        takes for time going backwards, so it would reset the network.
        """
        stamp = message.header.stamp
        key = (int(message.seq), int(stamp.sec), int(stamp.nanosec), message.encoding)
        previous_key, previous_events = self._last_packet_key or (None, None)
        self._last_packet_key = (key, message.events)
        # Payloads are compared only when the cheap fields match, which is rare outside duplicates.
        return key == previous_key and bytes(message.events) == bytes(previous_events)

    def _count_lost_packets(self, seq: int) -> None:
        """Count gaps in seq as lost packets, and a seq not above the previous one as a repeat.

        A repeat comes from a reordered packet or a restarted publisher, and neither is a loss.
        """
        if self._last_seq is not None and seq > self._last_seq + 1:
            self._lost_packets += seq - self._last_seq - 1
        elif self._last_seq is not None and seq <= self._last_seq:
            self._seq_repeats += 1
        self._last_seq = seq

    def _drop_out_of_range(self, events: np.ndarray, message: EventPacket) -> np.ndarray:
        """Return the events inside the packet's width x height, counting and logging the others."""
        self._events_received += int(events.shape[0])
        inside = (events["x"] < message.width) & (events["y"] < message.height)
        outside_count = int(events.shape[0] - np.count_nonzero(inside))
        if outside_count == 0:
            return events

        self._events_out_of_range += outside_count
        self.get_logger().warning(
            f"dropped {outside_count} events of packet seq {message.seq} outside its "
            f"{message.width}x{message.height} sensor ({self._events_out_of_range} dropped so far)",
            throttle_duration_sec=LOG_THROTTLE_S,
        )
        return events[inside]

    # Worker thread: pipeline and publishing.

    def _run_worker(self) -> None:
        # NOTE: only new events complete bins, so when the stream stops, the last
        # windows (one window plus the output delay) wait for the next events.
        # Every packet queued while the network ran goes into the next call, as one stream:
        # a network pass has a fixed cost, which 1 ms packets one by one would pay each.
        # NOTE: at 346x260 and 1000 packets per second on 2 cores the node still falls behind
        # (spikems bench node: p50 2.4 s), with the backlog in the DDS reader, not here.
        while not self._stop.is_set():
            run = self._queue.get_run(WORKER_POLL_S, MAX_PACKETS_PER_CALL, MAX_JOIN_GAP_US)
            if not run:
                continue
            packet = run[0]
            if len(run) > 1:
                packet = dataclasses.replace(
                    packet, events=np.concatenate([queued.events for queued in run]),
                    span_us=sum(queued.span_us for queued in run), last_us=run[-1].last_us,
                )
            started_s = time.perf_counter()
            bins_run = 0
            try:
                bins_run = self._process(packet)
            except Exception as error:  # noqa: BLE001
                # Bad input raises ValueError, and PyTorch failures such as running out of GPU
                # memory raise RuntimeError. Any Exception skips this call only: the worker goes on.
                self._processing_errors += 1
                self.get_logger().error(
                    f"skipped {len(run)} packet(s) of {packet.events.shape[0]} events after a processing error: "
                    f"{type(error).__name__}: {error} ({self._processing_errors} errors so far)",
                    throttle_duration_sec=LOG_THROTTLE_S,
                )
            # One assignment, so that a diagnostics snapshot reads busy time and bins of the
            # same finished calls: a call can span several diagnostics periods.
            busy_s, bins = self._worker_totals
            self._worker_totals = (busy_s + time.perf_counter() - started_s, bins + bins_run)
            self._packets_processed += len(run)

    def _process(self, packet) -> int:
        """Run the packet's events through the pipeline, publish the finished windows, return the bins run."""
        if not self.settings.frame_id:
            self._frame_id = packet.frame_id
        pipeline = self._pipeline_for(packet.width, packet.height)
        bins_before = pipeline.counters.bins_processed

        resets_before = pipeline.counters.time_resets
        results = pipeline.push_events(packet.events)
        if pipeline.counters.time_resets != resets_before:
            self.get_logger().warning(
                f"event time jumped (a bag loop or a driver restart); network state reset "
                f"({pipeline.counters.time_resets} resets so far)",
                throttle_duration_sec=LOG_THROTTLE_S,
            )

        for result in results:
            self._publish(result, pipeline)
        return pipeline.counters.bins_processed - bins_before

    def _pipeline_for(self, width: int, height: int) -> SegmentationPipeline:
        """Return the pipeline for the packet's resolution, building or resizing it first."""
        if self._pipeline is None:
            self._pipeline = SegmentationPipeline(self.network, width, height, self.config, self.settings.device)
            self.get_logger().info(f"first events: sensor of {width}x{height} pixels")
        elif (width, height) != (self._pipeline.width, self._pipeline.height):
            self._resolution_changes += 1
            self.get_logger().warning(
                f"resolution changed from {self._pipeline.width}x{self._pipeline.height} to {width}x{height}; "
                f"network state rebuilt ({self._resolution_changes} changes so far)",
                throttle_duration_sec=LOG_THROTTLE_S,
            )
            self._pipeline.resize(width, height)
        return self._pipeline

    def _publish(self, result: WindowResult, pipeline: SegmentationPipeline) -> None:
        width, height, frame_id = pipeline.width, pipeline.height, self._frame_id
        if self._last_window_end_us is not None and result.window.start_us < self._last_window_end_us:
            # Time went backwards: the evt3 encoder counts wraps from the previous
            # packet, which only works forwards in time.
            self._last_foreground_time_us = None
        self._last_window_end_us = result.window.end_us

        packet = outputs.foreground_packet(
            result, seq=self._output_seq, width=width, height=height, encoding=self.settings.output_encoding,
            frame_id=frame_id, previous_time_us=self._last_foreground_time_us,
        )
        self._output_seq += 1
        foreground_times_us = result.window.events["t"][result.window.foreground]
        if foreground_times_us.size:
            self._last_foreground_time_us = int(foreground_times_us.max())

        messages = {
            "foreground_events": packet,
            "detections": outputs.detections(result, frame_id),
            "synaptic_ops": outputs.synaptic_ops(
                result, frame_id, self.config.bin_width_us, self.config.output_delay_bins
            ),
        }
        if self.settings.publish_images:
            messages["image"] = outputs.overlay_image(result, width, height, frame_id)
            messages["mask"] = outputs.mask_image(result, width, height, frame_id)
        for topic, values in messages.items():
            self._result_publishers[topic].publish(make_message(_MESSAGE_TYPES[topic], values))
        self._windows_published += 1

    # Diagnostics (timer on the executor thread).

    def snapshot(self) -> HealthSnapshot:
        """Return the node's cumulative counters now."""
        pipeline = self._pipeline
        queue_counters = self._queue.counters
        values = dict(
            wall_s=time.monotonic(),
            packets_received=self._packets_received,
            events_received=self._events_received,
            lost_packets=self._lost_packets,
            seq_repeats=self._seq_repeats,
            duplicate_packets=self._duplicate_packets,
            decode_errors=self._decode_errors,
            events_out_of_range=self._events_out_of_range,
            dropped_packets=queue_counters.dropped_packets,
            dropped_events=queue_counters.dropped_events,
            dropped_span_us=queue_counters.dropped_span_us,
            packets_processed=self._packets_processed,
            windows_published=self._windows_published,
            time_reanchors=self._decoder.reanchor_count,
            untimed_events_dropped=self._decoder.untimed_events_dropped,
            resolution_changes=self._resolution_changes,
            processing_errors=self._processing_errors,
            worker_busy_s=self._worker_totals[0],
            worker_bins=self._worker_totals[1],
            queued_packets=self._queue.queued_packets,
            queued_span_us=self._queue.queued_span_us,
        )
        if pipeline is not None:
            counters = pipeline.counters
            recent_ms = list(counters.bin_processing_ms)
            values.update(
                events_processed=counters.events_in,
                events_foreground=counters.events_foreground,
                bins_processed=counters.bins_processed,
                time_resets=counters.time_resets,
                bin_processing_ms_median=float(np.median(recent_ms)) if recent_ms else 0.0,
                width=pipeline.width,
                height=pipeline.height,
            )
        return HealthSnapshot(**values)

    def _publish_diagnostics(self) -> None:
        current = self.snapshot()
        values, level, message = health_report(current, self._previous_snapshot, self.config.bin_width_us)
        self._previous_snapshot = current
        values["device"] = self.settings.device
        values["weights"] = str(self.weights_path)
        stamp_us = self.get_clock().now().nanoseconds // 1000
        array = outputs.diagnostics(stamp_us, values, level=level, message=message)
        self._diagnostics_publisher.publish(make_message(DiagnosticArray, array))

    def destroy_node(self) -> None:
        """Stop the worker thread, then destroy the node."""
        self._stop.set()
        if self._worker is not None:
            self._queue.close()
            self._worker.join(timeout=10.0)
            if self._worker.is_alive():
                self.get_logger().warning("worker thread still running after 10 s; destroying the node anyway")
        super().destroy_node()


def main(args=None) -> int:
    """Run the node until Ctrl-C or shutdown; return the exit code (1 when it cannot start)."""
    try:
        rclpy.init(args=args)
    except _rclpy.RCLError as error:
        # An unreadable --params-file or malformed --ros-args end here.
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {str(error).splitlines()[0]}")
        return 1
    logger = rclpy.logging.get_logger(NODE_NAME)
    node = None
    try:
        with library_logs_forwarded(logger) as log_handler:
            try:
                node = SegmenterNode()
            except (ValueError, OSError) as error:
                # ParameterError and WeightsError are ValueErrors; OSError covers unreadable files.
                logger.fatal(f"cannot start: {error}")
                return 1
            # The node's logger carries its namespace, which the command line may set.
            log_handler.ros_logger = node.get_logger()
            rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
