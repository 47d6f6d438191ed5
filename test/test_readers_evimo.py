"""Reading the EV-IMO TXT and NPZ layouts and the EVIMO2 NPY layout from files written here."""

import logging
import pprint

import numpy as np
import pytest
from conftest import real_file

from spikems_ros.events.dtype import make_events
from spikems_ros.events.errors import FileFormatError
from spikems_ros.events.readers import detect_format, read_file
from spikems_ros.events.readers.evimo import object_ids

WIDTH, HEIGHT = 8, 6

# Events as (t seconds, x, y, p); the third is older than the second, so the
# reader must sort.
EVENT_ROWS = [
    (0.000001, 0, 0, 1),
    (0.012345, 7, 5, 0),
    (0.002000, 3, 2, 1),
    (1.500000, 4, 1, 0),
]
EXPECTED_EVENTS = make_events(
    x=[0, 3, 7, 4], y=[0, 2, 5, 1], t=[1, 2_000, 12_345, 1_500_000], p=[1, 1, 0, 0]
)


def object_masks(frame_count: int) -> np.ndarray:
    """Masks (F, H, W) of object ids: object 1 moves right by one pixel a frame, object 2 is fixed."""
    masks = np.zeros((frame_count, HEIGHT, WIDTH), np.uint16)
    for frame in range(frame_count):
        masks[frame, 1:3, frame:frame + 2] = 1
        masks[frame, 4, 6] = 2
    return masks


def write_png16_rgb(path, rgb: np.ndarray) -> None:
    png = pytest.importorskip("png")
    height, width, _ = rgb.shape
    writer = png.Writer(width=width, height=height, bitdepth=16, greyscale=False)
    with open(path, "wb") as stream:
        writer.write(stream, rgb.reshape(height, width * 3).tolist())


def meta_dict(frame_times_s, *, resolution=True) -> dict:
    frames = [
        {
            "id": index,
            "ts": ts,
            "gt_frame": f"depth_mask_{index}.png",
            "cam": {"pos": {"t": {"x": 0.0, "y": 0.0, "z": 0.0}}, "ts": ts},
        }
        for index, ts in enumerate(frame_times_s)
    ]
    meta = {"frames": frames, "full_trajectory": [], "imu": {}}
    if resolution:
        meta["meta"] = {"res_x": WIDTH, "res_y": HEIGHT, "fx": 10.0, "fy": 10.0, "cx": 4.0, "cy": 3.0}
    return meta


def write_txt_folder(folder, frame_times_s=(0.01, 0.035), *, resolution=True):
    folder.mkdir()
    (folder / "img").mkdir()
    (folder / "events.txt").write_text(
        "".join(f"{t:.6f} {x} {y} {p}\n" for t, x, y, p in EVENT_ROWS)
    )
    (folder / "meta.txt").write_text(pprint.pformat(meta_dict(frame_times_s, resolution=resolution)))
    masks = object_masks(len(frame_times_s))
    for index, mask in enumerate(masks):
        rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint16)
        rgb[..., 0] = mask * 1000  # object id x 1000
        rgb[..., 2] = 1234 + index  # depth in mm, ignored by the reader
        write_png16_rgb(folder / "img" / f"depth_mask_{index}.png", rgb)
    return folder


def test_txt_layout_exact(tmp_path):
    folder = write_txt_folder(tmp_path / "seq")

    recording = read_file(folder)

    assert recording.format_name == "evimo-txt"
    np.testing.assert_array_equal(recording.events, EXPECTED_EVENTS)
    assert (recording.width, recording.height) == (WIDTH, HEIGHT)
    np.testing.assert_array_equal(recording.masks, object_masks(2))
    assert recording.masks.dtype == np.uint16
    np.testing.assert_array_equal(recording.mask_times_us, [10_000, 35_000])
    assert recording.mask_times_us.dtype == np.int64
    assert recording.topic is None


def test_txt_without_meta(tmp_path):
    folder = write_txt_folder(tmp_path / "seq")
    (folder / "meta.txt").unlink()

    recording = read_file(folder)

    np.testing.assert_array_equal(recording.events, EXPECTED_EVENTS)
    assert recording.masks is None
    assert recording.mask_times_us is None
    assert (recording.width, recording.height) == (240, 180)


def test_txt_resolution_from_masks(tmp_path):
    folder = write_txt_folder(tmp_path / "seq", resolution=False)

    recording = read_file(folder)

    assert (recording.width, recording.height) == (WIDTH, HEIGHT)


def test_meta_txt_never_evaluated(tmp_path):
    folder = write_txt_folder(tmp_path / "seq")
    marker = tmp_path / "executed"
    (folder / "meta.txt").write_text(f"__import__('pathlib').Path({str(marker)!r}).touch()")

    with pytest.raises(FileFormatError, match="not a Python literal"):
        read_file(folder)

    assert not marker.exists()


def test_missing_mask_png(tmp_path):
    folder = write_txt_folder(tmp_path / "seq")
    (folder / "img" / "depth_mask_1.png").unlink()

    with pytest.raises(FileFormatError, match="depth_mask_1.png"):
        read_file(folder)


def test_mask_png_must_be_16_bit(tmp_path):
    png = pytest.importorskip("png")
    folder = write_txt_folder(tmp_path / "seq")
    with open(folder / "img" / "depth_mask_0.png", "wb") as stream:
        png.Writer(width=WIDTH, height=HEIGHT, bitdepth=8, greyscale=False).write(
            stream, np.zeros((HEIGHT, WIDTH * 3), np.uint8).tolist()
        )

    with pytest.raises(FileFormatError, match="expected 16-bit RGB"):
        read_file(folder)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("0.1 2 3", "expected 't x y p'"),
        ("0.1 2.5 3 1", "x = 2.5"),
        ("0.1 2 3 2", "event 4 .* polarity 2,"),
        ("nan 2 3 1", "time nan"),
    ],
)
def test_invalid_events_txt(tmp_path, line, message):
    folder = write_txt_folder(tmp_path / "seq")
    with open(folder / "events.txt", "a") as stream:
        stream.write(line + "\n")

    with pytest.raises(FileFormatError, match=message):
        read_file(folder)


def test_empty_events_txt(tmp_path):
    folder = write_txt_folder(tmp_path / "seq")
    (folder / "events.txt").write_text("")

    recording = read_file(folder)

    assert len(recording.events) == 0
    assert recording.masks.shape == (2, HEIGHT, WIDTH)


def test_object_ids_round_to_nearest():
    stored = np.array([0, 1000, 2000, 998, 2003, 65000], np.uint16)

    np.testing.assert_array_equal(object_ids(stored), [0, 1, 2, 1, 2, 65])


def npz_events_table(dtype=np.float32) -> np.ndarray:
    return np.array(EVENT_ROWS, dtype=dtype)


def write_npz(path, *, masks=True, meta=True, events=None):
    entries = {
        "events": npz_events_table() if events is None else events,
        "index": np.array([0, 2, 3], np.uint32),
        "discretization": np.float64(0.01),
        "K": np.eye(3),
        "D": np.zeros(4),
    }
    if masks:
        entries["mask"] = object_masks(3) * 1000
        entries["depth"] = np.full((3, HEIGHT, WIDTH), 1500, np.uint16)
    if meta:
        entries["meta"] = np.array(meta_dict([0.02, 0.05, 0.07]), dtype=object)
    np.savez(path, **entries)
    return path


def test_npz_without_pickle(tmp_path, caplog):
    path = write_npz(tmp_path / "seq.npz")

    with caplog.at_level(logging.INFO):
        recording = read_file(path)

    assert recording.format_name == "evimo-npz"
    # float32 times keep microseconds at these small values.
    np.testing.assert_array_equal(recording.events, EXPECTED_EVENTS)
    np.testing.assert_array_equal(recording.masks, object_masks(3))
    assert (recording.width, recording.height) == (WIDTH, HEIGHT)
    # Without the pickled meta, frame k is placed at t0 + k * discretization.
    np.testing.assert_array_equal(recording.mask_times_us, [1, 10_001, 20_001])
    assert "skipped the pickled 'meta' entry" in caplog.text


def test_npz_with_pickle(tmp_path):
    path = write_npz(tmp_path / "seq.npz")

    recording = read_file(path, allow_pickle=True)

    np.testing.assert_array_equal(recording.mask_times_us, [20_000, 50_000, 70_000])
    np.testing.assert_array_equal(recording.masks, object_masks(3))


def test_npz_without_masks(tmp_path):
    path = write_npz(tmp_path / "seq.npz", masks=False, meta=False)

    recording = read_file(path)

    assert recording.masks is None
    assert recording.mask_times_us is None
    assert (recording.width, recording.height) == (240, 180)


def test_npz_events_shape_checked(tmp_path):
    path = write_npz(tmp_path / "seq.npz", events=np.zeros((5, 3), np.float32))

    with pytest.raises(FileFormatError, match=r"shape \(5, 3\), expected \(N, 4\)"):
        read_file(path)


def test_npz_without_events_rejected(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, images=np.zeros(3))

    with pytest.raises(FileFormatError, match="no 'events' array"):
        detect_format(path)


def write_evimo2_folder(folder, *, meta=True):
    folder.mkdir()
    table = np.array(EVENT_ROWS)
    np.save(folder / "dataset_events_t.npy", table[:, :1].astype(np.float64))  # (N, 1)
    np.save(folder / "dataset_events_xy.npy", table[:, 1:3].astype(np.uint16))
    np.save(folder / "dataset_events_p.npy", table[:, 3:].astype(np.uint8))
    info = {
        "K": np.eye(3), "D": np.zeros(4), "index": np.array([0, 2], np.uint32),
        "discretization": np.float64(0.01),
    }
    if meta:
        frames = [{"id": 0, "ts": 0.02}, {"id": 1, "ts": 0.04}, {"id": 3, "ts": 0.09}]
        info["meta"] = np.array(
            {"frames": frames, "meta": {"res_x": WIDTH, "res_y": HEIGHT}}, dtype=object
        )
    np.savez(folder / "dataset_info.npz", **info)
    masks = object_masks(4) * 1000
    # Frame 2 has no mask, as when the motion capture lost track.
    np.savez(folder / "dataset_mask.npz", **{f"mask_{i:010d}": masks[i] for i in (3, 0, 1)})
    return folder


def test_evimo2_without_pickle(tmp_path, caplog):
    folder = write_evimo2_folder(tmp_path / "samsung_mono")

    with caplog.at_level(logging.INFO):
        recording = read_file(folder)

    assert recording.format_name == "evimo2-npy"
    np.testing.assert_array_equal(recording.events, EXPECTED_EVENTS)
    np.testing.assert_array_equal(recording.masks, object_masks(4)[[0, 1, 3]])
    np.testing.assert_array_equal(recording.mask_times_us, [1, 10_001, 30_001])
    assert (recording.width, recording.height) == (WIDTH, HEIGHT)
    assert "skipped the pickled 'meta' entry" in caplog.text


def test_evimo2_with_pickle(tmp_path):
    folder = write_evimo2_folder(tmp_path / "samsung_mono")

    recording = read_file(folder, allow_pickle=True)

    np.testing.assert_array_equal(recording.mask_times_us, [20_000, 40_000, 90_000])


def test_evimo2_mismatched_arrays(tmp_path):
    folder = write_evimo2_folder(tmp_path / "cam")
    np.save(folder / "dataset_events_p.npy", np.zeros(3, np.uint8))

    with pytest.raises(FileFormatError, match="event arrays disagree"):
        read_file(folder)


def test_evimo2_without_masks_or_info(tmp_path):
    folder = write_evimo2_folder(tmp_path / "cam")
    (folder / "dataset_mask.npz").unlink()
    (folder / "dataset_info.npz").unlink()

    recording = read_file(folder)

    np.testing.assert_array_equal(recording.events, EXPECTED_EVENTS)
    assert recording.masks is None


def test_evimo2_damaged_mask_archive(tmp_path):
    folder = write_evimo2_folder(tmp_path / "cam")
    mask_path = folder / "dataset_mask.npz"
    mask_path.write_bytes(mask_path.read_bytes()[:100])

    with pytest.raises(FileFormatError, match="cannot read the npz archive"):
        read_file(folder)


def test_truncated_npz(tmp_path):
    path = write_npz(tmp_path / "seq.npz")
    path.write_bytes(path.read_bytes()[:200])

    with pytest.raises(FileFormatError, match="zip"):
        read_file(path)


def test_topic_rejected_for_evimo(tmp_path):
    path = write_npz(tmp_path / "seq.npz")

    with pytest.raises(FileFormatError, match="have no topics"):
        read_file(path, topic="/dvs/events")


def test_real_poster_translation():
    path = real_file("poster_translation.npz")

    recording = read_file(path)

    assert recording.format_name == "evimo-npz"
    assert len(recording.events) == 100_000
    assert (recording.width, recording.height) == (240, 180)
    assert recording.masks is None
    assert np.all(np.diff(recording.events["t"]) >= 0)
    # The recording starts 39.13 s into its sequence and lasts about 73 ms.
    assert 39_120_000 < recording.events["t"][0] < 39_130_000
    assert 70_000 < recording.events["t"][-1] - recording.events["t"][0] < 80_000
    assert set(np.unique(recording.events["p"])) == {0, 1}
