"""``spikems simulate``: write a labelled synthetic data set of MOD-like sequences.

Each sequence goes to ``DIR/seq_NNNN.npz`` (EV-IMO npz layout, see
``spikems_ros.simulation.writer``) and a summary to ``DIR/dataset.json``.
"""

import argparse
import dataclasses
import json
import logging
import os
from pathlib import Path

from spikems_ros.simulation.config import SceneConfig

LOG = logging.getLogger(__name__)

SUMMARY_NAME = "dataset.json"
PARTIAL_SUFFIX = ".partial"


def sequence_file_name(sequence_index: int) -> str:
    return f"seq_{sequence_index:04d}.npz"


def register(subparsers) -> None:
    """Add the ``simulate`` subcommand; its options map onto SceneConfig fields."""
    defaults = SceneConfig()
    parser = subparsers.add_parser(
        "simulate",
        help="generate labelled synthetic event sequences",
        description=(
            "Generate MOD-like sequences: a textured background moved by the camera and "
            "independently moving textured objects, with per-event object labels and 1 ms masks."
        ),
    )

    parser.add_argument("--output", required=True, type=Path, help="folder to write seq_NNNN.npz and dataset.json to")
    parser.add_argument("--sequences", type=int, default=1, help="number of sequences (default: 1)")
    parser.add_argument("--seconds", type=float, default=defaults.duration_s,
                        help=f"length of each sequence in seconds (default: {defaults.duration_s})")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help=f"base seed; sequence i uses (seed, i) (default: {defaults.seed})")

    parser.add_argument("--width", type=int, default=defaults.width,
                        help=f"width in pixels (default: {defaults.width})")
    parser.add_argument("--height", type=int, default=defaults.height,
                        help=f"height in pixels (default: {defaults.height})")
    parser.add_argument("--objects-min", type=int, default=defaults.objects_min,
                        help=f"minimum number of moving objects per sequence (default: {defaults.objects_min})")
    parser.add_argument("--objects-max", type=int, default=defaults.objects_max,
                        help=f"maximum number of moving objects per sequence (default: {defaults.objects_max})")

    parser.add_argument("--render-rate-hz", type=int, default=defaults.render_rate_hz,
                        help=f"rendered frames per second, a divisor of 1e6 whose period divides 1 ms "
                             f"(default: {defaults.render_rate_hz})")
    parser.add_argument("--contrast-threshold", type=float, default=defaults.contrast_threshold,
                        help=f"mean log-intensity change per event (default: {defaults.contrast_threshold})")
    parser.add_argument("--threshold-sigma", type=float, default=defaults.threshold_sigma,
                        help=f"per-pixel threshold mismatch, standard deviation (default: {defaults.threshold_sigma})")
    parser.add_argument("--refractory-us", type=int, default=defaults.refractory_us,
                        help=f"pixel refractory period in microseconds (default: {defaults.refractory_us})")
    parser.add_argument("--noise-rate-hz", type=float, default=defaults.noise_rate_hz,
                        help=f"noise events per pixel per second (default: {defaults.noise_rate_hz})")

    parser.add_argument("--force", action="store_true",
                        help="write into an existing non-empty folder, replacing its seq_*.npz and dataset.json")
    parser.set_defaults(func=run)


# SceneConfig errors name the field, but the user typed the option, so messages name both.
OPTION_OF_FIELD = {
    "width": "--width",
    "height": "--height",
    "duration_s": "--seconds",
    "seed": "--seed",
    "render_rate_hz": "--render-rate-hz",
    "objects_min": "--objects-min",
    "objects_max": "--objects-max",
    "contrast_threshold": "--contrast-threshold",
    "threshold_sigma": "--threshold-sigma",
    "refractory_us": "--refractory-us",
    "noise_rate_hz": "--noise-rate-hz",
}


def config_from_arguments(args: argparse.Namespace) -> SceneConfig:
    """Map command-line options onto SceneConfig, raising ValueError or TypeError that names an invalid option."""
    try:
        return _scene_config(args)
    except (ValueError, TypeError) as error:
        field = str(error).split(" ", 1)[0]
        if field not in OPTION_OF_FIELD:
            raise
        raise type(error)(f"{OPTION_OF_FIELD[field]}: {error}") from None


def _scene_config(args: argparse.Namespace) -> SceneConfig:
    return SceneConfig(
        width=args.width,
        height=args.height,
        duration_s=args.seconds,
        seed=args.seed,
        render_rate_hz=args.render_rate_hz,
        objects_min=args.objects_min,
        objects_max=args.objects_max,
        contrast_threshold=args.contrast_threshold,
        threshold_sigma=args.threshold_sigma,
        refractory_us=args.refractory_us,
        noise_rate_hz=args.noise_rate_hz,
    )


def _prepare_output(output: Path, force: bool) -> None:
    """Create ``output`` or check that it may be written to; with ``force``, delete earlier results."""
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {output} exists and is not a folder")
    existing = sorted(output.iterdir()) if output.is_dir() else []
    if existing and not force:
        raise ValueError(f"--output {output} is not empty; choose another folder or pass --force")

    output.mkdir(parents=True, exist_ok=True)
    for path in existing:
        # Only files this command writes are removed; anything else stays.
        if path.is_file() and (path.name == SUMMARY_NAME or (path.name.startswith("seq_") and path.suffix == ".npz")):
            path.unlink()
            LOG.info("removed %s written by an earlier run", path)


def _write_atomically(path: Path, write) -> None:
    """Call ``write(temporary_path)`` and rename the result to ``path`` once it is complete."""
    temporary = path.with_name(path.name + PARTIAL_SUFFIX)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def run(args: argparse.Namespace) -> int:
    """Generate ``args.sequences`` sequences into ``args.output``; return the exit code."""
    import numpy as np
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from spikems_ros.simulation.config import GENERATOR_VERSION
    from spikems_ros.simulation.generator import foreground_fraction, simulate_sequence
    from spikems_ros.simulation.writer import write_sequence

    if args.sequences < 1:
        raise ValueError(f"--sequences {args.sequences} is invalid; expected 1 or more")
    config = config_from_arguments(args)
    _prepare_output(args.output, args.force)

    steps_per_sequence = config.duration_us // config.render_step_us
    summaries = []
    bar = tqdm(total=args.sequences * steps_per_sequence, unit="frame", desc="simulate")
    with bar, logging_redirect_tqdm():
        for sequence_index in range(args.sequences):
            sequence = simulate_sequence(config, sequence_index, progress=bar.update)
            name = sequence_file_name(sequence_index)
            _write_atomically(args.output / name, lambda path: write_sequence(path, sequence))
            summaries.append({
                "file": name,
                "events": int(sequence.events.shape[0]),
                "foreground_events": int(np.count_nonzero(sequence.labels)),
                "foreground_fraction": foreground_fraction(sequence.labels),
                "objects": sequence.object_count,
            })

    event_total = sum(summary["events"] for summary in summaries)
    foreground_total = sum(summary["foreground_events"] for summary in summaries)
    summary = {
        "generator_version": GENERATOR_VERSION,
        "seed": config.seed,
        "sequences": args.sequences,
        "seconds": config.duration_s,
        "width": config.width,
        "height": config.height,
        "events": event_total,
        "events_per_second": event_total / (args.sequences * config.duration_s),
        "foreground_fraction": foreground_total / event_total if event_total else 0.0,
        "config": dataclasses.asdict(config),
        "files": summaries,
    }
    _write_atomically(
        args.output / SUMMARY_NAME,
        lambda path: path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n"),
    )
    LOG.info(
        "wrote %d sequences, %d events (%.1f %% foreground) to %s",
        args.sequences, event_total, 100.0 * summary["foreground_fraction"], args.output,
    )
    return 0
