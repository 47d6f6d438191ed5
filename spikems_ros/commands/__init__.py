"""Subcommands of the ``spikems`` command line."""
