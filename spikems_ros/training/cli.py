"""Command-line options shared by ``spikems train`` and ``python -m spikems_ros.training``."""

import dataclasses
import logging
from pathlib import Path

LOG = logging.getLogger(__name__)

MODELS = ("snn", "ann2d")

# Files a training run writes into its output folder. A new run must not mix with an earlier one.
RUN_FILES = ("metrics.jsonl", "checkpoint.pt", "weights.pt", "weights_best.pt")


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
    parser.add_argument(
        "--force",
        action="store_true",
        help="start a new run in an output folder that contains an earlier run, deleting its "
        f"{', '.join(RUN_FILES)}",
    )


def check_output_dir(output_dir: Path, model: str, resume: bool, force: bool) -> None:
    """Raise FileExistsError when a new run would mix with an earlier run's files, unless ``force`` deletes them.

    An earlier run's metrics.jsonl is appended to and its weights replaced, so
    without this check two runs end up in one history.
    """
    if resume:
        return
    earlier_files = [name for name in RUN_FILES if (output_dir / name).exists()]
    if not earlier_files:
        return
    if not force:
        # Only the snn model writes a checkpoint to resume from.
        resume_hint = "--resume to continue it, " if model == "snn" else ""
        raise FileExistsError(
            f"output folder {output_dir} contains an earlier run ({', '.join(earlier_files)}); pass {resume_hint}"
            "--force to start over and delete those files, or --output-dir for another folder"
        )
    for name in earlier_files:
        # missing_ok: under torchrun every rank runs this check and deletes the same files.
        (output_dir / name).unlink(missing_ok=True)
    LOG.info("deleted %s of the earlier run in %s (--force)", ", ".join(earlier_files), output_dir)


def check_start_files(args, output_dir: Path, epochs: int) -> None:
    """Check the checkpoint and initial weights before the data is loaded, which can take minutes."""
    if args.resume:
        checkpoint_path = output_dir / "checkpoint.pt"
        if not checkpoint_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint_path}")

        # The training loop validates checkpoints the same way when it resumes.
        from spikems_ros.training.loop import load_checkpoint

        epochs_done = int(load_checkpoint(checkpoint_path)["epoch"]) + 1
        if epochs_done >= epochs:
            raise ValueError(
                f"--resume: {checkpoint_path} has completed {epochs_done} epochs and the configuration sets "
                f"{epochs}, so nothing is left to train; pass --epochs with a number above {epochs_done}"
            )
    if args.initial_weights:
        from spikems_ros.snn.weights import read_weights

        if not Path(args.initial_weights).exists():
            raise FileNotFoundError(f"--initial-weights {args.initial_weights}: file not found")
        read_weights(args.initial_weights)


def run_training(args) -> int:
    from spikems_ros.training.config import load_config

    if not Path(args.config).is_file():
        raise FileNotFoundError(f"--config {args.config}: file not found")
    config = load_config(args.config)
    if args.model is not None:
        config = dataclasses.replace(config, model=args.model)
    if config.model not in MODELS:
        raise ValueError(f"{args.config}: model {config.model!r} is invalid: expected one of {', '.join(MODELS)}")
    if args.output_dir is not None:
        config = dataclasses.replace(config, output_dir=args.output_dir)
    if args.epochs is not None:
        config = dataclasses.replace(config, optim=dataclasses.replace(config.optim, epochs=args.epochs))

    if config.model == "ann2d" and (args.resume or args.initial_weights):
        raise ValueError("--resume and --initial-weights apply to the snn model only, not to ann2d")
    output_dir = Path(config.output_dir)
    check_start_files(args, output_dir, config.optim.epochs)
    check_output_dir(output_dir, config.model, args.resume, args.force)

    if config.model == "ann2d":
        from spikems_ros.training.ann2d import train_ann2d

        metrics = train_ann2d(config, device_name=args.device)
    else:
        from spikems_ros.training.loop import train

        metrics = train(config, device_name=args.device, resume=args.resume, initial_weights=args.initial_weights)
    if metrics:
        LOG.info("final validation IoU %.3f; weights in %s/weights.pt", metrics["validation_iou"], config.output_dir)
    return 0
