"""Read AEDAT 4.0 files (iniVation DV) with the ``aedat`` package.

Events come from one event stream; its width and height are the sensor
resolution. Trigger records of every trigger stream are returned as triggers.
Frames and IMU samples are skipped.
"""

import logging
from pathlib import Path

import aedat
import numpy as np

from spikems_ros.events.dtype import EVENT_DTYPE, TRIGGER_DTYPE
from spikems_ros.events.errors import FileFormatError
from spikems_ros.events.readers.detect import AEDAT4
from spikems_ros.events.readers.recording import Recording, finish_recording

LOG = logging.getLogger(__name__)

# The aedat package reports each trigger's dv::TriggerType code in 'source':
# 0 timestamp reset, 1/2/3 external signal rising edge, falling edge and pulse,
# 4/5 external generator rising and falling edge, 6/7 APS frame start and end,
# 8/9 APS exposure start and end. Recording.triggers keeps the code in ``id``.
# Its ``value`` is 0 for falling edges and ends, and 1 for the other codes.
TRIGGER_FALLING_CODES = (2, 5, 7, 9)


def read_aedat4(path: Path, stream: str | None = None) -> Recording:
    """Read events and triggers from an AEDAT 4.0 file.

    ``stream`` selects an event stream by its id (as a string) when the file
    contains several. With one event stream it may be None.
    """
    try:
        decoder = aedat.Decoder(str(path))
        streams = decoder.id_to_stream()
    except RuntimeError as error:
        raise FileFormatError(path, f"cannot open the AEDAT 4.0 file, 0 packets read: {error}") from None

    stream_id = _choose_event_stream(path, streams, stream)
    width = int(streams[stream_id]["width"])
    height = int(streams[stream_id]["height"])

    event_chunks = []
    trigger_chunks = []
    packet_count = 0
    try:
        for packet in decoder:
            if packet["stream_id"] == stream_id and "events" in packet:
                event_chunks.append(_events_from_packet(packet["events"]))
            elif "triggers" in packet:
                trigger_chunks.append(_triggers_from_packet(packet["triggers"]))
            packet_count += 1
    except RuntimeError as error:
        raise FileFormatError(
            path, f"damaged AEDAT 4.0 file: {packet_count} packets read before the failure: {error}"
        ) from None

    events = np.concatenate(event_chunks) if event_chunks else np.zeros(0, EVENT_DTYPE)
    triggers = np.concatenate(trigger_chunks) if trigger_chunks else np.zeros(0, TRIGGER_DTYPE)
    LOG.info("%s: read %d events from stream %d (%dx%d) and %d triggers from %d packets",
             path, len(events), stream_id, width, height, len(triggers), packet_count)
    return finish_recording(events, width, height, AEDAT4, path, triggers=triggers)


def _choose_event_stream(path: Path, streams: dict, stream: str | None) -> int:
    event_streams = sorted(i for i, s in streams.items() if s.get("type") == "events")
    if not event_streams:
        kinds = sorted({s.get("type") for s in streams.values()})
        raise FileFormatError(path, f"AEDAT 4.0 file contains no event stream, only {kinds}")
    if stream is None:
        if len(event_streams) > 1:
            raise FileFormatError(
                path, f"AEDAT 4.0 file contains event streams {event_streams}; choose one by id"
            )
        return event_streams[0]
    if stream not in [str(i) for i in event_streams]:
        raise FileFormatError(
            path, f"event stream {stream!r} not found; event streams present: {event_streams}"
        )
    return int(stream)


def _events_from_packet(packet_events: np.ndarray) -> np.ndarray:
    events = np.empty(len(packet_events), EVENT_DTYPE)
    events["x"] = packet_events["x"]
    events["y"] = packet_events["y"]
    events["t"] = packet_events["t"].astype(np.int64)  # microseconds since the epoch
    events["p"] = packet_events["on"]
    return events


def _triggers_from_packet(packet_triggers: np.ndarray) -> np.ndarray:
    triggers = np.empty(len(packet_triggers), TRIGGER_DTYPE)
    codes = packet_triggers["source"]
    triggers["t"] = packet_triggers["t"].astype(np.int64)
    triggers["id"] = codes
    triggers["value"] = ~np.isin(codes, TRIGGER_FALLING_CODES)
    return triggers
