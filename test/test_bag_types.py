"""Message definitions registered for bags, building messages from fields, and outputs renamed when complete."""

from pathlib import Path

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from spikems_ros import outputs
from spikems_ros.bags.types import OUTPUT_MESSAGE_DEFINITIONS, output_typestore
from spikems_ros.bags.writer import BagWriter, OutputExistsError, build_message, replace_when_complete
from spikems_ros.events.dtype import make_events
from spikems_ros.pipeline import Box, WindowResult
from spikems_ros.segmentation import SegmentedWindow

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]

# Type name -> the .msg file its registered definition must match.
DEFINITION_FILES = {
    "spikems_ros/msg/LayerSynapticOps": REPOSITORY_ROOT / "msg" / "LayerSynapticOps.msg",
    "spikems_ros/msg/SynapticOps": REPOSITORY_ROOT / "msg" / "SynapticOps.msg",
    "event_camera_msgs/msg/EventPacket": REPOSITORY_ROOT / "test_interfaces" / "event_camera_msgs" / "msg"
    / "EventPacket.msg",
    **{
        f"vision_msgs/msg/{name}": REPOSITORY_ROOT / "test_interfaces" / "vision_msgs" / "msg" / f"{name}.msg"
        for name in (
            "Point2D", "Pose2D", "BoundingBox2D", "ObjectHypothesis", "ObjectHypothesisWithPose", "Detection2D",
            "Detection2DArray",
        )
    },
}


def field_lines(text: str) -> list:
    """Return the lines of a .msg text without comments, blank lines and repeated spaces."""
    lines = []
    for line in text.splitlines():
        line = " ".join(line.split("#", 1)[0].split())
        if line:
            lines.append(line)
    return lines


@pytest.mark.parametrize("type_name", sorted(DEFINITION_FILES))
def test_definition_matches_msg_file(type_name):
    path = DEFINITION_FILES[type_name]

    assert field_lines(OUTPUT_MESSAGE_DEFINITIONS[type_name]) == field_lines(path.read_text())


def test_every_vision_msgs_file_registered():
    folder = REPOSITORY_ROOT / "test_interfaces" / "vision_msgs" / "msg"
    names = {f"vision_msgs/msg/{path.stem}" for path in folder.glob("*.msg")}

    assert names
    assert names <= set(OUTPUT_MESSAGE_DEFINITIONS)


def test_every_package_msg_file_registered():
    names = {f"spikems_ros/msg/{path.stem}" for path in (REPOSITORY_ROOT / "msg").glob("*.msg")}

    assert names
    assert names <= set(OUTPUT_MESSAGE_DEFINITIONS)


def test_typestore_knows_published_types():
    typestore = output_typestore()

    for message_type in [*outputs.OUTPUT_TOPICS.values(), outputs.DIAGNOSTICS_TYPE]:
        assert message_type in typestore.types, message_type


def sample_result() -> WindowResult:
    """A hand-made window of 4 events, 2 of them foreground, and one tracked box."""
    events = make_events(x=[1, 2, 5, 6], y=[1, 1, 3, 3], t=[10_000_100, 10_000_200, 10_004_000, 10_009_999],
                         p=[1, 0, 1, 1])
    window = SegmentedWindow(
        start_us=10_000_000, end_us=10_010_000, events=events, foreground=np.array([False, True, True, False]),
        predicted_pixels=np.zeros((8, 8), bool), output_bins=10,
        synaptic_ops=np.arange(6, dtype=np.int64) * 100, input_spikes=np.arange(6, dtype=np.int64),
        output_spikes=np.arange(6, dtype=np.int64) + 1,
    )
    operations = {
        "layers": [
            {"name": f"layer{index}", "input_spikes": index, "output_spikes": index + 1, "synaptic_ops": 100 * index,
             "ann_macs": 1000}
            for index in range(6)
        ],
        "bins": 10, "total_input_spikes": 15, "total_output_spikes": 21, "synaptic_ops": 1500, "ann_macs": 6000,
        "snn_energy_pj": 1350.0, "ann_energy_pj": 27600.0, "energy_ratio": 27600.0 / 1350.0,
    }
    box = Box(x_min=2.0, y_min=1.0, x_max=5.0, y_max=3.0, pixels=2, track_id=4)
    return WindowResult(window=window, boxes=(box,), operations=operations, processing_s=0.01)


def output_messages(result: WindowResult) -> dict:
    return {
        "event_camera_msgs/msg/EventPacket": outputs.foreground_packet(
            result, seq=3, width=8, height=8, encoding="evt3", frame_id="cam", previous_time_us=None),
        "vision_msgs/msg/Detection2DArray": outputs.detections(result, "cam"),
        "sensor_msgs/msg/Image": outputs.overlay_image(result, 8, 8, "cam"),
        "spikems_ros/msg/SynapticOps": outputs.synaptic_ops(result, "cam", 1000, 6),
        "diagnostic_msgs/msg/DiagnosticArray": outputs.diagnostics(10_010_000, {"windows": 1, "boxes": 1}),
    }


@pytest.mark.parametrize("message_type", sorted(output_messages(sample_result())))
def test_output_fields_round_trip(message_type):
    typestore = output_typestore()
    fields = output_messages(sample_result())[message_type]

    message = build_message(typestore, message_type, fields)
    decoded = typestore.deserialize_cdr(typestore.serialize_cdr(message, message_type), message_type)

    assert decoded.header.stamp.sec == fields["header"]["stamp"]["sec"]
    assert decoded.header.stamp.nanosec == fields["header"]["stamp"]["nanosec"]
    assert decoded.header.frame_id == fields["header"]["frame_id"]


def test_detection_values_round_trip():
    typestore = output_typestore()
    fields = outputs.detections(sample_result(), "cam")

    message = build_message(typestore, "vision_msgs/msg/Detection2DArray", fields)

    detection = message.detections[0]
    assert detection.id == "4"
    assert detection.bbox.center.position.x == 3.5
    assert detection.bbox.center.position.y == 2.0
    assert detection.bbox.size_x == 4.0
    assert detection.bbox.size_y == 3.0
    assert detection.results[0].hypothesis.class_id == "moving"
    assert detection.results[0].pose.covariance.shape == (36,)


def test_synaptic_ops_values_round_trip():
    typestore = output_typestore()
    fields = outputs.synaptic_ops(sample_result(), "cam", 1000, 6)

    message = build_message(typestore, "spikems_ros/msg/SynapticOps", fields)

    assert [layer.name for layer in message.layers] == [f"layer{index}" for index in range(6)]
    assert message.total_synaptic_ops == 1500
    assert message.window_start.nanosec == 6_000_000
    assert message.window_end.nanosec == 16_000_000
    assert message.energy_ratio == pytest.approx(27600.0 / 1350.0)


def test_missing_field_rejected():
    fields = outputs.diagnostics(10, {})
    del fields["status"][0]["hardware_id"]

    with pytest.raises(ValueError, match=r"DiagnosticStatus: fields \['hardware_id'\] are missing"):
        build_message(output_typestore(), outputs.DIAGNOSTICS_TYPE, fields)


def test_unknown_field_rejected():
    fields = outputs.diagnostics(10, {})
    fields["header"]["seq"] = 1

    with pytest.raises(ValueError, match=r"\['seq'\] are unknown"):
        build_message(output_typestore(), outputs.DIAGNOSTICS_TYPE, fields)


def test_fixed_array_length_checked():
    fields = outputs.detections(sample_result(), "cam")
    fields["detections"][0]["results"][0]["pose"]["covariance"] = np.zeros(35)

    with pytest.raises(ValueError, match=r"covariance: fixed-size array of 36 elements got 35"):
        build_message(output_typestore(), "vision_msgs/msg/Detection2DArray", fields)


def test_bag_writer_timestamps_are_stamps(tmp_path):
    path = tmp_path / "bag"
    with BagWriter(path, storage="mcap") as writer:
        writer.add_topic("/diagnostics", outputs.DIAGNOSTICS_TYPE)
        for stamp_us in (1_000_000, 2_500_000):
            writer.write("/diagnostics", outputs.diagnostics(stamp_us, {"k": 1}))

    with AnyReader([path], default_typestore=output_typestore()) as reader:
        rows = [(timestamp, reader.deserialize(raw, connection.msgtype))
                for connection, timestamp, raw in reader.messages()]

    assert [timestamp for timestamp, _ in rows] == [1_000_000_000, 2_500_000_000]
    assert rows[1][1].header.stamp.sec == 2
    assert rows[1][1].header.stamp.nanosec == 500_000_000
    assert rows[0][1].status[0].values[0].key == "k"


def test_bag_writer_unknown_topic(tmp_path):
    with BagWriter(tmp_path / "bag") as writer:
        with pytest.raises(ValueError, match=r"topic '/x' was not added"):
            writer.write("/x", outputs.diagnostics(1, {}))


def test_replace_when_complete_moves_result(tmp_path):
    target = tmp_path / "out"

    with replace_when_complete(target, force=False) as staging:
        staging.mkdir()
        (staging / "file.txt").write_text("new")
        assert not target.exists()

    assert (target / "file.txt").read_text() == "new"
    assert [path.name for path in tmp_path.iterdir()] == ["out"]


def test_replace_when_complete_existing_rejected(tmp_path):
    target = tmp_path / "out"
    target.mkdir()

    with pytest.raises(OutputExistsError, match=r"output .*out exists"):
        with replace_when_complete(target, force=False):
            pass


def test_replace_when_complete_failure_keeps_old(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old_0000.png").write_text("old")

    with pytest.raises(RuntimeError):
        with replace_when_complete(target, force=True) as staging:
            staging.mkdir()
            raise RuntimeError("interrupted")

    assert (target / "old_0000.png").read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["out"]


def test_replace_when_complete_force_replaces(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "metadata.yaml").write_text("old")

    with replace_when_complete(target, force=True) as staging:
        staging.write_text("a file now")

    assert target.read_text() == "a file now"
    assert [path.name for path in tmp_path.iterdir()] == ["out"]


def test_replace_when_complete_keeps_foreign_folder(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "notes.txt").write_text("mine")

    with pytest.raises(OutputExistsError, match="holds files other than"):
        with replace_when_complete(target, force=True) as staging:
            staging.write_text("never written")

    assert (target / "notes.txt").read_text() == "mine"
