"""Shared fixtures: the folder of real recordings, skipped with a reason when absent."""

import os
from pathlib import Path

import pytest

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]

# Real recordings live beside the repository and are never copied into it.
REAL_DATA_DIR = Path(
    os.environ.get("SPIKEMS_REAL_DATA", REPOSITORY_ROOT.parent / "shared" / "data" / "real")
)


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """Folder of real event recordings; tests using it skip when it is absent."""
    if not REAL_DATA_DIR.is_dir():
        pytest.skip(f"real recordings folder {REAL_DATA_DIR} is absent (set SPIKEMS_REAL_DATA)")
    return REAL_DATA_DIR


def real_file(name: str) -> Path:
    """Path of one real recording, skipping the calling test when it is absent."""
    path = REAL_DATA_DIR / name
    if not path.is_file():
        pytest.skip(f"real recording {path} is absent (set SPIKEMS_REAL_DATA)")
    return path


@pytest.fixture(autouse=True, scope="session")
def isolated_ros_domain():
    """Keep DDS discovery on this machine and apart from concurrent test runs.

    Discovery stays on loopback, and each test session gets its own domain id so
    two runs on one machine do not see each other's topics.
    """
    previous = {name: os.environ.get(name) for name in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE")}
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_DOMAIN_ID"] = str(os.getpid() % 100 + 1)
    yield
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
