"""Writing ROS 2 bags: the segmenter's outputs and event bags converted to EventPackets.

Submodules load on first use, so that converting a bag does not import torch,
which the segmenter outputs need.
"""

import importlib

_LAZY_EXPORTS = {
    "BagWriter": "spikems_ros.bags.writer",
    "OutputExistsError": "spikems_ros.bags.writer",
    "build_message": "spikems_ros.bags.writer",
    "replace_when_complete": "spikems_ros.bags.writer",
    "output_typestore": "spikems_ros.bags.types",
    "OUTPUT_MESSAGE_DEFINITIONS": "spikems_ros.bags.types",
    "SegmenterBag": "spikems_ros.bags.segmenter",
    "output_topic_names": "spikems_ros.bags.segmenter",
    "ConversionSummary": "spikems_ros.bags.convert",
    "convert_event_bag": "spikems_ros.bags.convert",
    "event_packets": "spikems_ros.bags.convert",
}

__all__ = sorted(_LAZY_EXPORTS)


def __getattr__(name: str):
    if name not in _LAZY_EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY_EXPORTS[name]), name)
