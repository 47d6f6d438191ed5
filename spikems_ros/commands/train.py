"""``spikems train``: train the SpikeMS network on labelled event data."""


def register(subparsers) -> None:
    from spikems_ros.training.cli import add_training_arguments, run_training

    parser = subparsers.add_parser(
        "train",
        help="train the SpikeMS network (progress bar, validation each epoch, checkpoints)",
        description="Train the SpikeMS network. For data-parallel training run "
        "`torchrun --nproc_per_node=N -m spikems_ros.training --config ...`.",
    )
    add_training_arguments(parser)
    parser.set_defaults(func=run_training)
