"""read_file on the project's own synthetic files: mask times come from their JSON metadata."""

import numpy as np

from spikems_ros.events import read_file
from spikems_ros.simulation import SceneConfig, simulate_sequence, write_sequence


def test_synthetic_mask_times_from_json(tmp_path, caplog):
    sequence = simulate_sequence(SceneConfig(width=32, height=24, duration_s=0.01, seed=4), 0)
    path = tmp_path / "seq_0000.npz"
    write_sequence(path, sequence)

    recording = read_file(path)

    np.testing.assert_array_equal(recording.mask_times_us, sequence.mask_times_us)
    assert "estimated" not in caplog.text
