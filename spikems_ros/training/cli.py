"""Command-line options shared by ``spikems train`` and ``python -m spikems_ros.training``."""

import dataclasses
import logging

LOG = logging.getLogger(__name__)

MODELS = ("snn", "ann2d")


def add_training_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="training configuration (YAML), e.g. config/train_synthetic.yaml")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device to train on (default: cpu)")
    parser.add_argument(
        "--model",
        default=None,
        choices=MODELS,
        help="network to train: snn (SpikeMS) or ann2d (the CNN baseline on event-count frames); "
        "default: the configuration's model, else snn",
    )
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT_DIR/checkpoint.pt (snn only)")
    parser.add_argument("--output-dir", default=None, help="override output_dir of the configuration")
    parser.add_argument("--epochs", type=int, default=None, help="override optim.epochs of the configuration")
    parser.add_argument(
        "--initial-weights", default=None, help="start from these weights instead of random ones (snn only)"
    )


def run_training(args) -> int:
    from spikems_ros.training.config import load_config

    config = load_config(args.config)
    if args.model is not None:
        config = dataclasses.replace(config, model=args.model)
    if config.model not in MODELS:
        raise ValueError(f"{args.config}: model {config.model!r} is invalid: expected one of {', '.join(MODELS)}")
    if args.output_dir is not None:
        config = dataclasses.replace(config, output_dir=args.output_dir)
    if args.epochs is not None:
        config = dataclasses.replace(config, optim=dataclasses.replace(config.optim, epochs=args.epochs))

    if config.model == "ann2d":
        from spikems_ros.training.ann2d import train_ann2d

        if args.resume or args.initial_weights:
            raise ValueError("--resume and --initial-weights apply to the snn model only, not to ann2d")
        metrics = train_ann2d(config, device_name=args.device)
    else:
        from spikems_ros.training.loop import train

        metrics = train(config, device_name=args.device, resume=args.resume, initial_weights=args.initial_weights)
    if metrics:
        LOG.info("final validation IoU %.3f; weights in %s/weights.pt", metrics["validation_iou"], config.output_dir)
    return 0
