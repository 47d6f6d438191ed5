"""Dataset loaders on files written here in each layout, masks and boxes included."""

import pprint

import numpy as np
import pytest

from spikems_ros.evaluation.datasets import (
    EED,
    MOD,
    SYNTHETIC,
    detect_dataset_format,
    labels_from_masks,
    load_dataset,
)
from spikems_ros.events.dtype import make_events
from spikems_ros.events.errors import FileFormatError

png = pytest.importorskip("png", reason="pypng (requirements/core.txt) writes the MOD mask PNGs")

WIDTH, HEIGHT = 8, 6

# (t seconds, x, y, p). The object covers rows 1-2, columns 2-3 in the first
# mask (t = 0.01 s) and columns 4-5 in the second (t = 0.03 s).
EVENT_ROWS = [
    (0.009, 2, 1, 1),  # on the object, first mask
    (0.010, 7, 5, 0),  # background
    (0.012, 4, 1, 1),  # where the object will be, but the first mask is nearer: background
    (0.029, 4, 2, 0),  # on the object, second mask
    (0.031, 2, 1, 1),  # where the object was: background
]
EXPECTED_FOREGROUND = [True, False, False, True, False]
MASK_TIMES_S = (0.01, 0.03)


def object_masks() -> np.ndarray:
    masks = np.zeros((2, HEIGHT, WIDTH), np.uint16)
    masks[0, 1:3, 2:4] = 1
    masks[1, 1:3, 4:6] = 1
    return masks  # (F, H, W) object ids


def write_events_txt(path) -> None:
    path.write_text("".join(f"{t:.6f} {x} {y} {p}\n" for t, x, y, p in EVENT_ROWS))


def write_png(path, values: np.ndarray, bitdepth: int, planes: int) -> None:
    height, width = values.shape[:2]
    writer = png.Writer(width=width, height=height, bitdepth=bitdepth, greyscale=planes == 1)
    with open(path, "wb") as stream:
        writer.write(stream, values.reshape(height, width * planes).tolist())


def write_evimo_txt(folder):
    (folder / "img").mkdir(parents=True)
    write_events_txt(folder / "events.txt")
    frames = [{"id": index, "ts": ts, "gt_frame": f"depth_mask_{index}.png"} for index, ts in enumerate(MASK_TIMES_S)]
    (folder / "meta.txt").write_text(pprint.pformat({"frames": frames, "meta": {"res_x": WIDTH, "res_y": HEIGHT}}))
    for index, mask in enumerate(object_masks()):
        rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint16)
        rgb[..., 0] = mask * 1000  # object id x 1000
        rgb[..., 2] = 900  # depth in mm
        write_png(folder / "img" / f"depth_mask_{index}.png", rgb, 16, 3)
    return folder


def write_evimo_npz(path):
    # No pickled meta, so mask k is placed at the first event + k * discretization:
    # 0.009 s and 0.029 s, near enough to the exact times for the same labels.
    np.savez(
        path,
        events=np.array(EVENT_ROWS, np.float32),
        mask=object_masks() * 1000,
        depth=np.zeros((2, HEIGHT, WIDTH), np.uint16),
        index=np.array([0, 3], np.int64),
        discretization=np.float64(0.02),
        K=np.eye(3),
        D=np.zeros(4),
    )
    return path


def write_evimo2(folder):
    folder.mkdir()
    table = np.array(EVENT_ROWS)
    np.save(folder / "dataset_events_t.npy", table[:, 0])
    np.save(folder / "dataset_events_xy.npy", table[:, 1:3].astype(np.uint16))
    np.save(folder / "dataset_events_p.npy", table[:, 3].astype(np.uint8))
    np.savez(folder / "dataset_info.npz", discretization=np.float64(0.02), K=np.eye(3), D=np.zeros(4))
    masks = object_masks() * 1000
    np.savez(folder / "dataset_mask.npz", mask_0000000000=masks[0], mask_0000000001=masks[1])
    return folder


def write_mod(folder):
    (folder / "masks").mkdir(parents=True)
    write_events_txt(folder / "events.txt")
    for index, mask in enumerate(object_masks()):
        write_png(folder / "masks" / f"{index:06d}.png", (mask > 0).astype(np.uint8) * 255, 8, 1)
    (folder / "masks" / "timestamps.txt").write_text("".join(f"{t}\n" for t in MASK_TIMES_S))
    return folder


def write_eed(folder):
    folder.mkdir()
    write_events_txt(folder / "events.txt")
    # Two objects in the frame at 0.02 s, one at 0.04 s; written out of time order.
    (folder / "boxes.txt").write_text("0.04 1 1 2 2\n0.02 2 1 3 2\n0.02 6 4 7 5\n")
    return folder


def write_synthetic(path):
    from spikems_ros.simulation import SceneConfig, simulate_sequence, write_sequence

    sequence = simulate_sequence(SceneConfig(width=32, height=24, duration_s=0.02, seed=3), 0)
    write_sequence(path, sequence)
    return sequence


@pytest.mark.parametrize(
    "writer, name, format_name",
    [
        (write_evimo_txt, "evimo_txt", "evimo-txt"),
        (write_evimo_npz, "sequence.npz", "evimo-npz"),
        (write_evimo2, "evimo2", "evimo2-npy"),
        (write_mod, "mod", MOD),
    ],
)
def test_masked_layouts_label_events(tmp_path, writer, name, format_name):
    path = writer(tmp_path / name)

    assert detect_dataset_format(path) == format_name
    (recording,) = load_dataset(path)
    assert recording.format_name == format_name
    assert (recording.width, recording.height) == (WIDTH, HEIGHT)
    assert recording.foreground.tolist() == EXPECTED_FOREGROUND
    assert recording.events["x"].tolist() == [row[1] for row in EVENT_ROWS]
    assert recording.boxes is None


def test_eed_boxes_sorted_by_time(tmp_path):
    (recording,) = load_dataset(write_eed(tmp_path / "eed"))

    assert recording.format_name == EED
    assert recording.foreground is None
    assert recording.box_times_us.tolist() == [20_000, 20_000, 40_000]
    assert recording.boxes.tolist() == [[2, 1, 3, 2], [6, 4, 7, 5], [1, 1, 2, 2]]
    assert recording.events.shape == (5,)


def test_eed_rejects_inverted_box(tmp_path):
    folder = write_eed(tmp_path / "eed")
    (folder / "boxes.txt").write_text("0.02 3 1 2 2\n")
    with pytest.raises(FileFormatError, match="x_min <= x_max"):
        load_dataset(folder)


def test_mod_timestamps_must_match_masks(tmp_path):
    folder = write_mod(tmp_path / "mod")
    (folder / "masks" / "timestamps.txt").write_text("0.01\n")
    with pytest.raises(FileFormatError, match="one time per PNG"):
        load_dataset(folder)


def test_synthetic_folder_and_file(tmp_path):
    folder = tmp_path / "synthetic"
    folder.mkdir()
    first = write_synthetic(folder / "seq_0000.npz")
    write_synthetic(folder / "seq_0001.npz")

    assert detect_dataset_format(folder / "seq_0000.npz") == SYNTHETIC
    recordings = load_dataset(folder)
    assert [recording.name for recording in recordings] == ["seq_0000.npz", "seq_0001.npz"]
    assert np.array_equal(recordings[0].foreground, first.labels > 0)
    assert (recordings[0].width, recordings[0].height) == (32, 24)


def test_folder_of_mixed_layouts(tmp_path):
    write_mod(tmp_path / "a_mod")
    write_eed(tmp_path / "b_eed")
    (tmp_path / "notes.txt").write_text("not a recording")

    recordings = load_dataset(tmp_path)
    assert [recording.format_name for recording in recordings] == [MOD, EED]
    only_mod = load_dataset(tmp_path, MOD)
    assert [recording.name for recording in only_mod] == ["a_mod"]


def test_recording_without_ground_truth_rejected(tmp_path):
    folder = tmp_path / "plain"
    folder.mkdir()
    write_events_txt(folder / "events.txt")
    with pytest.raises(FileFormatError, match="no masks"):
        load_dataset(folder)


def test_labels_from_nearest_mask():
    events = make_events([2, 2, 2], [1, 1, 1], [0, 19_000, 21_000], [1, 1, 1])
    masks = np.zeros((2, 3, 4), np.uint16)
    masks[0, 1, 2] = 5
    labels = labels_from_masks(events, masks, np.array([0, 40_000]))
    assert labels.tolist() == [True, True, False]


def test_unrelated_file_lists_labelled_layouts(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a recording")
    with pytest.raises(FileFormatError, match="is not a labelled recording; expected one of the layouts evimo-txt"):
        load_dataset(notes)


def test_forced_format_names_detected_layout(tmp_path):
    folder = write_mod(tmp_path / "mod")
    with pytest.raises(FileFormatError, match="is a mod recording, not eed"):
        load_dataset(folder, EED)


def test_eed_events_txt_logs_guessed_size(tmp_path, caplog):
    (recording,) = load_dataset(write_eed(tmp_path / "eed"))

    # Events reach x = 7, y = 5, so the smallest known sensor, 240x180, is taken.
    assert (recording.width, recording.height) == (240, 180)
    assert "gives no sensor size, so 240x180 is used" in caplog.text
