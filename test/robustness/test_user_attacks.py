"""Command-line misuse found by trying the README's commands with hostile inputs.

Each case once ended in a traceback, a hang or a destroyed input. Each must now
end with exit code 2 and a message naming the bad value, and leave the input intact.
"""

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin
from rosbags.rosbag2 import Writer as Ros2Writer
from test_readers_bags import DVS_ARRAY, array_message, event_typestore

from spikems_ros.cli import main

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = REPOSITORY_ROOT / "weights" / "spikems_synthetic.pt"


@pytest.fixture
def small_npz(tmp_path) -> Path:
    """An EV-IMO npz of 50 events over 5 ms at 64x48, with a pickled meta entry."""
    rng = np.random.default_rng(0)
    table = np.stack(
        [np.sort(rng.uniform(0, 0.005, 50)), rng.integers(0, 64, 50), rng.integers(0, 48, 50), rng.integers(0, 2, 50)],
        axis=1,
    ).astype(np.float32)
    path = tmp_path / "small.npz"
    np.savez(path, events=table, meta=np.array({"frames": []}, dtype=object))
    return path


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--start-s", "nan", "--start-s nan is invalid: expected finite seconds >= 0"),
        ("--duration-s", "inf", "--duration-s inf is invalid: expected finite seconds > 0"),
        ("--duration-s", "nan", "--duration-s nan is invalid"),
    ],
)
def test_segment_rejects_non_finite_times(small_npz, caplog, option, value, message):
    with caplog.at_level(logging.ERROR):
        exit_code = main(["segment", str(small_npz), "--weights", str(WEIGHTS), option, value])

    assert exit_code == 2
    assert message in caplog.text


def test_segment_huge_duration_takes_all(small_npz, capsys):
    exit_code = main(["segment", str(small_npz), "--weights", str(WEIGHTS), "--duration-s", "1e300", "--json"])

    assert exit_code == 0
    assert json.loads(capsys.readouterr().out)["events_in"] == 50


@pytest.mark.parametrize("option", ["--output", "--render"])
def test_segment_never_replaces_its_input(small_npz, caplog, option):
    content = small_npz.read_bytes()
    with caplog.at_level(logging.ERROR):
        exit_code = main(["segment", str(small_npz), "--weights", str(WEIGHTS), option, str(small_npz), "--force"])

    assert exit_code == 2
    assert f"{option} {small_npz} is invalid: it is or overlaps the input" in caplog.text
    assert small_npz.read_bytes() == content


def test_convert_bag_never_replaces_its_input(tmp_path, caplog):
    store = event_typestore(False)
    source = tmp_path / "dvs_bag"
    with Ros2Writer(source, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        connection = writer.add_connection("/dvs/events", DVS_ARRAY, typestore=store)
        message = array_message(store, DVS_ARRAY, False, [(1, 2, 10, 1000 * e, True) for e in range(20)])
        writer.write(connection, 10_000_000_000, store.serialize_cdr(message, DVS_ARRAY))
    files_before = {path.name: path.read_bytes() for path in source.iterdir()}

    with caplog.at_level(logging.ERROR):
        exit_code = main(["convert-bag", str(source), "--output", str(source), "--force"])

    assert exit_code == 2
    assert "overlaps the input" in caplog.text
    assert {path.name: path.read_bytes() for path in source.iterdir()} == files_before


def test_pickled_meta_message_names_cli_flag(small_npz, caplog, capsys):
    with caplog.at_level(logging.INFO):
        exit_code = main(["info", str(small_npz)])

    assert exit_code == 0
    assert "skipped the pickled 'meta' entry" in caplog.text
    assert "--allow-pickle" in caplog.text


def test_named_pipe_rejected(tmp_path, caplog):
    pipe = tmp_path / "events.raw"
    os.mkfifo(pipe)

    with caplog.at_level(logging.ERROR):
        exit_code = main(["info", str(pipe)])

    assert exit_code == 2
    assert "is neither a regular file nor a folder" in caplog.text
