"""Counts of the fuzz inputs tried in this test session, printed by this folder's conftest, and fuzz settings."""

from collections import Counter
from contextlib import contextmanager

from hypothesis import HealthCheck, settings

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


def fuzz_settings(max_examples: int) -> settings:
    """Return reproducible Hypothesis settings: fixed derandomized inputs, no example database, no deadline."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
