"""A bag holding what the segmenter node publishes, written from pipeline windows."""

import logging

from spikems_ros import outputs
from spikems_ros.bags.writer import BagWriter

LOG = logging.getLogger(__name__)


def output_topic_names() -> dict:
    """Return the node's absolute topic names -> message type, /diagnostics included."""
    topics = {f"/{outputs.NODE_NAME}/{name}": message_type for name, message_type in outputs.OUTPUT_TOPICS.items()}
    topics[outputs.DIAGNOSTICS_TOPIC] = outputs.DIAGNOSTICS_TYPE
    return topics


class SegmenterBag:
    """Write each window's messages on the node's topics, with bag timestamps = header stamps.

    Foreground packets carry the encoder's time state from packet to packet as the
    node does: for evt3 each packet is stamped with its first event's time and
    encoded relative to the last event time of the previous non-empty packet.
    """

    def __init__(self, writer: BagWriter, *, width: int, height: int, frame_id: str, encoding: str,
                 bin_width_us: int, output_delay_bins: int):
        if encoding not in outputs.OUTPUT_ENCODINGS:
            raise ValueError(f"output encoding {encoding!r} is invalid: expected one of {outputs.OUTPUT_ENCODINGS}")
        self.writer = writer
        self.width = int(width)
        self.height = int(height)
        self.frame_id = frame_id
        self.encoding = encoding
        self.bin_width_us = int(bin_width_us)
        self.output_delay_bins = int(output_delay_bins)
        self.topics = {name: f"/{outputs.NODE_NAME}/{name}" for name in outputs.OUTPUT_TOPICS}
        for name, message_type in outputs.OUTPUT_TOPICS.items():
            writer.add_topic(self.topics[name], message_type)
        writer.add_topic(outputs.DIAGNOSTICS_TOPIC, outputs.DIAGNOSTICS_TYPE)
        self._seq = 0
        self._previous_time_us = None  # last foreground event time written, for the evt3 encoder

    def write_window(self, result, overlay: dict | None = None) -> None:
        """Write the five per-window messages; ``overlay`` reuses an already rendered overlay_image."""
        foreground_events = result.window.events[result.window.foreground]
        previous_time_us = self._previous_time_us
        if previous_time_us is not None and foreground_events.shape[0] and foreground_events["t"][0] < previous_time_us:
            # Event time went backwards (the pipeline reset its state): start a new
            # encoder timeline, as the decoder re-anchors on the packet stamp.
            LOG.warning("foreground events went back in time from %d us to %d us; evt3 time state restarted",
                        previous_time_us, int(foreground_events["t"][0]))
            previous_time_us = None

        packet = outputs.foreground_packet(
            result, seq=self._seq, width=self.width, height=self.height, encoding=self.encoding,
            frame_id=self.frame_id, previous_time_us=previous_time_us,
        )
        self._seq += 1
        if foreground_events.shape[0]:
            self._previous_time_us = int(foreground_events["t"][-1])
        else:
            self._previous_time_us = previous_time_us

        if overlay is None:
            overlay = outputs.overlay_image(result, self.width, self.height, self.frame_id)
        self.writer.write(self.topics["foreground_events"], packet)
        self.writer.write(self.topics["detections"], outputs.detections(result, self.frame_id))
        self.writer.write(self.topics["image"], overlay)
        self.writer.write(self.topics["mask"], outputs.mask_image(result, self.width, self.height, self.frame_id))
        self.writer.write(
            self.topics["synaptic_ops"],
            outputs.synaptic_ops(result, self.frame_id, self.bin_width_us, self.output_delay_bins),
        )

    def write_diagnostics(self, stamp_us: int, values: dict, *, level: int = 0, message: str = "running") -> None:
        """Write one DiagnosticArray stamped at ``stamp_us`` of event time."""
        self.writer.write(outputs.DIAGNOSTICS_TOPIC, outputs.diagnostics(stamp_us, values, level=level, message=message))
