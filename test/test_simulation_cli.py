"""``spikems simulate`` end to end on tiny scenes."""

import json

import numpy as np

from spikems_ros.cli import main
from spikems_ros.simulation.writer import load_synthetic_sequence

TINY = ["--seconds", "0.05", "--width", "64", "--height", "48", "--seed", "3"]


def _simulate(output, *extra) -> int:
    return main(["simulate", "--output", str(output), *TINY, *extra])


def test_writes_sequences_and_summary(tmp_path):
    output = tmp_path / "data"

    assert _simulate(output, "--sequences", "2", "--objects-min", "2", "--objects-max", "2") == 0

    assert sorted(path.name for path in output.iterdir()) == ["dataset.json", "seq_0000.npz", "seq_0001.npz"]
    summary = json.loads((output / "dataset.json").read_text())
    assert summary["seed"] == 3
    assert summary["sequences"] == 2
    assert summary["seconds"] == 0.05
    assert (summary["width"], summary["height"]) == (64, 48)
    assert summary["config"]["objects_min"] == 2

    total_events = 0
    for entry in summary["files"]:
        sequence = load_synthetic_sequence(output / entry["file"])
        assert sequence.events.shape[0] == entry["events"]
        assert np.count_nonzero(sequence.labels) == entry["foreground_events"]
        assert sequence.object_count == entry["objects"] == 2
        assert sequence.masks.shape == (50, 48, 64)
        total_events += entry["events"]
    assert summary["events"] == total_events
    assert 0.0 < summary["foreground_fraction"] < 1.0


def test_same_seed_same_files(tmp_path):
    assert _simulate(tmp_path / "first") == 0
    assert _simulate(tmp_path / "second") == 0

    for name in ("seq_0000.npz", "dataset.json"):
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes()


def test_refuses_non_empty_output(tmp_path):
    output = tmp_path / "data"
    output.mkdir()
    (output / "notes.txt").write_text("keep me")

    assert _simulate(output) == 2
    assert sorted(path.name for path in output.iterdir()) == ["notes.txt"]


def test_force_replaces_earlier_run(tmp_path):
    output = tmp_path / "data"
    assert _simulate(output, "--sequences", "2") == 0
    (output / "notes.txt").write_text("keep me")

    assert _simulate(output, "--sequences", "1", "--seed", "4", "--force") == 0

    # The second run's seq_0001.npz would be stale: it is removed, other files stay.
    assert sorted(path.name for path in output.iterdir()) == ["dataset.json", "notes.txt", "seq_0000.npz"]
    assert json.loads((output / "dataset.json").read_text())["seed"] == 4


def test_invalid_render_rate_fails(tmp_path):
    output = tmp_path / "data"

    assert _simulate(output, "--render-rate-hz", "3000") == 2
    assert not output.exists()


def test_zero_sequences_fails(tmp_path):
    assert _simulate(tmp_path / "data", "--sequences", "0") == 2


def test_invalid_value_names_option(tmp_path, caplog):
    assert _simulate(tmp_path / "data", "--seconds", "0") == 2
    assert "--seconds: duration_s = 0.0 is invalid" in caplog.text

    assert _simulate(tmp_path / "data", "--objects-min", "3", "--objects-max", "1") == 2
    assert "--objects-max: objects_max = 1 is out of range; expected 3 to" in caplog.text
