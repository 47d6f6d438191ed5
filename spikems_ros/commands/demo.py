"""``spikems demo``: the main job on a built-in default, end to end over DDS."""

import logging
from pathlib import Path

LOG = logging.getLogger(__name__)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="replay a generated synthetic scene over DDS into the segmenter node and score its output",
        description="Generate a short labelled synthetic scene, start segmenter_node, publish the scene "
        "as EventPackets over Fast DDS, collect the node's outputs and print one summary line.",
    )
    parser.add_argument("--weights", default="", help="weights file (default: the shipped weights)")
    parser.add_argument("--seconds", type=float, default=0.5, help="length of the scene in seconds (default 0.5)")
    parser.add_argument("--seed", type=int, default=4242, help="scene seed (default 4242, never used in training)")
    parser.add_argument("--output-dir", default="runs/demo", help="folder for the overlay image (default runs/demo)")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    parser.set_defaults(func=run)


def run(args) -> int:
    from spikems_ros.ros.demo import run_demo

    result = run_demo(
        Path(args.output_dir), weights=args.weights, seconds=args.seconds, seed=args.seed, timeout_s=args.timeout
    )
    print(
        f"demo: events_in={result['events_in']} foreground={result['foreground']} "
        f"iou={result['iou']:.3f} rtf={result['rtf']:.2f}"
    )
    print(f"overlay image: {result['overlay'] or 'none received'}")
    return 0 if result["events_in"] == result["events_sent"] else 1
