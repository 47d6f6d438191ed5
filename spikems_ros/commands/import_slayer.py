"""``spikems import-slayer``: convert a released SpikeMS (SLAYER) checkpoint into our weights format."""

import json
import logging
from pathlib import Path

LOG = logging.getLogger(__name__)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "import-slayer",
        help="convert a released SpikeMS/SLAYER checkpoint into a spikems weights file",
        description="Read conv1..conv3 and deconv4..deconv6 weights and each layer's sampled "
        "srmKernel/refKernel, recover the time constants from the kernels and write our weights format. "
        "The checkpoint is loaded without unpickling arbitrary objects.",
    )
    parser.add_argument("checkpoint", help="released checkpoint (.pt/.pth state_dict)")
    parser.add_argument("--output", required=True, help="weights file to write")
    parser.add_argument(
        "--source-bin-ms",
        type=float,
        default=1.0,
        help="duration of one step of the checkpoint's kernels in ms; 1.0 keeps the kernel shapes in "
        "steps at our 1 ms bins (default: 1.0)",
    )
    parser.add_argument(
        "--weight-scale", type=float, default=1.0, help="factor applied to the weights (SLAYER's Ts; default 1.0)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")
    parser.set_defaults(func=run)


def run(args) -> int:
    from spikems_ros.snn.slayer_import import convert_slayer_checkpoint
    from spikems_ros.snn.weights import save_weights

    output = Path(args.output)
    if output.exists() and not args.force:
        raise FileExistsError(f"{output} exists; pass --force to overwrite it")
    network, report = convert_slayer_checkpoint(
        args.checkpoint, source_bin_ms=args.source_bin_ms, weight_scale=args.weight_scale
    )
    save_weights(
        output,
        network,
        metadata={
            "source": f"imported from SLAYER checkpoint {Path(args.checkpoint).name}",
            "source_bin_ms": args.source_bin_ms,
            "weight_scale": args.weight_scale,
            "recovered_constants_json": json.dumps(report),
        },
    )
    LOG.info("wrote %s", output)
    print(json.dumps({"output": str(output), "layers": report}))
    return 0
