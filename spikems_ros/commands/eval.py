"""``spikems eval``: IoU and energy of a trained network per window length."""

import json
import logging
import math

LOG = logging.getLogger(__name__)

DEFAULT_WINDOWS_MS = "1,2,3,5,10,15,20,25"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="score a trained network: event-pixel and per-event IoU and energy ratio per window length",
        description="Run the network over labelled sequences as a stream (state carried from bin to bin) "
        "and score each window length separately.",
    )
    parser.add_argument("--weights", required=True, help="weights file (spikems-weights format)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="folder of labelled synthetic sequences (seq_*.npz from spikems simulate)")
    source.add_argument("--synthetic", action="store_true", help="generate labelled sequences with --seed")
    parser.add_argument("--seed", type=int, default=9001, help="generator seed for --synthetic (default: 9001)")
    parser.add_argument("--sequences", type=int, default=4, help="sequences to generate for --synthetic")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each generated sequence, seconds")
    parser.add_argument("--width", type=int, default=346, help="generated sensor width in pixels")
    parser.add_argument("--height", type=int, default=260, help="generated sensor height in pixels")
    parser.add_argument(
        "--windows", default=DEFAULT_WINDOWS_MS, help=f"window lengths in ms, comma-separated (default: {DEFAULT_WINDOWS_MS})"
    )
    parser.add_argument(
        "--output-delay-bins",
        type=int,
        default=None,
        help="bins between input and the output read for it (default: from the weights file, else 6)",
    )
    parser.add_argument(
        "--warmup-ms", type=float, default=30.0, help="skip windows this soon after the first event (default: 30)"
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device to run the network on")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(func=run)


def parse_windows(text: str) -> list:
    """Parse '1,3,10' into [1, 3, 10], rejecting anything that is not a positive integer."""
    windows = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit() or int(item) < 1:
            raise ValueError(f"--windows: {item!r} is invalid: expected positive integers in ms, e.g. 1,3,10")
        windows.append(int(item))
    return windows


def check_arguments(args) -> None:
    """Reject option values the evaluation cannot use, naming the option and the accepted range."""
    import torch

    if args.synthetic and args.sequences < 1:
        raise ValueError(f"--sequences {args.sequences} is invalid: expected an integer >= 1")
    if args.synthetic and not args.seconds > 0:
        raise ValueError(f"--seconds {args.seconds} is invalid: expected a number > 0")
    if args.output_delay_bins is not None and args.output_delay_bins < 0:
        raise ValueError(f"--output-delay-bins {args.output_delay_bins} is invalid: expected an integer >= 0")
    if not args.warmup_ms >= 0:
        raise ValueError(f"--warmup-ms {args.warmup_ms} is invalid: expected a number >= 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda is invalid here: torch finds no CUDA device; use --device cpu")


def json_safe(value):
    """Replace NaN and infinities (no window scored) by None, so the output is valid JSON."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def load_recordings(args) -> list:
    """Return LabelledRecording objects from --data or generated with --synthetic."""
    from pathlib import Path

    from spikems_ros.evaluation.runner import LabelledRecording
    from spikems_ros.simulation import SceneConfig, load_synthetic_sequence, simulate_sequence

    if args.synthetic:
        config = SceneConfig(width=args.width, height=args.height, duration_s=args.seconds, seed=args.seed)
        sequences = [(f"seed{args.seed}_seq{index}", simulate_sequence(config, index)) for index in range(args.sequences)]
    else:
        paths = sorted(Path(args.data).glob("seq_*.npz"))
        if not paths:
            raise FileNotFoundError(f"--data {args.data}: no seq_*.npz files found")
        sequences = [(path.name, load_synthetic_sequence(path)) for path in paths]

    return [
        LabelledRecording(name, sequence.events, sequence.labels > 0, sequence.width, sequence.height)
        for name, sequence in sequences
    ]


def evaluate(args) -> dict:
    """Run the evaluation and return the report as a dict."""
    import numpy as np

    from spikems_ros.evaluation.runner import run_network, score_windows, summarize
    from spikems_ros.segmentation import StreamSegmenter
    from spikems_ros.snn.weights import read_weights, load_network

    windows_ms = parse_windows(args.windows)
    check_arguments(args)
    metadata = read_weights(args.weights).metadata
    network = load_network(args.weights, device=args.device)
    bin_us = int(metadata.get("bin_us", 1000))
    delay_bins = args.output_delay_bins if args.output_delay_bins is not None else int(metadata.get("output_delay_bins", 6))
    if bin_us != round(network.bin_ms * 1000):
        raise ValueError(f"{args.weights}: bin_us {bin_us} does not match the network's bin of {network.bin_ms} ms")

    recordings = load_recordings(args)
    per_window = {window: [] for window in windows_ms}
    per_sequence = []
    for recording in recordings:
        segmenter = StreamSegmenter(network, recording.width, recording.height, device=args.device)
        outputs, events, foreground = run_network(segmenter, recording, bin_us)
        ann_macs = int(segmenter.ann_macs_per_frame.sum())
        for window_ms in windows_ms:
            scores = score_windows(
                outputs, events, foreground, recording,
                bin_us=bin_us,
                window_bins=max(1, round(window_ms * 1000 / bin_us)),
                output_delay_bins=delay_bins,
                warmup_us=int(args.warmup_ms * 1000),
                ann_macs_per_frame=ann_macs,
                num_layers=len(segmenter.layer_names),
            )
            per_window[window_ms].extend(scores)
            per_sequence.append({"sequence": recording.name, "window_ms": window_ms, **summarize(scores)})
        LOG.info("scored %s: %d events", recording.name, events.shape[0])

    scored = {window: len(per_window[window]) for window in windows_ms}
    if not any(scored.values()):
        raise ValueError(
            f"no window of {args.windows} ms had ground-truth foreground after the {args.warmup_ms} ms warm-up; "
            "use shorter windows or longer sequences"
        )
    for window, count in scored.items():
        if count == 0:
            LOG.warning("no %d ms window could be scored: the sequences are too short or have no foreground", window)

    return {
        "weights": str(args.weights),
        "source": f"synthetic seed {args.seed}, {args.sequences} sequences" if args.synthetic else str(args.data),
        "bin_us": bin_us,
        "output_delay_bins": delay_bins,
        "windows": [{"window_ms": window, **summarize(per_window[window])} for window in windows_ms],
        "sequences": per_sequence,
        "events_per_second": float(np.mean([r.events.shape[0] for r in recordings])) / max(args.seconds, 1e-9)
        if args.synthetic else None,
    }


def format_table(report: dict) -> str:
    lines = [
        f"weights: {report['weights']}   data: {report['source']}   output delay: {report['output_delay_bins']} bins",
        "window_ms  windows  event-pixel IoU   per-event IoU     ANN/SNN energy",
    ]
    for row in report["windows"]:
        lines.append(
            f"{row['window_ms']:>9}  {row['windows']:>7}  "
            f"{row['event_pixel_iou_mean']:.3f} ± {row['event_pixel_iou_std']:.3f}   "
            f"{row['per_event_iou_mean']:.3f} ± {row['per_event_iou_std']:.3f}   "
            f"{row['energy_ratio_mean']:.1f}x"
        )
    return "\n".join(lines)


def run(args) -> int:
    report = evaluate(args)
    if args.json:
        print(json.dumps(json_safe(report)))
    else:
        print(format_table(report))
    return 0
