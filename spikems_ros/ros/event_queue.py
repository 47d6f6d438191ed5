"""A thread-safe queue of decoded event packets, bounded by the event time it holds.

The subscription callback puts packets in, the node's worker thread takes them
out. When the worker falls behind, the oldest packets are dropped so that the
output never lags the input by more than the configured event time.
"""

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

# Upper bound on queued events whatever their time span: 16 bytes per event, so
# about 160 MB. It only matters for streams far denser than the time bound expects.
MAX_QUEUED_EVENTS = 10_000_000


@dataclass(frozen=True)
class QueuedPacket:
    """Decoded events of one EventPacket and what the worker needs to publish for them."""

    events: np.ndarray  # (N,) EVENT_DTYPE, absolute microseconds
    width: int
    height: int
    frame_id: str
    span_us: int  # event time this packet adds to the stream, see EventQueue.put
    first_us: int  # earliest event time
    last_us: int  # latest event time


@dataclass
class QueueCounters:
    """Totals of the queue since it was created."""

    packets_in: int = 0
    events_in: int = 0
    dropped_packets: int = 0
    dropped_events: int = 0
    dropped_span_us: int = 0  # event time covered by the dropped packets


class EventQueue:
    """FIFO of QueuedPacket bounded by ``max_span_us`` of event time and MAX_QUEUED_EVENTS events.

    A packet's span is the time from the previous packet's latest event to its own
    latest event, or from its own earliest event when time went backwards (a bag
    loop) or it is the first packet. The queued span is the sum over queued packets;
    while it exceeds ``max_span_us`` the oldest packets are dropped. The newest
    packet is always kept.
    """

    def __init__(self, max_span_us: int, max_events: int = MAX_QUEUED_EVENTS):
        if max_span_us < 1:
            raise ValueError(f"max_span_us = {max_span_us!r} is invalid: expected an integer >= 1")
        if max_events < 1:
            raise ValueError(f"max_events = {max_events!r} is invalid: expected an integer >= 1")
        self.max_span_us = int(max_span_us)
        self.max_events = int(max_events)
        self.counters = QueueCounters()
        self._packets = deque()
        self._span_us = 0
        self._events = 0
        self._last_time_us = None
        self._closed = False
        self._condition = threading.Condition()

    def packet_span_us(self, first_us: int, last_us: int) -> int:
        """Return the span ``put`` would give a packet whose events run from ``first_us`` to ``last_us``."""
        if self._last_time_us is None or last_us < self._last_time_us:
            return max(last_us - first_us, 0)
        return last_us - self._last_time_us

    def put(self, events: np.ndarray, width: int, height: int, frame_id: str) -> int:
        """Queue the events of one packet and return how many older packets were dropped for it."""
        if events.shape[0] == 0:
            return 0
        # Outside the lock: the worker's get_run holds it and should not wait on this.
        first_us, last_us = int(events["t"].min()), int(events["t"].max())
        with self._condition:
            span_us = self.packet_span_us(first_us, last_us)
            self._last_time_us = last_us
            self._packets.append(QueuedPacket(events, int(width), int(height), frame_id, span_us, first_us, last_us))
            self._span_us += span_us
            self._events += int(events.shape[0])
            self.counters.packets_in += 1
            self.counters.events_in += int(events.shape[0])

            dropped = 0
            while len(self._packets) > 1 and (self._span_us > self.max_span_us or self._events > self.max_events):
                oldest = self._packets.popleft()
                self._span_us -= oldest.span_us
                self._events -= int(oldest.events.shape[0])
                self.counters.dropped_packets += 1
                self.counters.dropped_events += int(oldest.events.shape[0])
                self.counters.dropped_span_us += oldest.span_us
                dropped += 1

            self._condition.notify()
            return dropped

    def get(self, timeout_s: float) -> QueuedPacket | None:
        """Remove and return the oldest packet, waiting up to ``timeout_s``; None on timeout or when closed."""
        with self._condition:
            if not self._packets and not self._closed:
                self._condition.wait(timeout_s)
            if not self._packets:
                return None
            packet = self._packets.popleft()
            self._span_us -= packet.span_us
            self._events -= int(packet.events.shape[0])
            return packet

    def get_run(self, timeout_s: float, max_packets: int, max_gap_us: int) -> list:
        """Remove and return the oldest packet and the packets that continue it, or [] on timeout or when closed.

        A packet continues the one before it when it has the same size and frame, and its
        earliest event lies from 0 to ``max_gap_us`` after the previous packet's latest
        event. The run's events, concatenated, are then one stream without a time jump.
        At most ``max_packets`` packets are returned.
        """
        with self._condition:
            if not self._packets and not self._closed:
                self._condition.wait(timeout_s)
            run = []
            while self._packets and len(run) < max_packets:
                packet = self._packets[0]
                if run:
                    previous = run[-1]
                    gap_us = packet.first_us - previous.last_us
                    same_stream = (packet.width, packet.height, packet.frame_id) == (
                        previous.width, previous.height, previous.frame_id)
                    if not same_stream or not 0 <= gap_us <= max_gap_us:
                        break
                self._packets.popleft()
                self._span_us -= packet.span_us
                self._events -= int(packet.events.shape[0])
                run.append(packet)
            return run

    def close(self) -> None:
        """Wake every waiting ``get``; later calls return what is left, then None."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    @property
    def queued_packets(self) -> int:
        with self._condition:
            return len(self._packets)

    @property
    def queued_span_us(self) -> int:
        with self._condition:
            return self._span_us
