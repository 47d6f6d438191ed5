"""Prophesee RAW files: real EVT 3.0 recordings and EVT 2.0 files written here."""

import numpy as np
import pytest
from conftest import real_file

from spikems_ros.events.dtype import make_events
from spikems_ros.events.errors import FileFormatError
from spikems_ros.events.evt2 import encode_evt2
from spikems_ros.events.evt3 import Evt3Decoder, encode_evt3
from spikems_ros.events.raw import read_prophesee_raw


def small_events(count: int = 500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    times_us = np.sort(rng.integers(0, 50_000_000, count))
    return make_events(rng.integers(0, 640, count), rng.integers(0, 480, count), times_us, rng.integers(0, 2, count))


def write_raw(path, header_lines, body: bytes):
    path.write_bytes("".join(f"% {line}\n" for line in header_lines).encode() + body)
    return path


def test_sample_recording_decodes_like_decoder():
    path = real_file("evt3_sample.raw")
    reference = np.load(real_file("evt3_sample.npy"))

    recording = read_prophesee_raw(path, chunk_bytes=4096)

    assert recording.format_name == "EVT3"
    assert (recording.width, recording.height) == (1280, 720)
    assert recording.events.size == reference.size
    assert np.array_equal(recording.events["x"], reference["x"])
    assert np.array_equal(recording.events["y"], reference["y"])
    assert np.array_equal(recording.events["p"], reference["p"])

    data = path.read_bytes()
    body = data[data.rindex(b"% system_ID 48\n") + len(b"% system_ID 48\n"):]
    assert np.array_equal(recording.events, Evt3Decoder().decode(body).events)


def test_night_sky_recording_is_plausible():
    recording = read_prophesee_raw(real_file("evt3_night_sky.raw"))

    assert recording.format_name == "EVT3"
    assert (recording.width, recording.height) == (1280, 720)
    assert recording.events.size == 1_218_618
    assert int(recording.events["x"].max()) < 1280
    assert int(recording.events["y"].max()) < 720
    assert np.all(np.diff(recording.events["t"]) >= 0)


@pytest.mark.parametrize(
    "header_lines",
    [
        ["format EVT2;height=480;width=640"],
        ["date 2024-01-01 00:00:00", "evt 2.0", "geometry 640x480", "end"],
    ],
)
def test_evt2_file_round_trip(tmp_path, header_lines):
    events = small_events()
    path = write_raw(tmp_path / "events.raw", header_lines, encode_evt2(events))

    recording = read_prophesee_raw(path, chunk_bytes=64)

    assert recording.format_name == "EVT2"
    assert (recording.width, recording.height) == (640, 480)
    assert np.array_equal(recording.events, events)


def test_body_starting_with_percent_byte_after_end_line(tmp_path):
    # TIME_HIGH 0x025 is the word 0x8025, whose first byte 0x25 is '%'. Only the
    # '% end' line separates it from the header lines.
    events = make_events([1, 2], [3, 4], [0x25 << 12, (0x25 << 12) + 1], [0, 1])
    body = encode_evt3(events)
    path = write_raw(tmp_path / "events.raw", ["format EVT3;height=480;width=640", "end"], body)

    recording = read_prophesee_raw(path)

    assert body[:1] == b"%"
    assert np.array_equal(recording.events, events)


def test_file_without_geometry_has_no_size(tmp_path):
    path = write_raw(tmp_path / "events.raw", ["evt 2.0"], encode_evt2(small_events(5)))

    recording = read_prophesee_raw(path)

    assert recording.width is None
    assert recording.height is None


def test_non_raw_file_raises(tmp_path):
    path = tmp_path / "events.npz"
    path.write_bytes(b"PK\x03\x04 not a raw file")

    with pytest.raises(FileFormatError, match="expected a Prophesee RAW file"):
        read_prophesee_raw(path)


def test_empty_file_raises(tmp_path):
    path = tmp_path / "empty.raw"
    path.write_bytes(b"")

    with pytest.raises(FileFormatError, match="empty file"):
        read_prophesee_raw(path)


@pytest.mark.parametrize("header_line", ["format EVT21;height=480;width=640", "evt 2.1", "evt 4.0"])
def test_unsupported_format_raises(tmp_path, header_line):
    path = write_raw(tmp_path / "events.raw", [header_line], b"")

    with pytest.raises(FileFormatError, match="unsupported RAW event format"):
        read_prophesee_raw(path)


def test_header_without_format_raises(tmp_path):
    path = write_raw(tmp_path / "events.raw", ["date 2024-01-01"], b"\x00\x00")

    with pytest.raises(FileFormatError, match="names no event format"):
        read_prophesee_raw(path)


def test_truncated_body_reports_bytes_and_events(tmp_path):
    events = small_events(10)
    path = write_raw(tmp_path / "events.raw", ["evt 2.0"], encode_evt2(events) + b"\x01\x02\x03")

    with pytest.raises(FileFormatError) as raised:
        read_prophesee_raw(path)

    message = str(raised.value)
    assert "truncated" in message
    assert f"{len(encode_evt2(events))} complete bytes" in message
    assert "10 events" in message


def test_invalid_word_reports_file_offset(tmp_path):
    header = ["evt 3.0"]
    body = np.array([0x8000, 0x6000, 0x9000], dtype="<u2").tobytes()
    path = write_raw(tmp_path / "events.raw", header, body)
    header_bytes = len("% evt 3.0\n")

    with pytest.raises(FileFormatError, match=f"at byte {header_bytes + 4}"):
        read_prophesee_raw(path)
