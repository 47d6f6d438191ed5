"""``spikems convert-bag``: event-array bags to ROS 2 bags of event_camera_msgs/EventPacket."""

import json
import logging

LOG = logging.getLogger(__name__)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert-bag",
        help="convert dvs_msgs or prophesee_event_msgs event arrays into a ROS 2 bag of EventPackets",
        description="Read the event topic of a ROS 1 or ROS 2 bag (dvs_msgs/EventArray, as on EV-IMO's "
        "/dvs/events, prophesee_event_msgs/EventArray or event_camera_msgs/EventPacket) and write a ROS 2 bag "
        "in which that topic carries event_camera_msgs/EventPacket messages, one per packet duration of "
        "event time, stamped with event time, so that 'ros2 bag play' feeds the segmenter node. Other topics "
        "are copied; those that cannot be are listed.",
    )
    parser.add_argument("input", help="ROS 1 bag (.bag) or ROS 2 bag (folder, .db3 or .mcap)")
    parser.add_argument("--output", required=True, help="output ROS 2 bag folder (must not exist unless --force)")
    parser.add_argument("--topic", default=None, help="event topic, for bags with several")
    parser.add_argument(
        "--encoding", default="evt3", choices=("evt3", "mono"), help="EventPacket encoding (default: evt3)"
    )
    parser.add_argument(
        "--packet-duration-ms",
        type=float,
        default=1.0,
        help="event time covered by one packet, in ms (default: 1, about what camera drivers publish)",
    )
    parser.add_argument(
        "--storage", default="sqlite3", choices=("sqlite3", "mcap"), help="rosbag2 storage (default: sqlite3)"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing output")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.set_defaults(func=run)


def packet_duration_us(packet_duration_ms: float) -> int:
    """Convert --packet-duration-ms to whole microseconds, rejecting durations under 1 us."""
    duration_us = round(packet_duration_ms * 1000)
    if not duration_us >= 1:
        raise ValueError(
            f"--packet-duration-ms {packet_duration_ms} is invalid: expected at least 0.001 (1 microsecond)"
        )
    return duration_us


def summary_fields(summary) -> dict:
    """Return a ConversionSummary as JSON-ready values."""
    duration_s = None
    if summary.first_time_us is not None:
        duration_s = (summary.last_time_us - summary.first_time_us) / 1e6
    return {
        "input": str(summary.input),
        "output": str(summary.output),
        "storage": summary.storage,
        "topic": summary.topic,
        "input_type": summary.input_type,
        "encoding": summary.encoding,
        "width": summary.width,
        "height": summary.height,
        "frame_id": summary.frame_id,
        "events": summary.events,
        "packets": summary.packets,
        "first_time_us": summary.first_time_us,
        "last_time_us": summary.last_time_us,
        "duration_s": duration_s,
        "copied_topics": dict(summary.copied_topics),
        "skipped_topics": dict(summary.skipped_topics),
    }


def format_summary(fields: dict) -> str:
    """Format the summary as aligned 'name: value' lines."""
    duration = f"{fields['duration_s']:.6f} s" if fields["duration_s"] is not None else "n/a"
    lines = [
        f"input:       {fields['input']}",
        f"topic:       {fields['topic']} ({fields['input_type']} -> event_camera_msgs/msg/EventPacket)",
        f"resolution:  {fields['width']}x{fields['height']}",
        f"frame_id:    {fields['frame_id']!r}",
        f"events:      {fields['events']}",
        f"packets:     {fields['packets']} ({fields['encoding']})",
        f"duration:    {duration}",
        f"output:      {fields['output']} ({fields['storage']})",
    ]
    for topic, count in sorted(fields["copied_topics"].items()):
        lines.append(f"copied:      {topic} ({count} messages)")
    for topic, reason in sorted(fields["skipped_topics"].items()):
        lines.append(f"skipped:     {topic}: {reason}")
    return "\n".join(lines)


def run(args) -> int:
    from spikems_ros.bags.convert import convert_event_bag

    summary = convert_event_bag(
        args.input,
        args.output,
        topic=args.topic,
        encoding=args.encoding,
        packet_duration_us=packet_duration_us(args.packet_duration_ms),
        storage=args.storage,
        force=args.force,
    )
    fields = summary_fields(summary)
    print(json.dumps(fields) if args.json else format_summary(fields))
    return 0
