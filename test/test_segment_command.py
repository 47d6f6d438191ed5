"""spikems segment: the offline pipeline, its summary, the output bag read back with rosbags, and PNGs."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import real_file
from matplotlib.image import imread
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Writer as Ros2Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from spikems_ros import outputs
from spikems_ros.bags.segmenter import output_topic_names
from spikems_ros.bags.types import output_typestore
from spikems_ros.cli import build_parser, main
from spikems_ros.commands import segment
from spikems_ros.events.dtype import make_events
from spikems_ros.events.message_definitions import EVENT_MESSAGE_DEFINITIONS
from spikems_ros.events.packet import PacketDecoder
from spikems_ros.events.readers import read_file
from spikems_ros.snn.network import SpikeMSNetwork
from spikems_ros.snn.weights import save_weights

WIDTH, HEIGHT = 64, 48
DVS_ARRAY = "dvs_msgs/msg/EventArray"
FRAME_ID = "dvs_frame"
WINDOW_TOPICS = [f"/{outputs.NODE_NAME}/{name}" for name in outputs.OUTPUT_TOPICS]
FOREGROUND_TOPIC = f"/{outputs.NODE_NAME}/foreground_events"
MASK_TOPIC = f"/{outputs.NODE_NAME}/mask"
IMAGE_TOPIC = f"/{outputs.NODE_NAME}/image"
OUT_OF_SENSOR = 3  # events at x = WIDTH + 5, kept by the reader and dropped by the binner


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "weights.pt"
    save_weights(path, SpikeMSNetwork(), {"output_delay_bins": 6, "bin_us": 1000})
    return path


def synthetic_events() -> np.ndarray:
    """25 ms of a bright square moving right over sparse background events, plus events outside the sensor."""
    rng = np.random.default_rng(3)
    parts = []
    for step_us in range(0, 25_000, 250):
        left = 10 + step_us // 1000
        xs, ys = np.meshgrid(np.arange(left, left + 8), np.arange(18, 28))
        count = xs.size
        parts.append(make_events(x=xs.ravel(), y=ys.ravel(), t=np.full(count, 20_000_000 + step_us),
                                 p=rng.integers(0, 2, count)))
        parts.append(make_events(x=rng.integers(0, WIDTH, 4), y=rng.integers(0, HEIGHT, 4),
                                 t=np.full(4, 20_000_000 + step_us + 100), p=rng.integers(0, 2, 4)))
    parts.append(make_events(x=[WIDTH + 5] * OUT_OF_SENSOR, y=[1, 2, 3], t=[20_001_000, 20_002_000, 20_003_000],
                             p=[1, 0, 1]))
    events = np.concatenate(parts)
    return events[np.argsort(events["t"], kind="stable")]


def write_dvs_bag(path, events: np.ndarray):
    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for name, text in EVENT_MESSAGE_DEFINITIONS.items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    Time = store.types["builtin_interfaces/msg/Time"]
    Event = store.types["dvs_msgs/msg/Event"]
    with Ros2Writer(path, version=9) as writer:
        connection = writer.add_connection("/dvs/events", DVS_ARRAY, typestore=store)
        for start in range(0, events.shape[0], 500):
            chunk = events[start : start + 500]
            items = [Event(x=int(e["x"]), y=int(e["y"]), ts=Time(sec=int(e["t"]) // 10**6,
                           nanosec=int(e["t"]) % 10**6 * 1000), polarity=bool(e["p"])) for e in chunk]
            header = store.types["std_msgs/msg/Header"](stamp=Time(sec=20, nanosec=0), frame_id=FRAME_ID)
            message = store.types[DVS_ARRAY](header=header, height=HEIGHT, width=WIDTH, events=items)
            writer.write(connection, int(chunk["t"][0]) * 1000, store.serialize_cdr(message, DVS_ARRAY))
    return path


@pytest.fixture(scope="module")
def input_bag(tmp_path_factory):
    return write_dvs_bag(tmp_path_factory.mktemp("input") / "moving_square", synthetic_events())


def run_segment(arguments: list, capsys) -> dict:
    code = main(["segment", *map(str, arguments), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, input_bag, weights_file):
    """One run over the synthetic bag with a bag and PNG outputs, shared by the checks below."""
    folder = tmp_path_factory.mktemp("full")
    output, render = folder / "segmented", folder / "png"
    args = build_parser().parse_args(["segment", str(input_bag), "--weights", str(weights_file), "--output",
                                      str(output), "--render", str(render)])

    summary = segment.segment(args)

    return json.loads(json.dumps(summary)), output, render


def read_bag_messages(path) -> dict:
    """Return topic -> [(bag timestamp, message)] of a bag, every message deserialized."""
    with AnyReader([path], default_typestore=output_typestore()) as reader:
        messages = {connection.topic: [] for connection in reader.connections}
        types = {connection.topic: connection.msgtype for connection in reader.connections}
        for connection, timestamp, raw in reader.messages():
            messages[connection.topic].append((timestamp, reader.deserialize(raw, connection.msgtype)))
    return messages, types


def stamp_ns(message) -> int:
    return message.header.stamp.sec * 1_000_000_000 + message.header.stamp.nanosec


def decode_foreground(messages: list) -> list:
    """Decode the foreground packets in order with one PacketDecoder; return one event array per packet."""
    decoder = PacketDecoder()
    return [
        decoder.decode(message.encoding, message.events, time_base_ns=message.time_base,
                       stamp_ns=stamp_ns(message), is_bigendian=message.is_bigendian).events
        for _, message in messages
    ]


def event_set(events: np.ndarray) -> set:
    return set(zip(events["x"].tolist(), events["y"].tolist(), events["t"].tolist(), events["p"].tolist()))


def check_output_bag(path, input_events: np.ndarray, summary: dict) -> dict:
    """Check a segment output bag against its summary and input; return its messages by topic."""
    messages, types = read_bag_messages(path)

    assert types == output_topic_names()
    for topic in WINDOW_TOPICS:
        assert len(messages[topic]) == summary["windows"], topic
    assert len(messages[outputs.DIAGNOSTICS_TOPIC]) >= 1
    for topic, rows in messages.items():
        stamps = [stamp_ns(message) for _, message in rows]
        assert stamps == sorted(stamps), topic
        assert [timestamp for timestamp, _ in rows] == stamps, topic

    packets = messages[FOREGROUND_TOPIC]
    assert [message.seq for _, message in packets] == list(range(len(packets)))
    assert {message.encoding for _, message in packets} == {summary["output_encoding"]}
    foreground = decode_foreground(packets)
    all_foreground = np.concatenate(foreground)
    assert all_foreground.shape[0] == summary["events_foreground"]
    assert event_set(all_foreground) <= event_set(input_events)

    detections = sum(len(message.detections) for _, message in messages[f"/{outputs.NODE_NAME}/detections"])
    assert detections == summary["boxes"]
    operations = sum(message.total_synaptic_ops for _, message in messages[f"/{outputs.NODE_NAME}/synaptic_ops"])
    assert operations == summary["synaptic_ops"]

    final = messages[outputs.DIAGNOSTICS_TOPIC][-1][1].status[0]
    values = {item.key: item.value for item in final.values}
    assert final.message == "finished"
    assert values["events_foreground"] == str(summary["events_foreground"])
    assert values["events_background"] == str(summary["events_background"])
    assert values["windows_published"] == str(summary["windows"])
    assert values["events_processed"] == str(summary["events_in"])
    assert values["resolution"] == f"{summary['width']}x{summary['height']}"
    return messages


def test_summary_accounts_for_every_event(full_run, input_bag):
    summary, _, _ = full_run

    decoded = read_file(input_bag).events.shape[0]
    assert summary["events_decoded"] == decoded
    assert summary["events_in"] == decoded
    assert summary["events_foreground"] + summary["events_background"] + summary["events_dropped"] == decoded
    assert summary["events_dropped"] == OUT_OF_SENSOR
    assert summary["events_out_of_sensor"] == OUT_OF_SENSOR
    assert summary["events_unaccounted"] == 0
    assert summary["events_foreground"] > 0
    assert summary["events_background"] > 0


def test_summary_fields(full_run, input_bag, weights_file):
    summary, output, render = full_run

    # Events from 20.000 s to 20.025 s fill the 10 ms windows starting at 20.000, 20.010 and 20.020 s.
    assert summary["windows"] == 3
    assert summary["input"] == str(input_bag)
    assert summary["format"] == "rosbag2-sqlite3"
    assert summary["topic"] == "/dvs/events"
    assert (summary["width"], summary["height"]) == (WIDTH, HEIGHT)
    assert summary["frame_id"] == FRAME_ID
    assert summary["weights"] == str(weights_file)
    assert summary["output_delay_bins"] == 6
    assert summary["publish_period_ms"] == 10
    assert summary["synaptic_ops"] > 0
    assert summary["energy_ratio"] > 0
    assert summary["stream_duration_s"] == pytest.approx(0.0249, abs=1e-4)
    assert summary["real_time_factor"] == pytest.approx(summary["processing_s"] / summary["stream_duration_s"])
    assert summary["output"] == str(output)
    assert summary["render"] == str(render)


def test_output_bag_reads_back(full_run, input_bag):
    summary, output, _ = full_run

    messages = check_output_bag(output, read_file(input_bag).events, summary)

    assert (output / "metadata.yaml").is_file()
    assert (output / "segmented.mcap").is_file()
    assert [path.name for path in output.parent.iterdir() if path.name.startswith(".")] == []
    assert {message.header.frame_id for _, message in messages[MASK_TOPIC]} == {FRAME_ID}
    (diagnostics,) = [message.status[0] for _, message in messages[outputs.DIAGNOSTICS_TOPIC]]
    values = {item.key: item.value for item in diagnostics.values}
    assert float(values["input_event_rate_per_s"]) > 0
    assert diagnostics.level == 0


def test_mask_marks_foreground_pixels(full_run):
    _, output, _ = full_run
    messages, _ = read_bag_messages(output)

    foreground = decode_foreground(messages[FOREGROUND_TOPIC])
    for events, (_, mask) in zip(foreground, messages[MASK_TOPIC]):
        pixels = mask.data.reshape(mask.height, mask.width)
        expected = np.zeros((HEIGHT, WIDTH), np.uint8)
        expected[events["y"], events["x"]] = 255
        np.testing.assert_array_equal(pixels, expected)
        assert mask.encoding == "mono8"


def test_png_is_rgb_overlay(full_run):
    summary, output, render = full_run
    messages, _ = read_bag_messages(output)

    images = sorted(render.glob("window_*.png"))
    assert len(images) == summary["windows"] == summary["images"]
    for path, (_, overlay) in zip(images, messages[IMAGE_TOPIC]):
        rgb = np.rint(imread(path)[..., :3] * 255).astype(np.uint8)
        bgr = overlay.data.reshape(overlay.height, overlay.width, 3)
        np.testing.assert_array_equal(rgb, bgr[..., ::-1])
        assert overlay.encoding == "bgr8"


def test_time_range_mono_render_every(tmp_path, input_bag, weights_file, capsys):
    output, render = tmp_path / "bag", tmp_path / "png"

    summary = run_segment([input_bag, "--weights", weights_file, "--start-s", "0.005", "--duration-s", "0.012",
                           "--output-encoding", "mono", "--render", render, "--render-every", "2",
                           "--output", output, "--frame-id", "custom"], capsys)

    events = read_file(input_bag).events
    selected = events[(events["t"] >= 20_005_000) & (events["t"] < 20_017_000)]
    assert summary["events_in"] == selected.shape[0]
    assert summary["events_outside_time_range"] == events.shape[0] - selected.shape[0]
    total = summary["events_foreground"] + summary["events_background"] + summary["events_dropped"]
    assert total + summary["events_outside_time_range"] == summary["events_decoded"]
    assert summary["windows"] == 2
    assert summary["images"] == 1
    assert sorted(path.name for path in render.iterdir()) == ["window_000000.png"]
    messages = check_output_bag(output, selected, summary)
    assert {message.header.frame_id for _, message in messages[MASK_TOPIC]} == {"custom"}


def test_gaps_reset_and_diagnostics_per_second(tmp_path, weights_file, capsys):
    # Three 5 ms bursts 15 s apart: each gap is longer than the binner's 10 s
    # limit, so the pipeline restarts twice, and event time crosses two
    # diagnostics periods.
    events = synthetic_events()
    burst = events[(events["t"] < 20_005_000) & (events["x"] < WIDTH)]
    bursts = [burst.copy() for _ in range(3)]
    for index, part in enumerate(bursts):
        part["t"] += index * 15_000_000
    path = write_dvs_bag(tmp_path / "bursts", np.concatenate(bursts))
    output = tmp_path / "bag"

    summary = run_segment([path, "--weights", weights_file, "--output", output], capsys)

    assert summary["time_resets"] == 2
    assert summary["windows"] == 3
    total = summary["events_foreground"] + summary["events_background"] + summary["events_dropped"]
    assert total == summary["events_decoded"] == 3 * burst.shape[0]
    messages = check_output_bag(output, np.concatenate(bursts), summary)
    diagnostics = [message for _, message in messages[outputs.DIAGNOSTICS_TOPIC]]
    assert [message.status[0].message for message in diagnostics] == ["running", "running", "finished"]
    assert [message.header.stamp.sec for message in diagnostics] == [35, 50, 50]


def test_existing_output_needs_force(tmp_path, input_bag, weights_file, caplog, capsys):
    output = tmp_path / "bag"
    output.mkdir()
    (output / "keep.txt").write_text("old")

    with caplog.at_level(logging.ERROR):
        code = main(["segment", str(input_bag), "--weights", str(weights_file), "--output", str(output)])

    assert code == 2
    assert f"output {output} exists; pass --force to replace it" in caplog.text
    assert (output / "keep.txt").read_text() == "old"

    # --force never deletes a folder that contains files this command did not write.
    with caplog.at_level(logging.ERROR):
        code = main(["segment", str(input_bag), "--weights", str(weights_file), "--output", str(output), "--force"])
    assert code == 2
    assert "holds files other than bag files" in caplog.text
    assert (output / "keep.txt").read_text() == "old"

    (output / "keep.txt").unlink()
    output.rmdir()
    run_segment([input_bag, "--weights", weights_file, "--output", output, "--duration-s", "0.002"], capsys)
    summary = run_segment([input_bag, "--weights", weights_file, "--output", output, "--force",
                           "--duration-s", "0.002"], capsys)
    assert summary["windows"] == 1
    check_output_bag(output, read_file(input_bag).events, summary)


def test_missing_weights_error(tmp_path, input_bag, caplog):
    with caplog.at_level(logging.ERROR):
        code = main(["segment", str(input_bag), "--weights", str(tmp_path / "absent.pt")])

    assert code == 2
    assert f"weights file {tmp_path / 'absent.pt'} not found" in caplog.text


def test_default_weights_missing_names_paths(tmp_path):
    candidates = [tmp_path / "share" / "absent.pt", tmp_path / "repository" / "absent.pt"]

    with pytest.raises(FileNotFoundError) as error:
        segment.default_weights_path(candidates)

    assert f"default weights file not found (searched {candidates[0]}, {candidates[1]})" in str(error.value)


def test_default_weights_first_found(tmp_path):
    candidates = [tmp_path / "share" / "absent.pt", tmp_path / "first.pt", tmp_path / "second.pt"]
    candidates[1].write_bytes(b"")
    candidates[2].write_bytes(b"")

    assert segment.default_weights_path(candidates) == candidates[1]


def test_default_weights_searched_in_repository():
    from spikems_ros.ros.parameters import default_weights_candidates

    repository = Path(__file__).resolve().parents[1]

    assert repository / "weights" / segment.DEFAULT_WEIGHTS_NAME in default_weights_candidates()


def test_publish_period_not_bin_multiple(input_bag, weights_file, caplog):
    with caplog.at_level(logging.ERROR):
        code = main(["segment", str(input_bag), "--weights", str(weights_file), "--publish-period-ms", "2.5"])

    assert code == 2
    assert "--publish-period-ms 2.5 is invalid: expected a positive multiple" in caplog.text


def test_feed_slices_golden():
    times = np.array([100, 49_999, 50_100, 50_200, 175_000], np.int64)

    assert segment.feed_slices(times, 50_000) == [(0, 2), (2, 4), (4, 5)]
    assert segment.feed_slices(times[:0], 50_000) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", ["test_events_1.bag", "poster_translation.npz"])
def test_real_recording(tmp_path, name, weights_file, capsys):
    # 5 ms of each recording keeps the run to about 11 network bins, because a
    # bin at 640x480 took up to 0.7 s on 2 shared CPU cores.
    path = real_file(name)
    output = tmp_path / "segmented"

    summary = run_segment([path, "--weights", weights_file, "--output", output, "--duration-s", "0.005"], capsys)

    events = read_file(path).events
    selected = events[events["t"] < events["t"][0] + 5_000]
    total = summary["events_foreground"] + summary["events_background"] + summary["events_dropped"]
    assert total == summary["events_in"] == selected.shape[0]
    assert summary["events_unaccounted"] == 0
    assert summary["windows"] >= 1
    check_output_bag(output, selected, summary)


def test_start_past_end_rejected():
    from spikems_ros.commands.segment import select_time_range
    from spikems_ros.events.dtype import make_events

    events = make_events([0, 1], [0, 0], [1_000, 2_000], [1, 0])

    with pytest.raises(ValueError, match="--start-s 5"):
        select_time_range(events, 5.0, None)


def test_summary_text_without_synaptic_operations(full_run):
    summary, _, _ = full_run
    quiet = dict(summary, synaptic_ops=0, energy_ratio=0.0)

    text = segment.format_summary(quiet)

    assert "energy ratio:       n/a (no synaptic operations)" in text
    assert "x less than the dense ANN" in segment.format_summary(summary)
