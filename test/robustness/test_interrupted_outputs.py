"""Offline tools interrupted mid-write leave no output that looks valid.

The commands run as child processes and are stopped with SIGINT or SIGKILL once
their staging folder or first output file exists, or they fail on a corrupt
message in the middle of their input.
"""

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin
from rosbags.rosbag2 import Writer as Ros2Writer
from test_readers_bags import DVS_ARRAY, array_message, event_typestore

from spikems_ros.events.dtype import make_events
from spikems_ros.events.evt3 import encode_evt3
from spikems_ros.events.readers import read_file

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = REPOSITORY_ROOT / "weights" / "spikems_synthetic.pt"

# Upper bound on waiting for a child process to reach the point where it is stopped.
START_TIMEOUT_S = 120.0


def spikems(*arguments) -> subprocess.Popen:
    environment = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.Popen(
        [sys.executable, "-m", "spikems_ros.cli", *map(str, arguments)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment, cwd=REPOSITORY_ROOT,
    )


def wait_until(process: subprocess.Popen, condition) -> None:
    """Wait until ``condition()`` is true while ``process`` runs, and fail with its output if it ends first."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"command ended with {process.returncode} before the condition held:\n{process.stdout.read()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"condition not reached within {START_TIMEOUT_S} s")
        time.sleep(0.05)


def staging_entries(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f".{name}.*.partial"))


@pytest.fixture(scope="module")
def long_raw_file(tmp_path_factory) -> Path:
    """A 64x48 EVT 3.0 RAW file of 4 s of random events: several seconds of work for `spikems segment`."""
    rng = np.random.default_rng(5)
    count = 400_000
    events = make_events(
        rng.integers(0, 64, count), rng.integers(0, 48, count),
        np.sort(rng.integers(0, 4_000_000, count)), rng.integers(0, 2, count),
    )
    path = tmp_path_factory.mktemp("raw") / "long.raw"
    path.write_bytes(b"% format EVT3;height=48;width=64\n% end\n" + encode_evt3(events))
    return path


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGKILL])
def test_segment_stopped_mid_write(tmp_path, long_raw_file, stop_signal):
    output = tmp_path / "segmented"
    render = tmp_path / "frames"
    process = spikems("segment", long_raw_file, "--weights", WEIGHTS, "--output", output, "--render", render,
                      "--render-every", 50)
    # The bag's storage file exists once the writer has opened it in the staging folder.
    wait_until(process, lambda: any(entry.glob("segmented/*.mcap") for entry in staging_entries(tmp_path, "segmented")))
    process.send_signal(stop_signal)
    exit_code = process.wait(timeout=60)
    output_text = process.stdout.read()

    assert not output.exists(), f"{output} exists after the run was stopped"
    assert not render.exists(), f"{render} exists after the run was stopped"
    if stop_signal == signal.SIGINT:
        assert "interrupted" in output_text
        # Ctrl-C lets the command remove its staging folders.
        assert staging_entries(tmp_path, "segmented") == []
        assert staging_entries(tmp_path, "frames") == []
        # NOTE: run from pytest, about one run in two ends by the signal (-2) after
        # the command logged "interrupted" and removed its staging folders. Started
        # from a plain script, the same command exits 130 every time; cause unknown.
        assert exit_code in (130, -signal.SIGINT), output_text
    else:
        assert exit_code == -signal.SIGKILL
        # A killed process leaves only hidden .partial folders, never a file under the output's name.
        assert [entry.name for entry in tmp_path.iterdir() if not entry.name.startswith(".")] == []


def corrupt_dvs_bag(folder: Path, message_count: int, corrupt_id: int) -> Path:
    """A ROS 2 sqlite3 bag of dvs_msgs/EventArray whose message ``corrupt_id`` (from 1) is cut short."""
    store = event_typestore(False)
    path = folder / "input_bag"
    with Ros2Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        connection = writer.add_connection("/dvs/events", DVS_ARRAY, typestore=store)
        for index in range(message_count):
            records = [(index % 346, 7, 10 + index, 1000 * event, True) for event in range(50)]
            message = array_message(store, DVS_ARRAY, False, records)
            writer.write(connection, 1_000_000_000 * (10 + index), store.serialize_cdr(message, DVS_ARRAY))
    database = next(path.glob("*.db3"))
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE messages SET data = X'00010000' WHERE id = ?", (corrupt_id,))
    return path


def test_convert_bag_fails_on_corrupt_message(tmp_path):
    source = corrupt_dvs_bag(tmp_path, message_count=20, corrupt_id=12)
    output = tmp_path / "converted"

    process = spikems("convert-bag", source, "--output", output)
    exit_code = process.wait(timeout=120)
    output_text = process.stdout.read()

    assert exit_code == 2, output_text
    assert "11 of 20 messages on '/dvs/events' read before message 12 failed" in output_text
    assert not output.exists()
    assert staging_entries(tmp_path, "converted") == []


def test_convert_bag_failure_keeps_old_output(tmp_path):
    source = corrupt_dvs_bag(tmp_path, message_count=20, corrupt_id=12)
    output = tmp_path / "converted"
    output.mkdir()
    (output / "converted_0.mcap").write_bytes(b"earlier output")

    process = spikems("convert-bag", source, "--output", output, "--force")
    exit_code = process.wait(timeout=120)

    assert exit_code == 2, process.stdout.read()
    assert (output / "converted_0.mcap").read_bytes() == b"earlier output"


def test_simulate_killed_keeps_only_complete_files(tmp_path):
    output = tmp_path / "scenes"
    process = spikems("simulate", "--output", output, "--sequences", 20, "--seconds", 0.1, "--seed", 3)
    wait_until(process, lambda: len(list(output.glob("seq_*.npz"))) >= 1)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)

    complete = sorted(output.glob("seq_*.npz"))
    assert 1 <= len(complete) < 20
    assert not (output / "summary.json").exists()
    for path in complete:
        recording = read_file(path)
        assert recording.events.shape[0] > 0, f"{path} holds no events"
    # Whatever was being written keeps a .partial name, which no reader takes for a sequence.
    leftovers = [path.name for path in output.iterdir() if path not in complete]
    assert all(name.endswith(".partial") for name in leftovers), leftovers
