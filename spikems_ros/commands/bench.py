"""``spikems bench``: timing of the streaming network paths, the node and the decoders.

``stream`` runs the dense reference path, a peer library's network (snnTorch, when
installed) and the fast path side by side on the same generated stream. ``node``
measures the segmenter node's latency over Fast DDS. ``decode`` measures EVT 3.0
decoding throughput against expelliarmus (when installed). The logic lives in
``spikems_ros.benchmarks``.
"""

import json
import logging
from pathlib import Path

LOG = logging.getLogger(__name__)

DEFAULT_DECODE_FILE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real" / "evt3_night_sky.raw"


def _rates(text: str) -> tuple:
    try:
        rates = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise ValueError(f"--rates {text!r} is invalid: expected comma-separated events per second") from error
    return rates


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="time the network paths side by side, the node's latency and the decoders",
        description="Benchmarks for reports; timings depend on the machine and its load.",
    )
    benches = parser.add_subparsers(dest="bench", metavar="BENCH", required=True)

    stream = benches.add_parser(
        "stream", help="reference, peer library and fast path on one generated stream per event rate")
    stream.add_argument("--width", type=int, default=346, help="sensor width in pixels (default: 346)")
    stream.add_argument("--height", type=int, default=260, help="sensor height in pixels (default: 260)")
    stream.add_argument("--rates", default="0.3e6,1e6,3e6",
                        help="event rates in events per second, comma-separated (default: 0.3e6,1e6,3e6)")
    stream.add_argument("--seconds", type=float, default=2.0, help="event time per rate in seconds (default: 2)")
    stream.add_argument("--chunk-bins", type=int, default=10,
                        help="bins per call of the reference and fast paths (default: 10, one 10 ms window)")
    stream.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                        help="device of the reference and peer paths; the fast path runs on the CPU (default: cpu)")
    stream.add_argument("--threads", type=int, default=None,
                        help="CPU threads of every path, the same for each; more pay only on idle cores "
                             "(default: every core this process may use)")
    stream.add_argument("--weights", default=None, help="weights file (default: the shipped weights)")
    stream.add_argument("--json", action="store_true", help="print the report as one JSON object")
    stream.set_defaults(func=run_stream)

    node = benches.add_parser("node", help="latency of segmenter_node over Fast DDS at a real-time event rate")
    node.add_argument("--rate", type=float, default=1e6, help="events per second (default: 1e6)")
    node.add_argument("--seconds", type=float, default=3.0, help="stream length in seconds (default: 3)")
    node.add_argument("--width", type=int, default=346, help="sensor width in pixels (default: 346)")
    node.add_argument("--height", type=int, default=260, help="sensor height in pixels (default: 260)")
    node.add_argument("--weights", default="", help="weights file (default: the node's default)")
    node.add_argument("--json", action="store_true", help="print the report as one JSON object")
    node.set_defaults(func=run_node)

    decode = benches.add_parser("decode", help="EVT 3.0 decoding throughput in million events per second")
    decode.add_argument("path", nargs="?", default=str(DEFAULT_DECODE_FILE),
                        help=f"Prophesee EVT 3.0 .raw file (default: {DEFAULT_DECODE_FILE})")
    decode.add_argument("--repeats", type=int, default=5, help="runs per decoder; the median is kept (default: 5)")
    decode.add_argument("--json", action="store_true", help="print the report as one JSON object")
    decode.set_defaults(func=run_decode)


def run_stream(args) -> int:
    from spikems_ros.benchmarks.stream import StreamBenchConfig, format_stream_report, run_stream_bench
    from spikems_ros.benchmarks.system import usable_cores
    from spikems_ros.commands.segment import default_weights_path

    config = StreamBenchConfig(
        weights=str(args.weights or default_weights_path()), width=args.width, height=args.height,
        rates_ev_s=_rates(args.rates), seconds=args.seconds, chunk_bins=args.chunk_bins, device=args.device,
        threads=args.threads if args.threads is not None else usable_cores(),
    )
    report = run_stream_bench(config)
    print(json.dumps(report) if args.json else format_stream_report(report))
    return 0


def run_node(args) -> int:
    from spikems_ros.benchmarks.node import format_node_report, run_node_bench

    report = run_node_bench(rate_ev_s=args.rate, seconds=args.seconds, width=args.width, height=args.height,
                            weights=args.weights)
    print(json.dumps(report) if args.json else format_node_report(report))
    return 0


def run_decode(args) -> int:
    from spikems_ros.benchmarks.decode import format_decode_report, run_decode_bench

    if args.repeats < 1:
        raise ValueError(f"--repeats {args.repeats} is invalid: expected an integer >= 1")
    report = run_decode_bench(Path(args.path), repeats=args.repeats)
    print(json.dumps(report) if args.json else format_decode_report(report))
    return 0
