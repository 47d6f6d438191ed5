"""Format detection, the Recording checks, and reading Prophesee RAW files through read_file."""

import numpy as np
import pytest
from conftest import real_file

from spikems_ros.events.dtype import empty_events, make_events
from spikems_ros.events.errors import FileFormatError
from spikems_ros.events.raw import read_prophesee_raw
from spikems_ros.events.readers import FORMAT_NAMES, Recording, detect_format, read_file
from spikems_ros.events.readers.recording import finish_recording, guess_resolution


@pytest.mark.parametrize(
    ("content", "name", "format_name"),
    [
        (b"#ROSBAG V2.0\nrest", "any.bin", "rosbag1"),
        (b"SQLite format 3\x00rest", "bag.db3", "rosbag2-sqlite3"),
        (b"\x89MCAP0\r\nrest", "bag.mcap", "rosbag2-mcap"),
        (b"#!AER-DAT4.0\r\nrest", "file.aedat4", "aedat4"),
        (b"% date 2023-10-19\n% evt 3.0\n% end\n", "a.raw", "prophesee-evt3"),
        (b"% format EVT3;height=720;width=1280\n% end\n", "b.dat", "prophesee-evt3"),
        (b"% evt 2.0\n% geometry 640x480\n", "c.raw", "prophesee-evt2"),
        (b"% format EVT2;height=480;width=640\n% end\n", "d.raw", "prophesee-evt2"),
    ],
)
def test_detect_by_content(tmp_path, content, name, format_name):
    path = tmp_path / name
    path.write_bytes(content)

    assert detect_format(path) == format_name


def test_detect_unsupported_prophesee_format(tmp_path):
    path = tmp_path / "evt21.raw"
    path.write_bytes(b"% evt 2.1\n% end\n")

    with pytest.raises(FileFormatError, match="EVT21"):
        detect_format(path)


@pytest.mark.parametrize(
    ("suffix", "expected"),
    [(".bag", "ROS 1 bag"), (".db3", "SQLite 3"), (".mcap", "MCAP"), (".aedat4", "AEDAT 4.0"),
     (".npz", "npz archive")],
)
def test_suffix_without_matching_content(tmp_path, suffix, expected):
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"\x00" * 64)

    with pytest.raises(FileFormatError) as error:
        detect_format(path)

    assert expected in str(error.value)
    assert str(path) in str(error.value)


def test_unknown_format(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("nothing to see")

    with pytest.raises(FileFormatError, match="unknown event file format"):
        read_file(path)


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_file(tmp_path / "absent.bag")


def test_unknown_folder(tmp_path):
    with pytest.raises(FileFormatError, match="metadata.yaml"):
        detect_format(tmp_path)


@pytest.mark.parametrize(("storage", "format_name"), [("sqlite3", "rosbag2-sqlite3"), ("mcap", "rosbag2-mcap")])
def test_detect_rosbag2_folder(tmp_path, storage, format_name):
    (tmp_path / "metadata.yaml").write_text(
        f"rosbag2_bagfile_information:\n  version: 9\n  storage_identifier: {storage}\n"
    )

    assert detect_format(tmp_path) == format_name


def test_rosbag2_folder_unknown_storage(tmp_path):
    (tmp_path / "metadata.yaml").write_text(
        "rosbag2_bagfile_information:\n  storage_identifier: leveldb\n"
    )

    with pytest.raises(FileFormatError, match="'leveldb'"):
        detect_format(tmp_path)


def test_detect_evimo_folders(tmp_path):
    txt = tmp_path / "txt"
    txt.mkdir()
    (txt / "events.txt").write_text("")
    npy = tmp_path / "npy"
    npy.mkdir()
    np.save(npy / "dataset_events_t.npy", np.zeros(0))

    assert detect_format(txt) == "evimo-txt"
    assert detect_format(npy) == "evimo2-npy"


def test_format_names_listed():
    assert set(FORMAT_NAMES) == {
        "rosbag1", "rosbag2-sqlite3", "rosbag2-mcap", "prophesee-evt3", "prophesee-evt2",
        "evimo-txt", "evimo-npz", "evimo2-npy", "aedat4",
    }


def test_recording_rejects_wrong_dtype():
    with pytest.raises(TypeError, match="EVENT_DTYPE"):
        Recording(events=np.zeros(3), width=4, height=4, format_name="aedat4")


def test_recording_rejects_mask_shape():
    with pytest.raises(ValueError, match=r"expected uint16 with shape \(1, 4, 5\)"):
        Recording(
            events=empty_events(), width=5, height=4, format_name="evimo-npz",
            masks=np.zeros((1, 5, 4), np.uint16), mask_times_us=np.zeros(1, np.int64),
        )


def test_recording_needs_masks_with_times():
    with pytest.raises(ValueError, match="given together"):
        Recording(events=empty_events(), width=5, height=4, format_name="evimo-npz",
                  masks=np.zeros((1, 4, 5), np.uint16))


def test_finish_sorts_stably(tmp_path):
    events = make_events(x=[1, 2, 3, 4], y=[0, 0, 0, 0], t=[30, 10, 30, 10], p=[1, 1, 0, 0])

    recording = finish_recording(events, 8, 8, "aedat4", tmp_path)

    np.testing.assert_array_equal(recording.events["t"], [10, 10, 30, 30])
    # Events with equal times keep their file order.
    np.testing.assert_array_equal(recording.events["x"], [2, 4, 1, 3])


def test_finish_keeps_events_outside(tmp_path, caplog):
    events = make_events(x=[1, 9], y=[1, 1], t=[0, 1], p=[1, 1])

    recording = finish_recording(events, 8, 8, "aedat4", tmp_path)

    assert len(recording.events) == 2
    assert "1 of 2 events lie outside the 8x8 sensor" in caplog.text


@pytest.mark.parametrize(
    ("max_x", "max_y", "resolution"),
    [(239, 179, (240, 180)), (240, 10, (320, 240)), (345, 259, (346, 260)), (2000, 5, (2001, 6))],
)
def test_guess_resolution(max_x, max_y, resolution):
    events = make_events(x=[0, max_x], y=[max_y, 0], t=[0, 1], p=[0, 1])

    assert guess_resolution(events) == resolution


def test_real_prophesee_raw_through_read_file():
    path = real_file("evt3_sample.raw")

    recording = read_file(path)

    decoded = read_prophesee_raw(path)
    reference = np.load(real_file("evt3_sample.npy"))
    assert recording.format_name == "prophesee-evt3"
    assert (recording.width, recording.height) == (1280, 720)
    assert len(recording.events) == len(reference) == 219_596
    # The RAW decoder's output is already in time order, so read_file passes it on unchanged.
    np.testing.assert_array_equal(recording.events, decoded.events)
    # An independent decoder agrees on pixels and polarities. Its times are not
    # compared: it adds 4096 us whenever TIME_LOW goes down, which this one does not.
    for field in ("x", "y", "p"):
        np.testing.assert_array_equal(recording.events[field], reference[field])
