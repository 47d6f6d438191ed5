"""Parts of the segmenter node tested in-process: messages, parameters, queue, health, node set-up."""

import dataclasses
import logging
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy is installed by make setup")
event_camera_msgs = pytest.importorskip("event_camera_msgs.msg", reason="event_camera_msgs is built by make setup")
vision_msgs = pytest.importorskip("vision_msgs.msg", reason="vision_msgs is built by make setup")

import torch  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PoseWithCovariance  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from spikems_ros import outputs  # noqa: E402
from spikems_ros.events.dtype import EVENT_DTYPE, make_events  # noqa: E402
from spikems_ros.events.packet import PacketDecoder, encode_packet_payload, stamp_to_ns  # noqa: E402
from spikems_ros.msg import SynapticOps  # noqa: E402
from spikems_ros.pipeline import Box, PipelineConfig, SegmentationPipeline, render_mask, render_overlay  # noqa: E402
from spikems_ros.ros import parameters as parameters_module  # noqa: E402
from spikems_ros.ros.event_queue import EventQueue  # noqa: E402
from spikems_ros.ros.health import LEVEL_OK, LEVEL_WARN, HealthSnapshot, health_report  # noqa: E402
from spikems_ros.ros.log_bridge import RclpyLogHandler, library_logs_forwarded  # noqa: E402
from spikems_ros.ros.messages import fill_message, make_message  # noqa: E402
from spikems_ros.ros.parameters import (  # noqa: E402
    PARAMETER_SPECS,
    ParameterError,
    pipeline_config,
    resolve_weights_path,
    settings_from_values,
)
from spikems_ros.snn.network import SpikeMSNetwork  # noqa: E402
from spikems_ros.snn.weights import save_weights  # noqa: E402

START_US = 1_700_000_000_000_000
WIDTH, HEIGHT = 32, 24


def random_events(rng, count: int, start_us: int, duration_us: int, width: int = WIDTH, height: int = HEIGHT):
    return make_events(
        rng.integers(0, width, count),
        rng.integers(0, height, count),
        np.sort(rng.integers(start_us, start_us + duration_us, count)),
        rng.integers(0, 2, count),
    )


def positive_network() -> SpikeMSNetwork:
    """A seeded random network with positive weights, which fires on dense input."""
    torch.manual_seed(0)
    network = SpikeMSNetwork()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.abs_()
    return network


@pytest.fixture(scope="module")
def window_results():
    """Windows of a small pipeline run over random events, the first with one box added."""
    rng = np.random.default_rng(0)
    pipeline = SegmentationPipeline(positive_network(), WIDTH, HEIGHT, PipelineConfig(window_bins=5, tracking=False))
    results = pipeline.push_events(random_events(rng, 3000, START_US, 30_000)) + pipeline.flush()
    assert len(results) >= 2
    box = Box(x_min=2.0, y_min=3.0, x_max=9.0, y_max=7.0, pixels=20, track_id=4)
    return [dataclasses.replace(results[0], boxes=(box,))] + results[1:]


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "test.pt"
    save_weights(path, SpikeMSNetwork(), {"output_delay_bins": 6, "bin_us": 1000})
    return path


@pytest.fixture
def ros_context():
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)


# Messages


def test_foreground_packet_message_decodes_back(window_results):
    previous_time_us = None
    decoder = PacketDecoder()
    for seq, result in enumerate(window_results):
        values = outputs.foreground_packet(
            result, seq=seq, width=WIDTH, height=HEIGHT, encoding="evt3", frame_id="camera",
            previous_time_us=previous_time_us,
        )
        message = make_message(event_camera_msgs.EventPacket, values)
        assert bytes(message.events) == values["events"].tobytes()
        assert (message.width, message.height, message.seq) == (WIDTH, HEIGHT, seq)
        assert message.header.frame_id == "camera"
        assert message.is_bigendian is False

        decoded = decoder.decode(
            message.encoding, message.events, time_base_ns=message.time_base,
            stamp_ns=stamp_to_ns(message.header.stamp.sec, message.header.stamp.nanosec),
        ).events
        expected = result.window.events[result.window.foreground]
        np.testing.assert_array_equal(decoded, expected)
        if expected.shape[0]:
            previous_time_us = int(expected["t"][-1])
    assert previous_time_us is not None, "no window had foreground events"


def test_detections_message_fields(window_results):
    result = window_results[0]
    message = make_message(vision_msgs.Detection2DArray, outputs.detections(result, "camera"))
    assert len(message.detections) == 1
    detection = message.detections[0]
    assert detection.id == "4"
    assert detection.bbox.center.position.x == pytest.approx(5.5)
    assert detection.bbox.center.position.y == pytest.approx(5.0)
    assert detection.bbox.size_x == pytest.approx(8.0)
    assert detection.bbox.size_y == pytest.approx(5.0)
    assert detection.results[0].hypothesis.class_id == "moving"
    assert detection.results[0].pose.covariance.shape == (36,)
    assert stamp_to_ns(message.header.stamp.sec, message.header.stamp.nanosec) == result.window.end_us * 1000


def test_image_messages_hold_pixels(window_results):
    result = window_results[0]
    overlay = make_message(Image, outputs.overlay_image(result, WIDTH, HEIGHT, "camera"))
    mask = make_message(Image, outputs.mask_image(result, WIDTH, HEIGHT, "camera"))
    assert (overlay.encoding, overlay.step) == ("bgr8", WIDTH * 3)
    assert (mask.encoding, mask.step) == ("mono8", WIDTH)
    assert bytes(overlay.data) == render_overlay(result.window, result.boxes, WIDTH, HEIGHT).tobytes()
    assert bytes(mask.data) == render_mask(result.window, WIDTH, HEIGHT).tobytes()


def test_synaptic_ops_message_sums(window_results):
    result = window_results[1]
    message = make_message(SynapticOps, outputs.synaptic_ops(result, "camera", 1000, 6))
    assert [layer.name for layer in message.layers] == list(SpikeMSNetwork().layer_names)
    assert message.total_synaptic_ops == sum(layer.synaptic_ops for layer in message.layers)
    assert message.total_ann_macs == sum(layer.ann_macs for layer in message.layers)
    assert message.bin_width_us == 1000


def test_diagnostics_level_is_byte():
    values = outputs.diagnostics(START_US, {"events_received": 12}, level=LEVEL_WARN, message="behind")
    message = make_message(DiagnosticArray, values)
    status = message.status[0]
    assert status.level == b"\x01"
    assert status.message == "behind"
    assert [(value.key, value.value) for value in status.values] == [("events_received", "12")]


def test_fill_message_rejects_unknown_field():
    with pytest.raises(KeyError, match="no_such_field"):
        make_message(Image, {"no_such_field": 1})


def test_fill_message_rejects_wrong_array_size():
    with pytest.raises(TypeError, match="36"):
        fill_message(PoseWithCovariance(), {"covariance": np.zeros(35)})


def test_fill_message_rejects_scalar_for_message():
    with pytest.raises(TypeError, match="header"):
        make_message(Image, {"header": 3})


def test_fill_message_rejects_fractional_integer():
    with pytest.raises(TypeError, match="height"):
        make_message(Image, {"height": 2.5})


# Parameters


def test_default_settings_are_valid():
    settings = settings_from_values({})
    for spec in PARAMETER_SPECS:
        assert getattr(settings, spec.name) == spec.default
        assert spec.description
        assert spec.constraints


def test_integer_accepted_for_double():
    settings = settings_from_values({"track_min_iou": 1, "diagnostics_period_s": 2})
    assert settings.track_min_iou == 1.0
    assert isinstance(settings.diagnostics_period_s, float)


@pytest.mark.parametrize(
    "name, value, accepted",
    [
        ("device", "gpu", "cpu, cuda or cuda:N"),
        ("bin_width_us", 0, ">= 1"),
        ("publish_period_ms", 0, ">= 1"),
        ("output_delay_bins", -2, "-1 or an integer >= 0"),
        ("chunk_bins", "4", "got a string"),
        ("box_noise_min_neighbours", 9, "0 to 8"),
        ("tracking", 1, "got an integer"),
        ("track_min_iou", 1.5, "0 to 1"),
        ("events_qos_depth", 0, ">= 1"),
        ("output_encoding", "evt2", "evt3 or mono"),
        ("max_latency_ms", True, "got a boolean"),
        ("diagnostics_period_s", 0.0, "> 0"),
        ("diagnostics_period_s", float("nan"), "> 0"),
        ("no_such_parameter", 1, "one of"),
    ],
)
def test_invalid_parameter_names_value(name, value, accepted):
    with pytest.raises(ParameterError) as raised:
        settings_from_values({name: value})
    message = str(raised.value)
    assert f"parameter {name} = {value!r}" in message
    assert accepted in message


def test_publish_period_whole_bins():
    with pytest.raises(ParameterError, match="multiple of bin_width_us = 3000"):
        settings_from_values({"bin_width_us": 3000, "publish_period_ms": 10})
    assert settings_from_values({"bin_width_us": 2000, "publish_period_ms": 10}).publish_period_ms == 10


def test_pipeline_config_output_delay():
    settings = settings_from_values({})
    assert pipeline_config(settings, {"output_delay_bins": 4}, 1000).output_delay_bins == 4
    assert pipeline_config(settings, {}, 1000).output_delay_bins == parameters_module.DEFAULT_OUTPUT_DELAY_BINS
    explicit = settings_from_values({"output_delay_bins": 2})
    assert pipeline_config(explicit, {"output_delay_bins": 4}, 1000).output_delay_bins == 2


def test_pipeline_config_maps_settings():
    settings = settings_from_values({"publish_period_ms": 20, "chunk_bins": 4, "tracking": False})
    config = pipeline_config(settings, {}, 1000)
    assert config.window_bins == 20
    assert config.chunk_bins == 4
    assert config.tracking is False


def test_pipeline_config_bin_mismatch():
    settings = settings_from_values({})
    with pytest.raises(ParameterError, match="bin width of the network"):
        pipeline_config(settings, {}, 500)
    with pytest.raises(ParameterError, match="bin_us stored in the weights file"):
        pipeline_config(settings, {"bin_us": 2000}, 1000)


def test_weights_path_explicit(tmp_path):
    path = tmp_path / "w.pt"
    path.write_bytes(b"")
    assert resolve_weights_path(str(path)) == path
    with pytest.raises(ParameterError, match="existing weights file"):
        resolve_weights_path(str(tmp_path / "missing.pt"))


def test_weights_path_default_search(tmp_path):
    first, second = tmp_path / "share" / "w.pt", tmp_path / "source" / "w.pt"
    second.parent.mkdir()
    second.write_bytes(b"")
    assert resolve_weights_path("", [first, second]) == second
    with pytest.raises(ParameterError) as raised:
        resolve_weights_path("", [first])
    assert str(first) in str(raised.value)


def test_default_weights_candidates_end_in_source_tree():
    candidates = parameters_module.default_weights_candidates()
    assert candidates[-1].parts[-2:] == ("weights", parameters_module.DEFAULT_WEIGHTS_NAME)
    assert (candidates[-1].parents[1] / "spikems_ros").is_dir()


# Event queue


def events_between(start_us: int, stop_us: int, count: int = 4) -> np.ndarray:
    return make_events(np.zeros(count), np.zeros(count), np.linspace(start_us, stop_us, count).astype(np.int64),
                       np.ones(count))


def test_queue_drops_oldest_over_span():
    queue = EventQueue(max_span_us=10_000)
    for index in range(5):
        queue.put(events_between(index * 4000, index * 4000 + 3000), 640, 480, "camera")
    # Spans: 3000, then 4000 each. 3000 + 4 * 4000 = 19000 > 10000, so the oldest go.
    assert queue.counters.dropped_packets == 3
    assert queue.counters.dropped_events == 12
    assert queue.counters.dropped_span_us == 3000 + 4000 + 4000
    assert queue.queued_packets == 2
    assert queue.queued_span_us == 8000
    first = queue.get(0.0)
    assert int(first.events["t"][0]) == 12_000


def test_queue_keeps_newest_packet():
    queue = EventQueue(max_span_us=1000)
    queue.put(events_between(0, 500), 640, 480, "camera")
    dropped = queue.put(events_between(500, 50_000), 640, 480, "camera")
    assert dropped == 1
    assert queue.queued_packets == 1


def test_queue_span_after_backward_jump():
    queue = EventQueue(max_span_us=100_000)
    queue.put(events_between(1_000_000, 1_002_000), 640, 480, "camera")
    queue.put(events_between(0, 3000), 640, 480, "camera")
    assert queue.queued_span_us == 2000 + 3000
    assert queue.counters.dropped_packets == 0


def test_queue_bounds_event_count():
    queue = EventQueue(max_span_us=10**9, max_events=10)
    for index in range(4):
        queue.put(events_between(index * 100, index * 100 + 50), 640, 480, "camera")
    assert queue.counters.dropped_packets == 2
    assert queue.queued_packets == 2


def test_queue_ignores_empty_packets():
    queue = EventQueue(max_span_us=1000)
    assert queue.put(np.zeros(0, dtype=EVENT_DTYPE), 640, 480, "camera") == 0
    assert queue.queued_packets == 0
    assert queue.counters.packets_in == 0


def test_queue_get_times_out():
    queue = EventQueue(max_span_us=1000)
    started = time.monotonic()
    assert queue.get(0.05) is None
    assert time.monotonic() - started < 1.0


def test_queue_close_wakes_waiting_get():
    queue = EventQueue(max_span_us=1000)
    results = []
    waiter = threading.Thread(target=lambda: results.append(queue.get(30.0)))
    waiter.start()
    time.sleep(0.05)
    queue.close()
    waiter.join(timeout=5.0)
    assert not waiter.is_alive()
    assert results == [None]


def test_queue_run_joins_continuing_packets():
    queue = EventQueue(max_span_us=10**9)
    for start_us in (0, 1000, 2000):
        queue.put(events_between(start_us, start_us + 999), 640, 480, "camera")
    queue.put(events_between(3000, 3999), 320, 240, "camera")  # another size
    queue.put(events_between(4000, 4999), 320, 240, "camera")
    queue.put(events_between(100_000, 100_999), 320, 240, "camera")  # a gap of 95 ms
    queue.put(events_between(0, 999), 320, 240, "camera")  # time went backwards

    runs = [queue.get_run(0.0, max_packets=100, max_gap_us=10_000) for _ in range(5)]

    assert [len(run) for run in runs] == [3, 2, 1, 1, 0]
    assert [int(run[0].events["t"][0]) for run in runs[:4]] == [0, 3000, 100_000, 0]
    assert queue.queued_packets == 0
    assert queue.queued_span_us == 0


def test_queue_run_stops_at_max_packets():
    queue = EventQueue(max_span_us=10**9)
    for start_us in range(0, 5000, 1000):
        queue.put(events_between(start_us, start_us + 999), 640, 480, "camera")
    assert len(queue.get_run(0.0, max_packets=3, max_gap_us=10_000)) == 3
    assert len(queue.get_run(0.0, max_packets=3, max_gap_us=10_000)) == 2


def test_queue_rejects_invalid_bounds():
    with pytest.raises(ValueError, match="max_span_us = 0"):
        EventQueue(max_span_us=0)
    with pytest.raises(ValueError, match="max_events = 0"):
        EventQueue(max_span_us=1, max_events=0)


# Health report


def test_health_report_rates():
    previous = HealthSnapshot(wall_s=10.0, events_received=1000, bins_processed=100, worker_busy_s=1.0,
                              worker_bins=100)
    current = HealthSnapshot(wall_s=12.0, events_received=5000, bins_processed=300, worker_busy_s=1.1,
                             worker_bins=300, width=640, height=480)
    values, level, message = health_report(current, previous, bin_width_us=1000)
    assert values["input_event_rate_per_s"] == "2000"
    assert values["real_time_factor"] == "0.500"
    assert values["resolution"] == "640x480"
    assert values["events_received"] == "5000"
    assert level == LEVEL_OK
    assert message == "running"


def test_health_report_warns_on_problems():
    previous = HealthSnapshot(wall_s=0.0)
    current = HealthSnapshot(wall_s=1.0, events_received=10, dropped_packets=3, lost_packets=1, decode_errors=2,
                             bins_processed=10, worker_busy_s=0.02, worker_bins=10, dropped_span_us=7500)
    values, level, message = health_report(current, previous, bin_width_us=1000)
    assert level == LEVEL_WARN
    assert "slower than real time (factor 2.00)" in message
    assert "3 dropped packets" in message
    assert "1 lost packets" in message
    assert "2 decode errors" in message
    assert values["dropped_bins"] == "7"


def test_health_report_counts_finished_calls_only():
    # A call that ran bins 100..300 finished after the first snapshot: its bins and its
    # busy time both count in the second period, not the bins alone in the first.
    first = HealthSnapshot(wall_s=10.0, bins_processed=300, worker_busy_s=1.0, worker_bins=100)
    second = HealthSnapshot(wall_s=11.0, bins_processed=300, worker_busy_s=1.1, worker_bins=300)

    values, _, _ = health_report(second, first, bin_width_us=1000)

    assert values["real_time_factor"] == "0.500"


def test_node_survives_unexpected_processing_error(ros_context, weights_file):
    rng = np.random.default_rng(8)
    node = make_node(ros_context, weights_file)
    process = node._process
    calls = []

    def failing_once(packet):
        calls.append(packet)
        if len(calls) == 1:
            raise TypeError("simulated bug")
        return process(packet)

    node._process = failing_once
    try:
        node._on_packet(mono_packet(random_events(rng, 50, START_US, 2000), seq=0))
        assert wait_for(lambda: node.snapshot().processing_errors == 1), node.snapshot()
        node._on_packet(mono_packet(random_events(rng, 50, START_US + 20_000, 2000), seq=1))
        assert wait_for(lambda: node.snapshot().packets_processed == 2), node.snapshot()
        snapshot = node.snapshot()
    finally:
        node.destroy_node()
    assert snapshot.processing_errors == 1
    assert snapshot.events_processed == 50


def test_health_report_idle():
    values, level, message = health_report(HealthSnapshot(wall_s=5.0), None, bin_width_us=1000)
    assert level == LEVEL_OK
    assert message == "no events received"
    assert values["real_time_factor"] == "0.000"


# Log forwarding


class RecordingLogger:
    def __init__(self):
        self.lines = []

    def debug(self, text):
        self.lines.append(("debug", text))

    def info(self, text):
        self.lines.append(("info", text))

    def warning(self, text):
        self.lines.append(("warning", text))

    def error(self, text):
        self.lines.append(("error", text))


def test_log_handler_throttles_repeats():
    ros_logger = RecordingLogger()
    handler = RclpyLogHandler(ros_logger, throttle_s=0.2)
    logger = logging.getLogger("spikems_ros.test_log_handler")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for index in range(5):
            logger.warning("jump %d", index)
        logger.error("other message")
        time.sleep(0.25)
        logger.warning("jump %d", 9)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert ros_logger.lines == [
        ("warning", "spikems_ros.test_log_handler: jump 0"),
        ("error", "spikems_ros.test_log_handler: other message"),
        ("warning", "spikems_ros.test_log_handler: jump 9 (4 similar messages suppressed)"),
    ]


def test_log_forwarding_restores_logger():
    package_logger = logging.getLogger("spikems_ros")
    propagate, level = package_logger.propagate, package_logger.level
    ros_logger = RecordingLogger()
    with library_logs_forwarded(ros_logger):
        logging.getLogger("spikems_ros.pipeline").info("resized")
    assert ros_logger.lines == [("info", "spikems_ros.pipeline: resized")]
    assert package_logger.propagate == propagate
    assert package_logger.level == level
    assert not package_logger.handlers


# Node set-up and processing without DDS


def make_node(context, weights_file, **values):
    from spikems_ros.ros.segmenter_node import SegmenterNode

    overrides = [Parameter("weights", value=str(weights_file))]
    overrides += [Parameter(name, value=value) for name, value in values.items()]
    return SegmenterNode(context=context, parameter_overrides=overrides)


def test_node_declares_every_parameter(ros_context, weights_file):
    node = make_node(ros_context, weights_file)
    try:
        for spec in PARAMETER_SPECS:
            assert node.has_parameter(spec.name)
            descriptor = node.describe_parameter(spec.name)
            assert descriptor.description == spec.description
            assert descriptor.additional_constraints == spec.constraints
            assert descriptor.read_only
        assert node.get_parameter("weights").value == str(weights_file)
        assert node.config.output_delay_bins == 6
    finally:
        node.destroy_node()


def test_node_rejects_invalid_parameter(ros_context, weights_file):
    with pytest.raises(ParameterError, match="parameter output_encoding = 'raw' is invalid"):
        make_node(ros_context, weights_file, output_encoding="raw")


def test_node_rejects_mismatched_bin_width(ros_context, weights_file):
    with pytest.raises(ParameterError, match="parameter bin_width_us = 2000"):
        make_node(ros_context, weights_file, bin_width_us=2000)


def test_node_missing_default_weights(ros_context, tmp_path, monkeypatch):
    from spikems_ros.ros.segmenter_node import SegmenterNode

    missing = tmp_path / "weights" / "spikems_synthetic.pt"
    monkeypatch.setattr(parameters_module, "default_weights_candidates", lambda: [missing])
    with pytest.raises(ParameterError) as raised:
        SegmenterNode(context=ros_context)
    assert str(missing) in str(raised.value)


def mono_packet(events, *, seq: int, width: int = WIDTH, height: int = HEIGHT, encoding: str = "mono"):
    payload, time_base_ns = encode_packet_payload("mono", events)
    message = event_camera_msgs.EventPacket()
    message.header.stamp.sec = int(events["t"][0]) // 1_000_000
    message.header.frame_id = "camera"
    message.width = width
    message.height = height
    message.seq = seq
    message.time_base = time_base_ns
    message.encoding = encoding
    message.events = payload
    return message


def wait_for(condition, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_node_counts_packets_in_process(ros_context, weights_file):
    rng = np.random.default_rng(5)
    node = make_node(ros_context, weights_file)
    try:
        chunks = [random_events(rng, 100, START_US + index * 2000, 2000) for index in range(10)]
        sequence_numbers = [0, 1, 2, 3, 7, 8, 9, 10, 11, 12]  # 4, 5 and 6 are lost
        for seq, events in zip(sequence_numbers, chunks):
            node._on_packet(mono_packet(events, seq=seq))
        node._on_packet(mono_packet(chunks[-1], seq=13, encoding="libcaer_cmp_v9"))
        node._on_packet(mono_packet(chunks[-1], seq=14, width=0))

        assert wait_for(lambda: node.snapshot().packets_processed == 10), node.snapshot()
        snapshot = node.snapshot()
    finally:
        node.destroy_node()
    assert snapshot.packets_received == 12
    assert snapshot.events_received == 1000
    assert snapshot.events_processed == 1000
    assert snapshot.lost_packets == 3
    assert snapshot.decode_errors == 2
    assert snapshot.bins_processed >= 19
    assert snapshot.windows_published >= 1
    assert (snapshot.width, snapshot.height) == (WIDTH, HEIGHT)


def test_node_seq_restart_is_not_loss(ros_context, weights_file):
    rng = np.random.default_rng(6)
    node = make_node(ros_context, weights_file)
    try:
        for seq in (100, 101, 0, 1):
            node._on_packet(mono_packet(random_events(rng, 10, START_US + seq * 1000, 1000), seq=seq))
        lost = node.snapshot().lost_packets
    finally:
        node.destroy_node()
    assert lost == 0


def test_node_drops_oldest_when_behind(ros_context, weights_file):
    rng = np.random.default_rng(7)
    node = make_node(ros_context, weights_file, max_latency_ms=5)
    # Hold the worker inside its first packet so that the queue fills up behind it.
    gate = threading.Event()
    entered = threading.Event()
    process = node._process

    def gated_process(packet):
        entered.set()
        gate.wait(10.0)
        return process(packet)

    def finished() -> bool:
        snapshot = node.snapshot()
        return snapshot.queued_packets == 0 and snapshot.packets_processed + snapshot.dropped_packets == 20

    node._process = gated_process
    try:
        node._on_packet(mono_packet(random_events(rng, 50, START_US, 2000), seq=0))
        assert entered.wait(10.0), "the worker did not take the first packet"
        for seq in range(1, 20):
            node._on_packet(mono_packet(random_events(rng, 50, START_US + seq * 2000, 2000), seq=seq))
        gate.set()
        assert wait_for(finished), node.snapshot()
        snapshot = node.snapshot()
    finally:
        gate.set()
        node.destroy_node()
    # Packets span 2 ms each, so at most two fit in 5 ms next to the one being processed.
    assert snapshot.dropped_packets >= 17
    assert snapshot.events_processed + snapshot.dropped_events == snapshot.events_received
    assert snapshot.dropped_span_us >= 17 * 2000 - 2000
    assert snapshot.lost_packets == 0


def test_health_report_backlog_without_input():
    values, level, message = health_report(HealthSnapshot(wall_s=5.0, queued_packets=12), None, bin_width_us=1000)
    assert level == LEVEL_OK
    assert message == "no new events; 12 packets still queued"
