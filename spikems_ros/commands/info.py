"""``spikems info``: what an event file holds."""

import json
import logging

LOG = logging.getLogger(__name__)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "info",
        help="print format, resolution, event count, time span and rate of an event file",
        description="Read an event file in any supported format and summarise it.",
    )
    parser.add_argument("path", help="event file or folder (bag, .raw, EV-IMO, EVIMO2, .aedat4)")
    parser.add_argument("--topic", default=None, help="event topic, for bags with several")
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="unpickle the 'meta' entry of EV-IMO npz files (only for files you trust)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def summarize_recording(recording) -> dict:
    """Return the summary fields of a Recording as plain Python values."""
    events = recording.events
    count = int(events.shape[0])
    first_us = int(events["t"][0]) if count else None
    last_us = int(events["t"][-1]) if count else None
    duration_s = (last_us - first_us) / 1e6 if count else 0.0
    rate_per_s = count / duration_s if duration_s > 0 else None
    masks = recording.masks
    return {
        "path": str(recording.source),
        "format": recording.format_name,
        "topic": recording.topic,
        "width": int(recording.width),
        "height": int(recording.height),
        "events": count,
        "first_time_us": first_us,
        "last_time_us": last_us,
        "duration_s": duration_s,
        "event_rate_per_s": rate_per_s,
        "on_fraction": float(events["p"].mean()) if count else None,
        "triggers": int(recording.triggers.shape[0]),
        "masks": int(masks.shape[0]) if masks is not None else 0,
    }


def format_summary(summary: dict) -> str:
    """Format a summary as aligned 'name: value' lines."""
    rate = summary["event_rate_per_s"]
    lines = [
        f"path:        {summary['path']}",
        f"format:      {summary['format']}",
    ]
    if summary["topic"]:
        lines.append(f"topic:       {summary['topic']}")
    lines += [
        f"resolution:  {summary['width']}x{summary['height']}",
        f"events:      {summary['events']}",
        f"first time:  {summary['first_time_us']} us",
        f"last time:   {summary['last_time_us']} us",
        f"duration:    {summary['duration_s']:.6f} s",
        f"event rate:  {rate:.0f} ev/s ({rate / 1e6:.3f} Mev/s)" if rate else "event rate:  n/a",
        f"triggers:    {summary['triggers']}",
        f"masks:       {summary['masks']}",
    ]
    return "\n".join(lines)


def run(args) -> int:
    from spikems_ros.events import read_file

    recording = read_file(args.path, topic=args.topic, allow_pickle=args.allow_pickle)
    summary = summarize_recording(recording)
    if args.json:
        print(json.dumps(summary))
    else:
        print(format_summary(summary))
    return 0
