"""Opening input bags and reading header fields from serialized messages."""

import struct
from pathlib import Path

from rosbags.rosbag1 import Reader as Ros1Reader
from rosbags.rosbag2 import Reader as Ros2Reader

from spikems_ros.events.errors import FileFormatError
from spikems_ros.events.readers.bags import BAG_ERRORS, BARE_ROS2_SUFFIXES
from spikems_ros.events.readers.detect import ROSBAG1, ROSBAG2_MCAP, ROSBAG2_SQLITE3, detect_format

BAG_FORMATS = (ROSBAG1, ROSBAG2_SQLITE3, ROSBAG2_MCAP)

CDR_ENCAPSULATION_BYTES = 4


def open_bag(path) -> tuple:
    """Open a ROS 1 bag or a ROS 2 bag (folder, .db3 or .mcap) and return (reader, is_ros1).

    The format is detected from the content. Raises FileFormatError for other
    formats and for bags rosbags cannot open. The caller closes the reader.
    """
    path = Path(path)
    format_name = detect_format(path)
    if format_name not in BAG_FORMATS:
        raise FileFormatError(path, f"is in the {format_name} format; expected a ROS 1 or ROS 2 bag ({', '.join(BAG_FORMATS)})")
    is_ros1 = format_name == ROSBAG1
    if not is_ros1 and path.is_file() and path.suffix != BARE_ROS2_SUFFIXES[format_name]:
        raise FileFormatError(
            path, f"rosbags opens a bare {format_name} file only with the suffix "
            f"{BARE_ROS2_SUFFIXES[format_name]}; rename the file"
        )
    reader = Ros1Reader(path) if is_ros1 else Ros2Reader(path)
    try:
        reader.open()
    except BAG_ERRORS as error:
        raise FileFormatError(path, f"cannot open the {format_name} bag: {error}") from error
    return reader, is_ros1


def header_frame_id(raw, is_ros1: bool) -> str:
    """Return header.frame_id of a serialized message whose first field is std_msgs/Header.

    ROS 1: uint32 seq, uint32 sec, uint32 nsec, uint32 length, bytes.
    CDR: 4 encapsulation bytes, int32 sec, uint32 nanosec, uint32 length
    including the terminating NUL, bytes. The encapsulation header gives the
    byte order (0x0001 little-endian, 0x0000 big-endian).
    Raises ValueError when the bytes are too short for the stated length.
    """
    raw = bytes(raw)
    if is_ros1:
        order, length_offset, terminator_bytes = "<", 12, 0
    else:
        order = ">" if raw[1:2] == b"\x00" else "<"
        length_offset, terminator_bytes = CDR_ENCAPSULATION_BYTES + 8, 1
    if len(raw) < length_offset + 4:
        raise ValueError(f"message of {len(raw)} bytes is too short for a std_msgs/Header")
    (length,) = struct.unpack_from(f"{order}I", raw, length_offset)
    start = length_offset + 4
    text_bytes = max(length - terminator_bytes, 0)
    if len(raw) < start + text_bytes:
        raise ValueError(f"header frame_id of {length} bytes overruns the {len(raw)}-byte message")
    return raw[start : start + text_bytes].decode("utf-8", errors="replace")


def first_frame_id(path, topic: str) -> str | None:
    """Return header.frame_id of the first message on ``topic``, or None when the topic has no message."""
    reader, is_ros1 = open_bag(path)
    try:
        connections = [connection for connection in reader.connections if connection.topic == topic]
        for _, _, raw in reader.messages(connections=connections):
            return header_frame_id(raw, is_ros1)
        return None
    finally:
        reader.close()
