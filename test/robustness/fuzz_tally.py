"""Counts of the fuzz inputs tried in this test session, printed by this folder's conftest."""

from collections import Counter
from contextlib import contextmanager

# Target name -> inputs tried, and target name -> inputs that raised an unexpected exception.
inputs_tried: Counter = Counter()
inputs_failed: Counter = Counter()


@contextmanager
def fuzz_input(target: str):
    """Count one input fed to ``target``, and count it as failed when the block raises."""
    inputs_tried[target] += 1
    try:
        yield
    except BaseException:
        inputs_failed[target] += 1
        raise
