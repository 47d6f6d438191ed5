"""``spikems segment``: the node's segmentation pipeline run offline over an event file.

Events are fed to the pipeline in chunks of event time as fast as the machine
allows. The outputs the node would publish can be written to a ROS 2 bag
(``--output``) and the overlays to PNG files (``--render``). The summary
accounts for every decoded event.
"""

import json
import logging
import math
import time
from pathlib import Path

LOG = logging.getLogger(__name__)

DEFAULT_WEIGHTS_NAME = "spikems_synthetic.pt"

# Event time fed to the pipeline per call. The windows do not depend on it; it
# only sets how often the progress bar moves and how much is decoded ahead.
FEED_CHUNK_US = 50_000

# One diagnostics message per this much event time, as the node publishes them at 1 Hz.
DIAGNOSTICS_PERIOD_US = 1_000_000

# Frame of the outputs when the input is not a bag and --frame-id is not given.
DEFAULT_FRAME_ID = "event_camera"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "segment",
        help="segment an event file offline; write the node's outputs to a ROS 2 bag and PNG overlays",
        description="Run the segmentation pipeline of the spikems_segmenter node over an event file in "
        "any supported format, print a summary that accounts for every event, and optionally write the "
        "messages the node publishes to a ROS 2 bag (mcap) and overlay images to PNG files.",
    )
    parser.add_argument("input", help="event file or folder (bag, .raw, EV-IMO, EVIMO2, .aedat4)")
    parser.add_argument("--topic", default=None, help="event topic, for bags with several")
    parser.add_argument("--output", default=None, help="ROS 2 bag folder (mcap storage) to write the outputs to")
    parser.add_argument("--render", default=None, metavar="DIR", help="folder to write one PNG overlay per window to")
    parser.add_argument(
        "--render-every", type=int, default=1, metavar="N", help="with --render, write every Nth window (default: 1)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument(
        "--weights",
        default=None,
        help=f"weights file (default: weights/{DEFAULT_WEIGHTS_NAME} of the installed package or the repository)",
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device to run the network on")
    parser.add_argument(
        "--publish-period-ms", type=float, default=10.0,
        help="window length in ms of event time, one set of outputs per window (default: 10)",
    )
    parser.add_argument(
        "--output-delay-bins", type=int, default=None,
        help="bins between input and the output read for it (default: from the weights file, else 6)",
    )
    parser.add_argument(
        "--chunk-bins", type=int, default=16,
        help="bins per network call; results do not depend on it (default: 16)",
    )
    parser.add_argument(
        "--output-encoding", default="evt3", choices=("evt3", "mono"),
        help="encoding of the foreground EventPackets (default: evt3)",
    )
    parser.add_argument(
        "--frame-id", default=None,
        help=f"header.frame_id of the outputs (default: that of the input bag, else {DEFAULT_FRAME_ID!r})",
    )
    parser.add_argument(
        "--start-s", type=float, default=0.0, help="skip this many seconds after the first event (default: 0)"
    )
    parser.add_argument(
        "--duration-s", type=float, default=None, help="segment only this many seconds of event time (default: all)"
    )
    parser.add_argument(
        "--allow-pickle", action="store_true",
        help="unpickle the 'meta' entry of EV-IMO npz files (only for files you trust)",
    )
    parser.add_argument("--force", action="store_true", help="replace existing --output and --render outputs")
    parser.set_defaults(func=run)


def default_weights_path(candidates: list | None = None) -> Path:
    """Return the shipped weights file, searched where the node searches it.

    The places are the ament share directory of an installed package, then the
    repository's weights/ folder. Raises FileNotFoundError naming every place searched.
    """
    from spikems_ros.ros.parameters import default_weights_candidates

    candidates = default_weights_candidates() if candidates is None else candidates
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(candidate) for candidate in candidates)
    raise FileNotFoundError(f"default weights file not found (searched {searched}); pass --weights PATH")


def build_config(args, metadata: dict):
    """Return the PipelineConfig for the command-line options and the weights metadata."""
    from spikems_ros.pipeline import PipelineConfig

    bin_width_us = int(metadata.get("bin_us", 1000))
    period_us = round(args.publish_period_ms * 1000)
    if period_us < bin_width_us or period_us % bin_width_us:
        raise ValueError(
            f"--publish-period-ms {args.publish_period_ms} is invalid: expected a positive multiple of the "
            f"weights' bin width of {bin_width_us / 1000:g} ms"
        )
    if args.render_every < 1:
        raise ValueError(f"--render-every {args.render_every} is invalid: expected an integer >= 1")
    if args.output_delay_bins is not None:
        output_delay_bins = args.output_delay_bins
    else:
        output_delay_bins = int(metadata.get("output_delay_bins", 6))
    return PipelineConfig(
        bin_width_us=bin_width_us,
        window_bins=period_us // bin_width_us,
        output_delay_bins=output_delay_bins,
        chunk_bins=args.chunk_bins,
    )


def select_time_range(events, start_s: float, duration_s: float | None):
    """Return the events sorted by time from ``start_s`` after the first event, for ``duration_s`` seconds."""
    import numpy as np

    if not (math.isfinite(start_s) and start_s >= 0):
        raise ValueError(f"--start-s {start_s} is invalid: expected finite seconds >= 0")
    if duration_s is not None and not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"--duration-s {duration_s} is invalid: expected finite seconds > 0; omit it for all events")
    if events.shape[0] == 0 or (start_s == 0 and duration_s is None):
        return events
    first_us = int(events["t"][0]) + round(start_s * 1e6)
    if first_us > int(events["t"][-1]):
        length_s = (int(events["t"][-1]) - int(events["t"][0])) / 1e6
        raise ValueError(
            f"--start-s {start_s} is invalid: the recording lasts {length_s:.6f} s; expected a start within it"
        )
    latest_us = np.iinfo(np.int64).max
    stop_us = min(first_us + round(duration_s * 1e6), latest_us) if duration_s is not None else latest_us
    first, stop = np.searchsorted(events["t"], [first_us, stop_us])
    return events[first:stop]


def feed_slices(times_us, chunk_us: int) -> list:
    """Return (start, stop) index pairs of events sorted by time, one per ``chunk_us`` of event time holding events."""
    import numpy as np

    if times_us.shape[0] == 0:
        return []
    chunks = (times_us - times_us[0]) // chunk_us
    starts = np.concatenate([[0], np.flatnonzero(np.diff(chunks)) + 1])
    stops = np.concatenate([starts[1:], [times_us.shape[0]]])
    return list(zip(starts.tolist(), stops.tolist()))


def input_frame_id(recording, frame_id: str | None) -> str:
    """Return --frame-id, else the header frame_id of the input bag's first event message, else the default."""
    if frame_id is not None:
        return frame_id
    if recording.topic is not None and recording.format_name.startswith("rosbag"):
        from spikems_ros.bags.source import first_frame_id

        bag_frame_id = first_frame_id(recording.source, recording.topic)
        if bag_frame_id:
            return bag_frame_id
    return DEFAULT_FRAME_ID


class SegmentRun:
    """The pipeline over one recording, with the bag, PNG and diagnostics outputs of each window."""

    def __init__(self, pipeline, *, bag=None, render_dir: Path | None = None, render_every: int = 1,
                 frame_id: str = DEFAULT_FRAME_ID, device: str = "cpu", weights: str = ""):
        self.pipeline = pipeline
        self.bag = bag
        self.render_dir = render_dir
        self.render_every = render_every
        self.frame_id = frame_id
        self.device = device
        self.weights = weights
        self.chunks_fed = 0
        self.windows = 0
        self.images = 0
        self.ann_macs = 0
        self.started_s = time.perf_counter()
        self.first_window_start_us = None
        self.last_window_end_us = None
        self._next_diagnostics_us = None
        self._previous_snapshot = None  # health counters at the previous diagnostics

    def push(self, events) -> None:
        """Feed events to the pipeline and write the outputs of the windows they complete."""
        self.chunks_fed += 1
        self.handle(self.pipeline.push_events(events))

    def handle(self, results: list) -> None:
        """Write the outputs of completed windows."""
        from spikems_ros import outputs

        pipeline = self.pipeline
        for result in results:
            window = result.window
            render = self.render_dir is not None and self.windows % self.render_every == 0
            overlay = None
            if self.bag is not None or render:
                overlay = outputs.overlay_image(result, pipeline.width, pipeline.height, self.frame_id)
            if self.bag is not None:
                self.bag.write_window(result, overlay)
            if render:
                self._write_png(overlay, self.windows)

            self.windows += 1
            self.ann_macs += int(result.operations["ann_macs"])
            if self.first_window_start_us is None:
                self.first_window_start_us = window.start_us
                self._next_diagnostics_us = window.start_us + DIAGNOSTICS_PERIOD_US
                self._previous_snapshot = self._empty_snapshot(window.start_us)
            self.last_window_end_us = window.end_us
            if self.bag is not None and window.end_us >= self._next_diagnostics_us:
                self.write_diagnostics(window.end_us)
                periods = (window.end_us - self._next_diagnostics_us) // DIAGNOSTICS_PERIOD_US + 1
                self._next_diagnostics_us += periods * DIAGNOSTICS_PERIOD_US

    def _write_png(self, overlay: dict, index: int) -> None:
        from matplotlib.image import imsave

        bgr = overlay["data"].reshape(overlay["height"], overlay["width"], 3)  # (H, W, 3)
        imsave(self.render_dir / f"window_{index:06d}.png", bgr[..., ::-1])
        self.images += 1

    @staticmethod
    def _empty_snapshot(stamp_us: int):
        from spikems_ros.ros.health import HealthSnapshot

        return HealthSnapshot(wall_s=stamp_us / 1e6)

    def snapshot(self, stamp_us: int):
        """Return the node's health counters for this run at event time ``stamp_us``.

        Offline, event time replaces the node's wall clock, so rates are per
        second of event time. Each feed chunk counts as one input packet, and
        nothing is queued, dropped from a queue, lost or undecodable.
        """
        import numpy as np

        from spikems_ros.ros.health import HealthSnapshot

        counters = self.pipeline.counters
        recent_ms = counters.bin_processing_ms
        return HealthSnapshot(
            wall_s=stamp_us / 1e6,
            packets_received=self.chunks_fed,
            events_received=counters.events_in,
            packets_processed=self.chunks_fed,
            events_processed=counters.events_in,
            events_foreground=counters.events_foreground,
            bins_processed=counters.bins_processed,
            windows_published=self.windows,
            time_resets=counters.time_resets,
            worker_busy_s=time.perf_counter() - self.started_s,
            bin_processing_ms_median=float(np.median(recent_ms)) if recent_ms else 0.0,
            width=self.pipeline.width,
            height=self.pipeline.height,
        )

    def write_diagnostics(self, stamp_us: int, message: str = "running") -> None:
        """Write the node's diagnostics for the period since the previous ones, plus the offline counts.

        The level is always OK: offline, running slower than real time loses nothing.
        """
        from spikems_ros.ros.health import LEVEL_OK, health_report

        current = self.snapshot(stamp_us)
        values, _, _ = health_report(current, self._previous_snapshot, self.pipeline.config.bin_width_us)
        self._previous_snapshot = current
        binner = self.pipeline.binner.counters
        counters = self.pipeline.counters
        values.update(
            events_background=counters.events_background,
            events_dropped=binner.events_out_of_range + binner.events_late,
            boxes=counters.boxes,
            synaptic_ops=counters.synaptic_ops,
            device=self.device,
            weights=self.weights,
        )
        self.bag.write_diagnostics(stamp_us, values, level=LEVEL_OK, message=message)


def segment(args) -> dict:
    """Run the pipeline over the input and write the requested outputs; return the summary."""
    from contextlib import ExitStack

    import torch
    from tqdm import tqdm

    from spikems_ros.bags.segmenter import SegmenterBag
    from spikems_ros.bags.writer import BagWriter, check_output_is_not_input, check_output_path, replace_when_complete
    from spikems_ros.events import read_file
    from spikems_ros.pipeline import SegmentationPipeline
    from spikems_ros.snn.weights import load_network, read_weights

    hint = "pass --force to replace it"
    for option, output in (("--output", args.output), ("--render", args.render)):
        if output is not None:
            check_output_is_not_input(output, args.input, option)
            check_output_path(output, force=args.force, hint=hint)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda is invalid: torch finds no CUDA device; use --device cpu")
    weights_path = Path(args.weights) if args.weights is not None else default_weights_path()
    if not weights_path.is_file():
        raise FileNotFoundError(f"weights file {weights_path} not found")
    metadata = read_weights(weights_path).metadata
    config = build_config(args, metadata)
    network = load_network(weights_path, device=args.device)

    recording = read_file(args.input, topic=args.topic, allow_pickle=args.allow_pickle)
    events = select_time_range(recording.events, args.start_s, args.duration_s)
    frame_id = input_frame_id(recording, args.frame_id)
    pipeline = SegmentationPipeline(network, recording.width, recording.height, config, device=args.device)
    LOG.info("segmenting %d events of %s (%dx%d) with %s on %s", events.shape[0], recording.source,
             recording.width, recording.height, weights_path, args.device)

    with ExitStack() as stack:
        bag = None
        if args.output is not None:
            bag_path = stack.enter_context(replace_when_complete(args.output, force=args.force, hint=hint))
            writer = stack.enter_context(BagWriter(bag_path, storage="mcap"))
            bag = SegmenterBag(
                writer, width=recording.width, height=recording.height, frame_id=frame_id,
                encoding=args.output_encoding, bin_width_us=config.bin_width_us,
                output_delay_bins=config.output_delay_bins,
            )
        render_dir = None
        if args.render is not None:
            render_dir = stack.enter_context(replace_when_complete(args.render, force=args.force, hint=hint))
            render_dir.mkdir()

        segment_run = SegmentRun(
            pipeline, bag=bag, render_dir=render_dir, render_every=args.render_every, frame_id=frame_id,
            device=args.device, weights=str(weights_path),
        )
        times_us = events["t"]
        span_ms = int((times_us[-1] - times_us[0]) // 1000) if events.shape[0] else 0
        with tqdm(total=span_ms, unit="ms", desc="segment", disable=None) as progress:
            for start, stop in feed_slices(times_us, FEED_CHUNK_US):
                segment_run.push(events[start:stop])
                progress.update(int((times_us[stop - 1] - times_us[0]) // 1000) - progress.n)
            segment_run.handle(pipeline.flush())
        if bag is not None and segment_run.last_window_end_us is not None:
            segment_run.write_diagnostics(segment_run.last_window_end_us, message="finished")
    processing_s = time.perf_counter() - segment_run.started_s

    return summarize(
        recording, events, pipeline, segment_run, processing_s=processing_s, weights_path=weights_path, args=args,
        frame_id=frame_id,
    )


def summarize(recording, events, pipeline, segment_run, *, processing_s: float, weights_path: Path, args,
              frame_id: str) -> dict:
    """Return the summary of a run as JSON-ready values."""
    from spikems_ros.segmentation import energy_summary

    counters = pipeline.counters
    binner = pipeline.binner.counters
    decoded = int(recording.events.shape[0])
    dropped = binner.events_out_of_range + binner.events_late
    outside_time_range = decoded - int(events.shape[0])
    unaccounted = decoded - outside_time_range - counters.events_foreground - counters.events_background - dropped
    if unaccounted:
        LOG.warning("%d input events were neither classified nor counted as dropped", unaccounted)
    duration_s = (int(events["t"][-1]) - int(events["t"][0])) / 1e6 if events.shape[0] else 0.0
    energy = energy_summary(counters.synaptic_ops, segment_run.ann_macs)
    return {
        "input": str(recording.source),
        "format": recording.format_name,
        "topic": recording.topic,
        "width": recording.width,
        "height": recording.height,
        "events_decoded": decoded,
        "events_outside_time_range": outside_time_range,
        "events_in": counters.events_in,
        "events_foreground": counters.events_foreground,
        "events_background": counters.events_background,
        "events_dropped": dropped,
        "events_out_of_sensor": binner.events_out_of_range,
        "events_late": binner.events_late,
        "events_unaccounted": unaccounted,
        "windows": counters.windows,
        "boxes": counters.boxes,
        "synaptic_ops": counters.synaptic_ops,
        "ann_macs": segment_run.ann_macs,
        "energy_ratio": energy["energy_ratio"],
        "time_resets": counters.time_resets,
        "stream_duration_s": duration_s,
        "processing_s": processing_s,
        "network_s": counters.network_seconds,
        # NOTE: processing_s includes the fast path's first-call compilation (2-4 s at
        # 1280x720), so on files of a few seconds this factor overstates the steady cost.
        "real_time_factor": processing_s / duration_s if duration_s > 0 else None,
        "weights": str(weights_path),
        "device": args.device,
        "bin_width_us": pipeline.config.bin_width_us,
        "publish_period_ms": pipeline.config.window_bins * pipeline.config.bin_width_us / 1000,
        "output_delay_bins": pipeline.config.output_delay_bins,
        "frame_id": frame_id,
        "output_encoding": args.output_encoding,
        "output": str(Path(args.output)) if args.output is not None else None,
        "render": str(Path(args.render)) if args.render is not None else None,
        "images": segment_run.images,
    }


def format_summary(summary: dict) -> str:
    """Format the summary as aligned 'name: value' lines."""
    rtf = summary["real_time_factor"]
    lines = [
        f"input:              {summary['input']} ({summary['format']}"
        + (f", topic {summary['topic']})" if summary["topic"] else ")"),
        f"resolution:         {summary['width']}x{summary['height']}",
        f"events decoded:     {summary['events_decoded']}",
    ]
    if summary["events_outside_time_range"]:
        lines.append(f"outside time range: {summary['events_outside_time_range']}")
    lines += [
        f"events in:          {summary['events_in']}",
        f"foreground events:  {summary['events_foreground']}",
        f"background events:  {summary['events_background']}",
        f"dropped events:     {summary['events_dropped']} "
        f"({summary['events_out_of_sensor']} outside the sensor, {summary['events_late']} late)",
    ]
    if summary["events_unaccounted"]:
        lines.append(f"unaccounted events: {summary['events_unaccounted']}")
    lines += [
        f"windows:            {summary['windows']} of {summary['publish_period_ms']:g} ms",
        f"boxes:              {summary['boxes']}",
        f"synaptic ops:       {summary['synaptic_ops']} (in the windows' output bins)",
        f"energy ratio:       {summary['energy_ratio']:.1f}x less than the dense ANN" if summary["synaptic_ops"]
        else "energy ratio:       n/a (no synaptic operations)",
        f"stream duration:    {summary['stream_duration_s']:.6f} s",
        f"processing time:    {summary['processing_s']:.3f} s (network {summary['network_s']:.3f} s)",
        f"real-time factor:   {rtf:.3f}" if rtf is not None else "real-time factor:   n/a",
        f"output bag:         {summary['output'] or '-'}",
        f"rendered images:    {summary['images']} in {summary['render']}" if summary["render"] else
        "rendered images:    -",
    ]
    return "\n".join(lines)


def run(args) -> int:
    summary = segment(args)
    print(json.dumps(summary) if args.json else format_summary(summary))
    return 0
