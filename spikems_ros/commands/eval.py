"""``spikems eval``: IoU, detection rate, incremental prediction and energy of a trained network per window length."""

import json
import logging
import math

LOG = logging.getLogger(__name__)

DEFAULT_WINDOWS_MS = "1,2,3,5,10,15,20,25"
DEFAULT_WARMUP_MS = 30.0
DEFAULT_SHORT_WINDOW_MS = 3

# Scene options of --synthetic. With --data, the files fix these values instead.
SYNTHETIC_DEFAULTS = {"seed": 9001, "sequences": 4, "seconds": 1.0, "width": 346, "height": 260}


def register(subparsers) -> None:
    from spikems_ros.evaluation.datasets import DATASET_FORMATS

    parser = subparsers.add_parser(
        "eval",
        help="score a trained network per window length: IoU, detection rate, Kalman-filtered short windows, "
        "energy against an ANN, optionally side by side with ANN-2D",
        description="Run the network over labelled sequences as a stream (state carried from bin to bin) "
        "and score each window length separately.",
    )
    parser.add_argument("--weights", required=True, help="weights file of the spiking network (spikems-weights format)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data",
        help="a labelled recording or a folder of them: EV-IMO txt/npz, EVIMO2, MOD, EED or spikems simulate output",
    )
    source.add_argument("--synthetic", action="store_true", help="generate labelled sequences with --seed")
    parser.add_argument(
        "--format", choices=DATASET_FORMATS, default=None, help="layout of --data (default: detected from its files)"
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="read the pickled 'meta' of EV-IMO npz and EVIMO2 files for exact mask times; "
        "unpickling can run code, so use it for trusted files only",
    )
    # The scene options default to None so that one given with --data can be rejected.
    for option, kind, meaning in (
        ("seed", int, "generator seed"),
        ("sequences", int, "number of generated sequences"),
        ("seconds", float, "length of each generated sequence in seconds"),
        ("width", int, "generated sensor width in pixels"),
        ("height", int, "generated sensor height in pixels"),
    ):
        parser.add_argument(
            f"--{option}",
            type=kind,
            default=None,
            help=f"{meaning}, with --synthetic only (default: {SYNTHETIC_DEFAULTS[option]:g})",
        )
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
        "--warmup-ms",
        type=float,
        default=DEFAULT_WARMUP_MS,
        help=f"skip windows this soon after the first event, in ms (default: {DEFAULT_WARMUP_MS:g})",
    )
    parser.add_argument(
        "--baseline", default=None, help="ANN-2D weights file (spikems-ann2d-weights) scored on the same windows"
    )
    parser.add_argument(
        "--short-window-ms",
        type=int,
        default=DEFAULT_SHORT_WINDOW_MS,
        help="short window whose Kalman-filtered accuracy is compared with the training window's "
        f"(default: {DEFAULT_SHORT_WINDOW_MS})",
    )
    parser.add_argument("--report", default=None, help="folder for report.json, results.md and PNG plots")
    parser.add_argument("--force", action="store_true", help="write into a --report folder that is not empty")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device to run the networks on")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.set_defaults(func=run)


def parse_windows(text: str) -> list:
    """Parse '1,3,10' into [1, 3, 10], rejecting anything that is not a positive integer."""
    windows = []
    for item in text.split(","):
        item = item.strip()
        if not item.isdigit() or int(item) < 1:
            raise ValueError(f"--windows: {item!r} is invalid: expected positive integers in ms, e.g. 1,3,10")
        windows.append(int(item))
    return sorted(set(windows))


def with_synthetic_defaults(args):
    """Return a copy of ``args`` with the unset scene options of --synthetic at their defaults.

    Raises ValueError when a scene option is given with --data, where the files
    fix the resolution and length. With --data the scene options stay None.
    """
    import argparse

    given_options = [f"--{name}" for name in SYNTHETIC_DEFAULTS if getattr(args, name, None) is not None]
    if not args.synthetic:
        if given_options:
            raise ValueError(
                f"{', '.join(given_options)} apply to --synthetic only; with --data the files give the resolution and length"
            )
        return args
    values = vars(args).copy()
    for name, default in SYNTHETIC_DEFAULTS.items():
        if values.get(name) is None:
            values[name] = default
    return argparse.Namespace(**values)


def check_arguments(args) -> None:
    """Reject option values the evaluation cannot use, naming the option and the accepted range."""
    from pathlib import Path

    import torch

    for option, value in (("--weights", args.weights), ("--baseline", args.baseline)):
        if value is not None and not Path(value).exists():
            raise FileNotFoundError(f"{option} {value}: file not found")
    if args.synthetic and args.sequences < 1:
        raise ValueError(f"--sequences {args.sequences} is invalid: expected an integer >= 1")
    if args.synthetic and not args.seconds > 0:
        raise ValueError(f"--seconds {args.seconds} is invalid: expected a number > 0")
    if args.output_delay_bins is not None and args.output_delay_bins < 0:
        raise ValueError(f"--output-delay-bins {args.output_delay_bins} is invalid: expected an integer >= 0")
    if not args.warmup_ms >= 0:
        raise ValueError(f"--warmup-ms {args.warmup_ms} is invalid: expected a number >= 0")
    if args.short_window_ms < 1:
        raise ValueError(f"--short-window-ms {args.short_window_ms} is invalid: expected an integer >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda is invalid here: torch finds no CUDA device; use --device cpu")
    if args.report is not None:
        report = Path(args.report)
        if report.exists() and not report.is_dir():
            raise ValueError(f"--report {report} is a file, expected a folder")
        if report.is_dir() and any(report.iterdir()) and not args.force:
            raise ValueError(f"--report {report} is not empty; pass --force to overwrite the report files in it")


def json_safe(value):
    """Replace NaN and infinities (nothing scored) by None and numpy scalars by Python ones, for valid JSON."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def load_recordings(args) -> list:
    """Return LabelledRecording objects from --data or generated with --synthetic."""
    from spikems_ros.evaluation.datasets import LabelledRecording, load_dataset

    if not args.synthetic:
        return load_dataset(args.data, args.format, allow_pickle=args.allow_pickle)

    from spikems_ros.simulation import SceneConfig, simulate_sequence

    config = SceneConfig(width=args.width, height=args.height, duration_s=args.seconds, seed=args.seed)
    recordings = []
    for index in range(args.sequences):
        sequence = simulate_sequence(config, index)
        recordings.append(
            LabelledRecording(
                f"seed{args.seed}_seq{index}", sequence.events, sequence.labels > 0, sequence.width, sequence.height
            )
        )
    return recordings


def check_ground_truth(recordings: list) -> None:
    """Warn about recordings with no foreground event; raise ValueError when no recording has ground truth."""
    empty = [recording.name for recording in recordings
             if recording.boxes is None and not recording.foreground.any()]
    if not empty:
        return
    hint = ("a mask marks a moving object with a nonzero value, and EV-IMO and EVIMO2 masks store "
            "object id x 1000, so values below 500 read as background")
    if len(empty) == len(recordings):
        raise ValueError(f"no event of {', '.join(empty)} is foreground in the ground truth, so nothing can be "
                         f"scored; check the masks: {hint}")
    LOG.warning("%s: no event is foreground in the ground truth, so no window of it is scored; "
                "check the masks: %s", ", ".join(empty), hint)


def read_spiking_weights(path):
    """Read a spiking-network weights file, telling the user when it is an ANN-2D file meant for --baseline."""
    from spikems_ros.baselines.ann2d import Ann2dWeightsError, read_ann2d_weights
    from spikems_ros.snn.weights import WeightsError, read_weights

    try:
        return read_weights(path)
    except WeightsError as error:
        try:
            read_ann2d_weights(path)
        except Ann2dWeightsError:
            raise error from None
        raise ValueError(
            f"--weights {path} is an ANN-2D weights file: pass it as --baseline, and a spiking-network "
            "(spikems-weights) file as --weights"
        ) from error


def evaluate(args) -> dict:
    """Run the evaluation and return the report as a dict (see ``evaluation.report`` for its layout)."""
    from spikems_ros.evaluation.report import build_report
    from spikems_ros.evaluation.runner import WindowSettings, run_network, score_recording
    from spikems_ros.segmentation import StreamSegmenter
    from spikems_ros.snn.weights import load_network

    windows_ms = parse_windows(args.windows)
    args = with_synthetic_defaults(args)
    check_arguments(args)
    metadata = read_spiking_weights(args.weights).metadata
    network = load_network(args.weights, device=args.device)
    ann = None
    if args.baseline is not None:
        from spikems_ros.baselines.ann2d import load_ann2d

        ann = load_ann2d(args.baseline, device=args.device)
    bin_us = int(metadata.get("bin_us", 1000))
    delay_bins = args.output_delay_bins if args.output_delay_bins is not None else int(metadata.get("output_delay_bins", 6))
    if bin_us != round(network.bin_ms * 1000):
        raise ValueError(f"{args.weights}: bin_us {bin_us} does not match the network's bin of {network.bin_ms} ms")
    trained_window_ms = int(metadata.get("window_bins", 10)) * bin_us // 1000

    recordings = load_recordings(args)
    check_ground_truth(recordings)
    results = []  # (recording name, window_ms, scores of its windows)
    ann_macs_per_layer = None
    layer_names = None
    for recording in recordings:
        segmenter = StreamSegmenter(network, recording.width, recording.height, device=args.device)
        outputs, events, event_index = run_network(segmenter, recording, bin_us)
        layer_names = segmenter.layer_names
        macs = segmenter.ann_macs_per_frame
        if ann_macs_per_layer is not None and (macs != ann_macs_per_layer).any():
            LOG.warning("%s: resolution differs from the first recording; energy totals mix resolutions",
                        recording.name)
        ann_macs_per_layer = macs if ann_macs_per_layer is None else ann_macs_per_layer
        for window_ms in windows_ms:
            settings = WindowSettings(
                bin_us=bin_us,
                window_bins=max(1, round(window_ms * 1000 / bin_us)),
                output_delay_bins=delay_bins,
                warmup_us=int(args.warmup_ms * 1000),
            )
            scores = score_recording(outputs, events, event_index, recording, settings, len(layer_names), ann=ann)
            for score in scores:
                score["ann_macs_per_layer"] = macs
            results.append((recording.name, window_ms, scores))
        LOG.info("scored %s: %d events", recording.name, events.shape[0])

    if not any(scores for _, _, scores in results):
        raise ValueError(
            f"no window of {args.windows} ms had ground truth between the {args.warmup_ms:g} ms warm-up and the "
            f"last {delay_bins} bins of output delay; use shorter windows, a shorter delay or longer sequences"
        )
    for window_ms in windows_ms:
        if not any(scores for _, length_ms, scores in results if length_ms == window_ms):
            LOG.warning(
                "no %d ms window had ground truth between the %g ms warm-up and the last %d bins of output delay, "
                "so that row is empty; the recordings may be too short for it", window_ms, args.warmup_ms, delay_bins,
            )
    return build_report(
        results,
        windows_ms=windows_ms,
        layer_names=layer_names,
        trained_window_ms=trained_window_ms,
        short_window_ms=args.short_window_ms,
        header={
            "weights": str(args.weights),
            "baseline": str(args.baseline) if args.baseline else None,
            "source": f"synthetic seed {args.seed}, {args.sequences} sequences of {args.seconds:g} s"
            if args.synthetic else str(args.data),
            "bin_us": bin_us,
            "output_delay_bins": delay_bins,
            "warmup_ms": args.warmup_ms,
        },
    )


def run(args) -> int:
    from spikems_ros.evaluation.report import format_text, write_report

    args = with_synthetic_defaults(args)
    report = evaluate(args)
    if args.report is not None:
        write_report(json_safe(report), args.report, command=_command_line(args))
        LOG.info("report written to %s", args.report)
    if args.json:
        print(json.dumps(json_safe(report)))
    else:
        print(format_text(json_safe(report)))
    return 0


def _command_line(args) -> str:
    """Rebuild the command that produced the report, for the report's header.

    Options at their defaults are left out, every other option that changes the
    scores is written, so the command reproduces the report.
    """
    parts = ["spikems eval", f"--weights {args.weights}"]
    if args.synthetic:
        parts.append(f"--synthetic --seed {args.seed} --sequences {args.sequences}")
        for name in ("seconds", "width", "height"):
            if getattr(args, name) != SYNTHETIC_DEFAULTS[name]:
                parts.append(f"--{name} {getattr(args, name):g}")
    else:
        parts.append(f"--data {args.data}")
        if args.format:
            parts.append(f"--format {args.format}")
        if args.allow_pickle:
            parts.append("--allow-pickle")
    parts.append(f"--windows {args.windows}")
    if args.output_delay_bins is not None:
        parts.append(f"--output-delay-bins {args.output_delay_bins}")
    if args.warmup_ms != DEFAULT_WARMUP_MS:
        parts.append(f"--warmup-ms {args.warmup_ms:g}")
    if args.short_window_ms != DEFAULT_SHORT_WINDOW_MS:
        parts.append(f"--short-window-ms {args.short_window_ms}")
    if args.baseline:
        parts.append(f"--baseline {args.baseline}")
    if args.device != "cpu":
        parts.append(f"--device {args.device}")
    parts.append(f"--report {args.report}")
    return " ".join(parts)
