"""Decoding of event_camera_msgs/EventPacket payloads into events with absolute times.

Time rule. A packet's ``time_base`` of at least MIN_EPOCH_TIME_BASE_NS (1e17 ns,
March 1973) is taken as nanoseconds since the Unix epoch, as libcaer_driver
writes it. A smaller time_base is sensor time: metavision_driver writes 0 for
evt3, and older drivers wrote the sensor's elapsed time for mono with
header.stamp = start time + time_base (the mono test bag of event_camera_codecs
has time_base 0 and 50000 ns with stamps 1639872000 s + the same offsets).

- mono, libcaer, libcaer_cmp with an epoch time_base: t = time_base + offset.
- evt3 always, and the others with a sensor time_base: the decoded sensor time
  is anchored to the host clock once per stream. On the first packet with
  events, offset_us = anchor_us - (sensor time of its first event), where the
  anchor is the epoch time_base if there is one and header.stamp otherwise.
  Later packets keep that offset, so event timing follows the sensor clock
  and not the jitter of host stamps.

The stream is anchored again after ``reset()``, and when a packet's own
anchor disagrees with the stream offset by more than
``max_offset_change_us``: a driver restart makes the sensor time jump, while
host jitter and clock drift stay well below the default of 1 s.

NOTE: no recording at hand has an evt3 packet with a nonzero time_base.
Using an epoch time_base as the anchor is a choice, not an observed convention.
"""

import logging
import time

import numpy as np

from spikems_ros.events.errors import DecodeError
from spikems_ros.events.evt3 import Evt3Decoder, encode_evt3
from spikems_ros.events.libcaer import decode_libcaer, decode_libcaer_cmp
from spikems_ros.events.mono import decode_mono, encode_mono
from spikems_ros.events.payload import DecodedPayload, empty_payload

__all__ = [
    "SUPPORTED_ENCODINGS",
    "DecodedPayload",
    "PacketDecoder",
    "encode_packet_payload",
    "stamp_to_ns",
]

logger = logging.getLogger(__name__)

SUPPORTED_ENCODINGS = ("evt3", "mono", "libcaer", "libcaer_cmp")
ENCODABLE_ENCODINGS = ("evt3", "mono")

# Smallest time_base read as time since the Unix epoch (1973-03-03T09:46:40Z).
MIN_EPOCH_TIME_BASE_NS = 10**17

DEFAULT_MAX_OFFSET_CHANGE_US = 1_000_000

# Minimum time between two warnings about re-anchoring, in seconds of wall time.
REANCHOR_WARNING_INTERVAL_S = 10.0


def stamp_to_ns(sec: int, nanosec: int) -> int:
    """Convert a builtin_interfaces/Time (sec, nanosec) pair to integer nanoseconds."""
    sec = int(sec)
    nanosec = int(nanosec)
    if not 0 <= nanosec < 1_000_000_000:
        raise ValueError(f"stamp nanosec {nanosec} is outside [0, 999999999]")
    return sec * 1_000_000_000 + nanosec


class PacketDecoder:
    """Decode the EventPacket payloads of one event stream (topic), packet after packet.

    ``max_offset_change_us`` is the largest disagreement, in microseconds,
    between a packet's anchor and the stream's sensor-to-host offset that is
    taken as jitter. A larger one re-anchors the stream.
    """

    def __init__(self, *, max_offset_change_us: int = DEFAULT_MAX_OFFSET_CHANGE_US):
        if max_offset_change_us <= 0:
            raise ValueError(
                f"max_offset_change_us must be positive, got {max_offset_change_us}"
            )
        self.max_offset_change_us = int(max_offset_change_us)
        self._evt3 = Evt3Decoder()
        self.reanchor_count = 0
        self._last_reanchor_warning_s = -float("inf")
        self.reset()

    def reset(self) -> None:
        """Forget the stream state: EVT 3.0 decoder state and the time anchor."""
        self._evt3.reset()
        self.offset_us: int | None = None

    @property
    def untimed_events_dropped(self) -> int:
        """Number of evt3 events dropped because no time words preceded them."""
        return self._evt3.untimed_events_dropped

    def decode(
        self,
        encoding: str,
        payload,
        *,
        time_base_ns: int,
        stamp_ns: int,
        is_bigendian: bool = False,
    ) -> DecodedPayload:
        """Decode one packet payload and return events and triggers with t in absolute microseconds."""
        if encoding not in SUPPORTED_ENCODINGS:
            raise DecodeError(
                str(encoding),
                0,
                f"unsupported encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}",
            )
        time_base_ns = int(time_base_ns)
        has_epoch_time_base = time_base_ns >= MIN_EPOCH_TIME_BASE_NS

        if encoding == "evt3":
            decoded = self._evt3.decode(payload, is_bigendian=is_bigendian)
            anchor_ns = time_base_ns if has_epoch_time_base else int(stamp_ns)
            return self._anchor(decoded, anchor_ns // 1000)

        decode_function = {
            "mono": decode_mono,
            "libcaer": decode_libcaer,
            "libcaer_cmp": decode_libcaer_cmp,
        }[encoding]
        events = decode_function(payload, time_base_ns, is_bigendian=is_bigendian)
        decoded = DecodedPayload(events, empty_payload().triggers)
        if has_epoch_time_base:
            return decoded
        return self._anchor(decoded, int(stamp_ns) // 1000)

    def _anchor(self, decoded: DecodedPayload, anchor_us: int) -> DecodedPayload:
        """Shift sensor times by the stream offset, setting or renewing the offset first."""
        if decoded.events.size:
            first_sensor_time_us = int(decoded.events["t"][0])
        elif decoded.triggers.size:
            first_sensor_time_us = int(decoded.triggers["t"][0])
        else:
            return decoded

        packet_offset_us = anchor_us - first_sensor_time_us
        if self.offset_us is None:
            self.offset_us = packet_offset_us
            logger.info("anchored sensor time to host time with offset %d us", packet_offset_us)
        elif abs(packet_offset_us - self.offset_us) > self.max_offset_change_us:
            self._warn_reanchor(packet_offset_us)
            self.offset_us = packet_offset_us

        decoded.events["t"] += self.offset_us
        decoded.triggers["t"] += self.offset_us
        return decoded

    def _warn_reanchor(self, packet_offset_us: int) -> None:
        """Count a re-anchoring and log it, at most once per REANCHOR_WARNING_INTERVAL_S."""
        self.reanchor_count += 1
        now_s = time.monotonic()
        if now_s - self._last_reanchor_warning_s < REANCHOR_WARNING_INTERVAL_S:
            return

        self._last_reanchor_warning_s = now_s
        logger.warning(
            "sensor-to-host time offset changed from %d us to %d us (more than %d us), "
            "probably a driver restart; re-anchored (%d re-anchorings so far)",
            self.offset_us,
            packet_offset_us,
            self.max_offset_change_us,
            self.reanchor_count,
        )


def encode_packet_payload(
    encoding: str, events: np.ndarray, *, previous_time_us: int | None = None
) -> tuple[bytes, int]:
    """Encode events for an EventPacket and return (payload, time_base_ns).

    evt3 is written as metavision_driver writes it, with time_base 0 and sensor
    time t modulo 2**24 us. Publish it with header.stamp at the first event's
    time, and pass the previous packet's last event time as
    ``previous_time_us`` so that the decoder counts wraps across packets.
    mono uses the first event's time as time_base, so one payload spans at most
    4.29 s. Raises ValueError for other encodings.
    """
    if encoding == "evt3":
        return encode_evt3(events, previous_time_us=previous_time_us), 0
    if encoding == "mono":
        time_base_ns = int(events["t"][0]) * 1000 if len(events) else 0
        return encode_mono(events, time_base_ns), time_base_ns
    raise ValueError(
        f"cannot encode {encoding!r} payloads; encodable: {', '.join(ENCODABLE_ENCODINGS)}"
    )
