"""Reading AEDAT 4.0 files: a minimal uncompressed file written here, and real recordings."""

import struct

import numpy as np
import pytest
from conftest import real_file

from spikems_ros.events.dtype import make_events
from spikems_ros.events.errors import FileFormatError
from spikems_ros.events.readers import read_file

# Stream description (the IOHeader infoNode) of one DV event stream; the
# decoder needs the stream id, its type identifier and sizeX/sizeY.
STREAM_XML = (
    '<node name="{id}" path="/mainloop/Recorder/outInfo/{id}/">'
    '<attr key="compression" type="string">NONE</attr>'
    '<attr key="originalModuleName" type="string">capture</attr>'
    '<attr key="originalOutputName" type="string">events</attr>'
    '<attr key="typeDescription" type="string">Array of events (polarity ON/OFF).</attr>'
    '<attr key="typeIdentifier" type="string">EVTS</attr>'
    '<node name="info" path="/mainloop/Recorder/outInfo/{id}/info/">'
    '<attr key="sizeX" type="int">{width}</attr>'
    '<attr key="sizeY" type="int">{height}</attr>'
    '<attr key="source" type="string">Test</attr>'
    "</node></node>"
)

# AEDAT 4.0 Event struct inside the flatbuffer vector: int64 t, int16 x, int16 y,
# bool on, padded to 16 bytes (8-byte alignment).
EVENT_STRUCT = np.dtype({
    "names": ["t", "x", "y", "on"],
    "formats": ["<i8", "<i2", "<i2", "u1"],
    "offsets": [0, 8, 10, 12],
    "itemsize": 16,
})


def pad(data: bytes, alignment: int) -> bytes:
    return data + b"\x00" * (-len(data) % alignment)


def io_header(description: str) -> bytes:
    """IOHeader flatbuffer with only infoNode set (compression NONE, no data table)."""
    text = description.encode()
    body = struct.pack("<I", 16)  # root table offset
    body += struct.pack("<HHHHH", 10, 8, 0, 0, 4)  # vtable: infoNode is field 2, at table + 4
    body = pad(body, 8)
    body += struct.pack("<i", 16 - 4)  # table at 16, its vtable at 4
    body += struct.pack("<I", 24 - 20)  # infoNode string at 24
    body += struct.pack("<I", len(text)) + text + b"\x00"
    body = pad(body, 4)
    return struct.pack("<I", len(body)) + body


def event_packet(stream_id: int, t, x, y, on) -> bytes:
    """Stream id, size, and a size-prefixed EventPacket flatbuffer ('EVTS')."""
    records = np.zeros(len(t), EVENT_STRUCT)
    records["t"], records["x"], records["y"], records["on"] = t, x, y, on
    buffer = struct.pack("<I", 20 - 4)  # root table at 20, relative to this field at 4
    buffer += b"EVTS"
    buffer += struct.pack("<HHH", 6, 8, 4)  # vtable at 12: elements at table + 4
    buffer = pad(buffer, 4)  # table at 20, counting the 4-byte size prefix
    buffer += struct.pack("<i", 20 - 12)  # table at 20, vtable at 12
    buffer += struct.pack("<I", 28 - 24)  # elements vector at 28, data 8-aligned at 32
    buffer += struct.pack("<I", len(t)) + records.tobytes()
    packet = struct.pack("<I", len(buffer)) + buffer
    return struct.pack("<ii", stream_id, len(packet)) + packet


def write_aedat4(path, packets, streams=((0, 8, 6),)):
    """Write an uncompressed AEDAT 4.0 file; packets are (stream id, t, x, y, on)."""
    nodes = "".join(STREAM_XML.format(id=i, width=w, height=h) for i, w, h in streams)
    description = f'<dv version="2.0"><node name="outInfo" path="/mainloop/Recorder/outInfo/">{nodes}</node></dv>'
    with open(path, "wb") as stream:
        stream.write(b"#!AER-DAT4.0\r\n")
        stream.write(io_header(description))
        for packet in packets:
            stream.write(event_packet(*packet))
    return path


PACKETS = [
    (0, [1_000_010, 1_000_020, 1_000_030], [1, 2, 7], [4, 5, 0], [1, 0, 1]),
    (0, [1_000_005, 1_000_040], [3, 9], [2, 5], [0, 1]),
]


def test_synthetic_file_exact(tmp_path):
    path = write_aedat4(tmp_path / "small.aedat4", PACKETS)

    recording = read_file(path)

    expected = make_events(
        x=[3, 1, 2, 7, 9], y=[2, 4, 5, 0, 5],
        t=[1_000_005, 1_000_010, 1_000_020, 1_000_030, 1_000_040], p=[0, 1, 0, 1, 1],
    )
    np.testing.assert_array_equal(recording.events, expected)
    assert recording.format_name == "aedat4"
    assert (recording.width, recording.height) == (8, 6)
    assert len(recording.triggers) == 0


def test_two_event_streams(tmp_path):
    packets = [PACKETS[0], (1, [5], [6], [7], [1])]
    path = write_aedat4(tmp_path / "stereo.aedat4", packets, streams=((0, 8, 6), (1, 16, 12)))

    with pytest.raises(FileFormatError, match=r"event streams \[0, 1\]"):
        read_file(path)
    right = read_file(path, topic="1")

    assert (right.width, right.height) == (16, 12)
    np.testing.assert_array_equal(right.events["t"], [5])


def test_truncated_file(tmp_path):
    path = write_aedat4(tmp_path / "small.aedat4", PACKETS)
    content = path.read_bytes()
    path.write_bytes(content[:-10])

    with pytest.raises(FileFormatError, match="damaged AEDAT 4.0 file: 1 packets read"):
        read_file(path)


def test_real_dvxplorer_sample():
    recording = read_file(real_file("sample.aedat4"))

    assert recording.format_name == "aedat4"
    assert (recording.width, recording.height) == (320, 240)
    assert len(recording.events) == 111_954
    assert np.all(np.diff(recording.events["t"]) >= 0)
    assert recording.events["x"].max() < 320
    assert recording.events["y"].max() < 240


def test_real_davis346_events_and_triggers():
    recording = read_file(real_file("davis346.aedat4"))

    assert (recording.width, recording.height) == (346, 260)
    assert len(recording.events) == 78_830
    duration_us = int(recording.events["t"][-1] - recording.events["t"][0])
    assert 2_300_000 < duration_us < 2_400_000
    # 59 APS frames, each with exposure start/end and frame start/end triggers.
    assert len(recording.triggers) == 236
    ids, counts = np.unique(recording.triggers["id"], return_counts=True)
    np.testing.assert_array_equal(ids, [6, 7, 8, 9])
    np.testing.assert_array_equal(counts, [59, 59, 59, 59])
    np.testing.assert_array_equal(recording.triggers["value"][recording.triggers["id"] == 6], 1)
    np.testing.assert_array_equal(recording.triggers["value"][recording.triggers["id"] == 7], 0)
