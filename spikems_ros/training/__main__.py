"""Entry point for data-parallel training: ``torchrun --nproc_per_node=N -m spikems_ros.training --config ...``."""

import argparse
import logging
import os
import sys

from spikems_ros.training.cli import add_training_arguments, run_training


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spikems_ros.training", description="Train the SpikeMS network (torchrun-aware)."
    )
    add_training_arguments(parser)
    args = parser.parse_args(argv)
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(level=logging.INFO, format=f"%(levelname)s rank {rank} %(name)s: %(message)s")
    return run_training(args)


if __name__ == "__main__":
    sys.exit(main())
