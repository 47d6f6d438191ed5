"""The ``spikems`` command: one subcommand per job, each defined in its own module.

Every module in ``spikems_ros.commands`` exposes ``register(subparsers)``, which
adds its parser and sets ``func`` to a callable taking the parsed arguments and
returning an exit code. Modules import heavy libraries (torch) inside ``func``
so that building the parser stays fast.
"""

import argparse
import importlib
import logging
import pkgutil
import sys

import spikems_ros.commands

from spikems_ros.events.errors import DecodeError, FileFormatError

LOG = logging.getLogger("spikems")


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="spikems",
        description="SpikeMS motion segmentation: read events, train, evaluate and segment.",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="logging level for messages on stderr (default: INFO)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_info in sorted(pkgutil.iter_modules(spikems_ros.commands.__path__)):
        module = importlib.import_module(f"spikems_ros.commands.{module_info.name}")
        module.register(subparsers)
    return parser


def main(argv=None) -> int:
    """Run the ``spikems`` command line and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")

    try:
        return int(args.func(args) or 0)
    except (FileFormatError, DecodeError, OSError, ValueError) as error:
        # Invalid input, missing or unreadable files, existing outputs, time-outs.
        LOG.error("%s", error, exc_info=LOG.isEnabledFor(logging.DEBUG))
        return 2
    except RuntimeError as error:
        # A run that failed on the way, such as a node process that did not start.
        LOG.error("%s", error, exc_info=LOG.isEnabledFor(logging.DEBUG))
        return 1
    except KeyboardInterrupt:
        LOG.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
