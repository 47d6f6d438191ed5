"""Events: the one event dtype, payload codecs, file readers and the streaming binner.

Importing this package loads the readers (rosbags, aedat) lazily, on first use of
``read_file``, so decoding packets does not pay for them.
"""

import importlib

from spikems_ros.events.dtype import EVENT_DTYPE, TRIGGER_DTYPE, empty_events, make_events
from spikems_ros.events.errors import DecodeError, FileFormatError

_LAZY_EXPORTS = {
    "read_file": "spikems_ros.events.readers",
    "detect_format": "spikems_ros.events.readers",
    "Recording": "spikems_ros.events.readers",
    "PacketDecoder": "spikems_ros.events.packet",
    "StreamingBinner": "spikems_ros.events.binning",
    "SpikeBins": "spikems_ros.events.binning",
}

__all__ = [
    "EVENT_DTYPE",
    "TRIGGER_DTYPE",
    "DecodeError",
    "FileFormatError",
    "empty_events",
    "make_events",
    *sorted(_LAZY_EXPORTS),
]


def __getattr__(name: str):
    if name not in _LAZY_EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY_EXPORTS[name]), name)
