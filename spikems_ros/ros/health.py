"""The segmenter node's health report for /diagnostics, computed from counter snapshots.

The node takes a snapshot of its cumulative counters once per diagnostics
period. Rates and the real-time factor come from the difference between two
snapshots, and totals from the latest one.
"""

from dataclasses import asdict, dataclass

# diagnostic_msgs/DiagnosticStatus levels.
LEVEL_OK = 0
LEVEL_WARN = 1


@dataclass(frozen=True)
class HealthSnapshot:
    """Cumulative counters of the node at one moment (wall time ``wall_s``)."""

    wall_s: float
    packets_received: int = 0
    events_received: int = 0  # decoded events of every packet received
    lost_packets: int = 0  # gaps in the input packets' seq numbers
    seq_repeats: int = 0  # packets whose seq is not above the previous one (a publisher restart, reordering)
    duplicate_packets: int = 0  # packets skipped because they repeat the previous one exactly
    decode_errors: int = 0  # packets skipped: undecodable payload, unknown encoding or invalid size
    events_out_of_range: int = 0  # decoded events outside the packet's width x height, dropped
    dropped_packets: int = 0  # packets dropped from the input queue to bound latency
    dropped_events: int = 0
    dropped_span_us: int = 0  # event time covered by the dropped packets
    packets_processed: int = 0  # queued packets the worker finished, outputs published
    events_processed: int = 0  # events run through the pipeline
    events_foreground: int = 0
    bins_processed: int = 0
    windows_published: int = 0
    time_resets: int = 0  # state resets after event time jumped (a bag loop, a driver restart)
    time_reanchors: int = 0  # sensor-to-host time offset changes seen by the decoder
    untimed_events_dropped: int = 0  # evt3 events before the first time words of the stream
    resolution_changes: int = 0
    processing_errors: int = 0  # packets whose processing raised and was skipped
    worker_busy_s: float = 0.0  # wall time the worker spent running the pipeline and publishing
    worker_bins: int = 0  # bins run by the worker calls that worker_busy_s counts
    bin_processing_ms_median: float = 0.0  # median network time per bin over recent bins
    queued_packets: int = 0
    queued_span_us: int = 0
    width: int = 0
    height: int = 0


def health_report(current: HealthSnapshot, previous: HealthSnapshot | None, bin_width_us: int) -> tuple:
    """Return (values, level, message) of the diagnostic status for the period between two snapshots.

    ``values`` maps key to value for DiagnosticStatus.values. The real-time
    factor is the worker's busy time over the event time of the bins it
    processed in the period. Above 1 the node falls behind the stream. The level
    is WARN when, during the period, the node fell behind, dropped, lost or failed
    to decode packets, or dropped events outside the sensor, and OK otherwise.
    """
    previous = previous or HealthSnapshot(wall_s=current.wall_s)
    period_s = current.wall_s - previous.wall_s
    new_events = current.events_received - previous.events_received
    busy_s = current.worker_busy_s - previous.worker_busy_s
    stream_s = (current.worker_bins - previous.worker_bins) * bin_width_us / 1e6

    event_rate = new_events / period_s if period_s > 0 else 0.0
    real_time_factor = busy_s / stream_s if stream_s > 0 else 0.0

    values = {
        "input_event_rate_per_s": f"{event_rate:.0f}",
        "real_time_factor": f"{real_time_factor:.3f}",
        "bin_processing_ms_median": f"{current.bin_processing_ms_median:.3f}",
        "dropped_bins": str(current.dropped_span_us // bin_width_us),
        "queued_span_ms": f"{current.queued_span_us / 1000:.1f}",
        "resolution": f"{current.width}x{current.height}",
    }
    for name, value in asdict(current).items():
        if name in ("wall_s", "worker_busy_s", "bin_processing_ms_median", "queued_span_us", "width", "height"):
            continue
        values[name] = str(value)

    problems = []
    if real_time_factor > 1.0:
        problems.append(f"slower than real time (factor {real_time_factor:.2f})")
    for name in ("dropped_packets", "lost_packets", "decode_errors", "events_out_of_range", "processing_errors"):
        increase = getattr(current, name) - getattr(previous, name)
        if increase:
            problems.append(f"{increase} {name.replace('_', ' ')}")
    if problems:
        return values, LEVEL_WARN, "; ".join(problems)
    if new_events == 0 and current.queued_packets > 0:
        return values, LEVEL_OK, f"no new events; {current.queued_packets} packets still queued"
    if new_events == 0:
        return values, LEVEL_OK, "no events received"
    return values, LEVEL_OK, "running"
