"""EV-IMO npz layout of synthetic sequences: round trip, layout, rejection of bad files."""

import dataclasses
import hashlib
import json
import zipfile

import numpy as np
import pytest

from spikems_ros.events.errors import FileFormatError
from spikems_ros.simulation.config import SceneConfig
from spikems_ros.simulation.generator import simulate_sequence
from spikems_ros.simulation.writer import load_synthetic_sequence, write_sequence

CONFIG = SceneConfig(width=80, height=60, duration_s=0.04, seed=21)


@pytest.fixture(scope="module")
def sequence():
    return simulate_sequence(CONFIG)


@pytest.fixture()
def written(tmp_path, sequence):
    path = tmp_path / "seq_0000.npz"
    write_sequence(path, sequence)
    return path


def _arrays(path) -> dict:
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def _rewrite(source, target, **changes) -> None:
    """Copy an npz file, replacing or (with value None) dropping arrays."""
    arrays = _arrays(source)
    arrays.update(changes)
    np.savez(target, **{name: value for name, value in arrays.items() if value is not None})


def test_round_trip(written, sequence):
    loaded = load_synthetic_sequence(written)

    np.testing.assert_array_equal(loaded.events, sequence.events)
    np.testing.assert_array_equal(loaded.labels, sequence.labels)
    np.testing.assert_array_equal(loaded.masks, sequence.masks)
    np.testing.assert_array_equal(loaded.mask_times_us, sequence.mask_times_us)
    assert (loaded.width, loaded.height) == (CONFIG.width, CONFIG.height)
    assert loaded.meta == sequence.meta


def test_layout_matches_evimo(written, sequence):
    arrays = _arrays(written)
    frame_count = sequence.masks.shape[0]

    assert "meta" not in arrays
    assert arrays["events"].dtype == np.float64
    assert arrays["events"].shape == (sequence.events.shape[0], 4)
    np.testing.assert_array_equal(arrays["events"][:, 0], sequence.events["t"] * 1e-6)
    assert set(np.unique(arrays["events"][:, 3]).tolist()) == {0.0, 1.0}
    assert arrays["mask"].dtype == np.uint16
    assert arrays["mask"].shape == (frame_count, CONFIG.height, CONFIG.width)
    np.testing.assert_array_equal(arrays["mask"], sequence.masks * 1000)
    assert arrays["depth"].dtype == np.uint16
    assert arrays["depth"].shape == arrays["mask"].shape
    assert not np.any(arrays["depth"])
    assert arrays["discretization"].shape == ()
    assert float(arrays["discretization"]) == 0.001
    assert arrays["K"].shape == (3, 3)
    assert arrays["D"].shape == (4,)
    assert arrays["labels"].dtype == np.uint8
    assert json.loads(arrays["meta_json"].item())["seed"] == CONFIG.seed


def test_index_points_at_first_event(written):
    arrays = _arrays(written)
    times_s = arrays["events"][:, 0]
    index = arrays["index"]

    assert index.dtype == np.int64
    for frame, first in enumerate(index):
        start_s = frame * 0.001
        assert first == times_s.shape[0] or times_s[first] >= start_s - 1e-12
        assert first == 0 or times_s[first - 1] < start_s - 1e-12


def test_same_sequence_same_bytes(tmp_path, sequence, written):
    again = tmp_path / "again.npz"
    write_sequence(again, simulate_sequence(CONFIG))

    assert hashlib.sha256(again.read_bytes()).digest() == hashlib.sha256(written.read_bytes()).digest()


def test_pickled_meta_never_loaded(tmp_path, written):
    # A pickled object that would fail loudly if anything unpickled it.
    target = tmp_path / "with_meta.npz"
    _rewrite(written, target, meta=np.array([{"frames": []}], dtype=object))

    loaded = load_synthetic_sequence(target)
    assert loaded.events.shape[0] > 0


def test_pickled_array_rejected(tmp_path, written):
    target = tmp_path / "pickled_labels.npz"
    arrays = _arrays(written)
    _rewrite(written, target, labels=np.array(list(arrays["labels"][:3]) + ["x"], dtype=object))

    with pytest.raises(FileFormatError, match="pickled_labels.npz"):
        load_synthetic_sequence(target)


def test_missing_array_rejected(tmp_path, written):
    target = tmp_path / "no_labels.npz"
    _rewrite(written, target, labels=None)

    with pytest.raises(FileFormatError, match="missing arrays \\['labels'\\]"):
        load_synthetic_sequence(target)


def test_mask_not_scaled_rejected(tmp_path, written):
    target = tmp_path / "raw_ids.npz"
    arrays = _arrays(written)
    _rewrite(written, target, mask=(arrays["mask"] // 1000).astype(np.uint16) + 1)

    with pytest.raises(FileFormatError, match="object id x 1000"):
        load_synthetic_sequence(target)


def test_event_outside_sensor_rejected(tmp_path, written):
    target = tmp_path / "outside.npz"
    events = _arrays(written)["events"].copy()
    events[0, 1] = CONFIG.width
    _rewrite(written, target, events=events)

    with pytest.raises(FileFormatError, match="outside the 80 x 60 sensor"):
        load_synthetic_sequence(target)


def test_not_a_zip_rejected(tmp_path):
    target = tmp_path / "text.npz"
    target.write_text("not an archive")

    with pytest.raises(FileFormatError, match="text.npz"):
        load_synthetic_sequence(target)


def test_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        load_synthetic_sequence(tmp_path / "absent.npz")


def test_members_have_fixed_timestamp(written):
    with zipfile.ZipFile(written) as archive:
        stamps = {info.date_time for info in archive.infolist()}

    assert stamps == {(1980, 1, 1, 0, 0, 0)}


def test_evimo_reader_agrees(written, sequence):
    from spikems_ros.events.readers.evimo import read_evimo_npz

    recording = read_evimo_npz(written)

    np.testing.assert_array_equal(recording.events, sequence.events)
    np.testing.assert_array_equal(recording.masks, sequence.masks)
    assert (recording.width, recording.height) == (CONFIG.width, CONFIG.height)
    # Without a pickled meta that reader starts the masks at the first event, not at 0.
    offset_us = recording.mask_times_us - sequence.mask_times_us
    assert np.all(np.abs(offset_us) <= sequence.events["t"][0])


def test_object_id_too_large_rejected(tmp_path, sequence):
    masks = sequence.masks.copy()
    masks[0, 0, 0] = 66
    too_many = dataclasses.replace(sequence, masks=masks)

    with pytest.raises(ValueError, match="mask object id 66 is invalid"):
        write_sequence(tmp_path / "too_many.npz", too_many)
