"""Read event recordings of every supported format into one ``Recording``.

``read_file`` recognises the format by content (``detect_format``) and returns
events in EVENT_DTYPE sorted by time in microseconds, the sensor resolution,
triggers, and object masks where the format has ground truth. Events outside
the resolution are kept and counted in a warning.
"""

import logging
from pathlib import Path

from spikems_ros.events.errors import FileFormatError
from spikems_ros.events.raw import read_prophesee_raw
from spikems_ros.events.readers.aedat import read_aedat4
from spikems_ros.events.readers.bags import read_bag
from spikems_ros.events.readers.detect import (
    AEDAT4,
    EVIMO2_NPY,
    EVIMO_NPZ,
    EVIMO_TXT,
    FORMAT_NAMES,
    PROPHESEE_EVT2,
    PROPHESEE_EVT3,
    ROSBAG1,
    ROSBAG2_MCAP,
    ROSBAG2_SQLITE3,
    detect_format,
)
from spikems_ros.events.readers.evimo import read_evimo2_npy, read_evimo_npz, read_evimo_txt
from spikems_ros.events.readers.recording import Recording, finish_recording, guess_resolution

__all__ = ["FORMAT_NAMES", "Recording", "detect_format", "read_file"]

LOG = logging.getLogger(__name__)

# Formats whose files may hold several event streams, selected with ``topic``.
FORMATS_WITH_TOPICS = (ROSBAG1, ROSBAG2_SQLITE3, ROSBAG2_MCAP, AEDAT4)


def read_file(path, topic: str | None = None, *, allow_pickle: bool = False) -> Recording:
    """Read an event file or folder of any supported format.

    ``topic`` selects the event topic of a bag (or the event stream id of an
    AEDAT 4.0 file) when it contains several. ``allow_pickle`` lets the EV-IMO
    readers unpickle the ``meta`` entry, for trusted files only; without it the
    entry is skipped and mask times are estimated.

    Raises FileNotFoundError for a missing path and FileFormatError for an
    unknown format, content that does not match its format, or a missing topic.
    """
    path = Path(path)
    format_name = detect_format(path)
    if topic is not None and format_name not in FORMATS_WITH_TOPICS:
        raise FileFormatError(
            path, f"topic {topic!r} given, but {format_name} files have no topics; "
            f"topics apply to {', '.join(FORMATS_WITH_TOPICS)}"
        )
    LOG.debug("%s: reading as %s", path, format_name)

    if format_name in (ROSBAG1, ROSBAG2_SQLITE3, ROSBAG2_MCAP):
        return read_bag(path, format_name, topic)
    if format_name in (PROPHESEE_EVT3, PROPHESEE_EVT2):
        return _read_prophesee(path, format_name)
    if format_name == AEDAT4:
        return read_aedat4(path, topic)
    if format_name == EVIMO_TXT:
        return read_evimo_txt(path)
    if format_name == EVIMO_NPZ:
        return read_evimo_npz(path, allow_pickle=allow_pickle)
    if format_name == EVIMO2_NPY:
        return read_evimo2_npy(path, allow_pickle=allow_pickle)
    raise FileFormatError(path, f"no reader for format {format_name!r}")


def _read_prophesee(path: Path, format_name: str) -> Recording:
    raw = read_prophesee_raw(path)
    width, height = raw.width, raw.height
    if width is None or height is None:
        width, height = guess_resolution(raw.events)
        LOG.warning("%s: RAW header gives no sensor size; using %dx%d, the smallest known "
                    "sensor that contains every event", path, width, height)
    return finish_recording(raw.events, width, height, format_name, path, triggers=raw.triggers)
