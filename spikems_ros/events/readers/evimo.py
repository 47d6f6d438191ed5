"""Read the EV-IMO and EVIMO2 dataset layouts: events plus object masks.

Layouts, as documented with the datasets (better-flow.github.io/evimo, "Ground
Truth Format"):

- EV-IMO TXT, one folder per sequence: ``events.txt`` with one ``t x y p`` line
  per event (t in seconds, p in {0, 1}); ``meta.txt``, a Python-literal dict
  whose ``'frames'`` list gives each ground-truth frame's ``'ts'`` (seconds) and
  ``'gt_frame'`` (file name under ``img/``) and whose ``'meta'`` dict gives
  ``res_x``/``res_y``; ``img/depth_mask_<id>.png``, 16-bit 3-channel PNGs whose
  channel 0 (read as RGB) contains object id x 1000 and channel 2 depth in mm.
- EV-IMO NPZ, one file per sequence: ``events`` (N, 4) float t, x, y, p;
  ``mask`` and ``depth`` (F, H, W) uint16; ``index`` (first event at or after
  t0 + k * discretization); ``discretization`` (0.01 s); ``K``, ``D``; ``meta``,
  the same dict as meta.txt, pickled.
- EVIMO2 NPY (EVIMO2 v2), one folder per camera and sequence:
  ``dataset_events_t.npy`` (N,) or (N, 1) seconds; ``dataset_events_xy.npy``
  (N, 2) uint16; ``dataset_events_p.npy`` (N,) or (N, 1) uint8;
  ``dataset_info.npz`` with ``K``, ``D``, ``index``, ``discretization`` and
  pickled ``meta`` (frames carry ``'id'`` and ``'ts'``); ``dataset_mask.npz``
  with one (H, W) array ``mask_<id as 10 digits>`` per ground-truth frame,
  values object id x 1000.

A pickled ``meta`` is only unpickled with ``allow_pickle=True``, because
unpickling an untrusted file can run arbitrary code.
"""

import ast
import logging
import pickle
import re
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from spikems_ros.events.dtype import EVENT_DTYPE
from spikems_ros.events.errors import FileFormatError
from spikems_ros.events.readers.detect import EVIMO2_NPY, EVIMO_NPZ, EVIMO_TXT
from spikems_ros.events.readers.recording import (
    Recording,
    finish_recording,
    guess_resolution,
    seconds_to_us,
)

LOG = logging.getLogger(__name__)

# Mask pixels store object id x 1000; 0 is background.
MASK_ID_SCALE = 1000

EVIMO2_MASK_KEY = re.compile(r"mask_(\d+)")

PICKLE_SKIPPED_MESSAGE = (
    "%s: skipped the pickled 'meta' entry because unpickling an untrusted file can run "
    "arbitrary code; for a trusted file, pass allow_pickle=True (--allow-pickle on the "
    "spikems command line) to read frame times and resolution from it"
)


def read_evimo_txt(path: Path) -> Recording:
    """Read an EV-IMO TXT folder: events.txt, and meta.txt with its mask PNGs when present."""
    events = read_events_txt(path / "events.txt")

    meta_path = path / "meta.txt"
    meta = read_meta_txt(meta_path) if meta_path.is_file() else None
    if meta is None:
        LOG.info("%s: no meta.txt, so no masks and no stated resolution", path)

    resolution = _meta_resolution(meta)
    masks, mask_times_us = _read_txt_masks(path, meta)

    width, height = _choose_resolution(path, resolution, masks, events)
    return finish_recording(events, width, height, EVIMO_TXT, path,
                            masks=masks, mask_times_us=mask_times_us)


def read_events_txt(path: Path) -> np.ndarray:
    """Parse ``t x y p`` lines (t in seconds) into EVENT_DTYPE events."""
    if not path.is_file():
        raise FileFormatError(path.parent, "EV-IMO TXT folder has no events.txt")
    try:
        with warnings.catch_warnings():
            # An empty events.txt is a valid recording with no events.
            warnings.filterwarnings("ignore", message=".*input contained no data.*")
            table = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as error:
        raise FileFormatError(path, f"invalid events.txt line: {error}; expected 't x y p'") from None
    if table.size == 0:
        return np.zeros(0, EVENT_DTYPE)
    if table.shape[1] != 4:
        raise FileFormatError(path, f"events.txt has {table.shape[1]} columns, expected 4 (t x y p)")
    return events_from_columns(path, table[:, 0], table[:, 1], table[:, 2], table[:, 3])


def events_from_columns(path, times_s, x, y, p) -> np.ndarray:
    """Build EVENT_DTYPE events from float columns, checking coordinates and polarity.

    Raises FileFormatError naming the first event whose time is not finite,
    whose coordinate is not a whole number in 0..65535, or whose polarity is
    not 0 or 1.
    """
    bad = ~np.isfinite(times_s)
    if np.any(bad):
        index = int(np.argmax(bad))
        raise FileFormatError(
            path, f"event {index} (counting from 0) has time {float(times_s[index])!r}, expected seconds"
        )
    for name, values in (("x", x), ("y", y)):
        bad = (values < 0) | (values > np.iinfo(np.uint16).max) | (values != np.floor(values))
        if np.any(bad):
            index = int(np.argmax(bad))
            raise FileFormatError(
                path,
                f"event {index} (counting from 0) has {name} = {float(values[index]):g}, "
                "expected a whole number in 0..65535",
            )
    bad = (p != 0) & (p != 1)
    if np.any(bad):
        index = int(np.argmax(bad))
        raise FileFormatError(
            path, f"event {index} (counting from 0) has polarity {float(p[index]):g}, expected 0 or 1"
        )

    events = np.empty(len(times_s), EVENT_DTYPE)
    events["t"] = seconds_to_us(times_s)
    events["x"] = x
    events["y"] = y
    events["p"] = p
    return events


def read_meta_txt(path: Path) -> dict:
    """Parse meta.txt as a Python literal (never evaluated as code)."""
    try:
        meta = ast.literal_eval(path.read_text())
    except (ValueError, SyntaxError, MemoryError, RecursionError) as error:
        raise FileFormatError(
            path, f"meta.txt is not a Python literal dict ({type(error).__name__}: {error})"
        ) from None
    if not isinstance(meta, dict):
        raise FileFormatError(path, f"meta.txt contains a {type(meta).__name__}, expected a dict")
    return meta


def _read_txt_masks(path: Path, meta: dict | None):
    """Read the mask PNG of every meta.txt frame that names one."""
    if meta is None:
        return None, None
    frames = [f for f in _meta_frames(path / "meta.txt", meta) if "gt_frame" in f]
    if not frames:
        return None, None

    masks = np.stack([read_mask_png(_mask_png_path(path, str(f["gt_frame"]))) for f in frames])
    mask_times_us = seconds_to_us([_frame_time_s(path / "meta.txt", f) for f in frames])
    return masks, mask_times_us


def _mask_png_path(folder: Path, gt_frame: str) -> Path:
    """Locate a gt_frame file: released folders keep them under img/, older ones beside meta.txt."""
    for candidate in (folder / "img" / gt_frame, folder / gt_frame):
        if candidate.is_file():
            return candidate
    raise FileFormatError(folder, f"mask image {gt_frame!r} named in meta.txt is missing from img/")


def read_mask_png(path: Path) -> np.ndarray:
    """Read an EV-IMO depth_mask PNG and return its (H, W) uint16 object ids.

    Uses pypng because Pillow (13.0) and imageio's Pillow plugin reduce 16-bit
    RGB PNGs to 8 bits per channel, which destroys the id x 1000 values.
    """
    try:
        import png  # noqa: PLC0415 - only the EV-IMO TXT layout needs it
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "reading EV-IMO depth_mask PNGs needs the pypng package: pip install pypng"
        ) from None

    try:
        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        pixels = np.array([np.asarray(row, dtype=np.uint16) for row in rows])  # (H, W * planes)
    except png.Error as error:
        raise FileFormatError(path, f"invalid PNG: {error}") from None
    if info["bitdepth"] != 16 or info["planes"] < 3:
        raise FileFormatError(
            path,
            f"mask PNG has {info['planes']} channels of {info['bitdepth']} bits, "
            "expected 16-bit RGB (object id x 1000 in channel 0, depth in channel 2)",
        )
    pixels = pixels.reshape(height, width, info["planes"])
    return object_ids(pixels[..., 0])


def object_ids(mask_values: np.ndarray) -> np.ndarray:
    """Convert stored mask values (object id x 1000) to uint16 object ids.

    Rounds to the nearest id rather than flooring, so values a few units below a
    multiple of 1000 keep their id. Exact multiples give the same result either way.
    """
    values = np.asarray(mask_values).astype(np.uint32)
    return ((values + MASK_ID_SCALE // 2) // MASK_ID_SCALE).astype(np.uint16)


def read_evimo_npz(path: Path, *, allow_pickle: bool = False) -> Recording:
    """Read an EV-IMO .npz file: events, and masks with their times when present."""
    with _open_npz(path) as archive:
        names = set(archive.files)
        events_table = _load_entry(archive, path, "events")
        masks = _load_entry(archive, path, "mask") if "mask" in names else None
        discretization_s = _discretization(archive, path) if "discretization" in names else None
        json_meta = _load_json_meta(archive, path) if "meta_json" in names else None
    meta = _load_pickled_meta(path, "meta", allow_pickle) if "meta" in names else None

    if events_table.ndim != 2 or events_table.shape[1] != 4:
        raise FileFormatError(
            path, f"'events' has shape {events_table.shape}, expected (N, 4) columns t, x, y, p"
        )
    events = events_from_columns(
        path, *(events_table[:, column].astype(np.float64) for column in range(4))
    )

    mask_times_us = None
    if masks is not None:
        if masks.ndim != 3:
            raise FileFormatError(path, f"'mask' has shape {masks.shape}, expected (F, H, W)")
        masks = object_ids(masks)
        frame_times_s = _meta_frame_times(path, meta, len(masks))
        if frame_times_s is not None:
            mask_times_us = seconds_to_us(frame_times_s)
        elif json_meta is not None and "mask_start_us" in json_meta and "mask_interval_us" in json_meta:
            # Files of spikems simulate store the mask timing as JSON next to the arrays.
            mask_times_us = (int(json_meta["mask_start_us"])
                             + np.arange(len(masks), dtype=np.int64) * int(json_meta["mask_interval_us"]))
        else:
            mask_times_us = _evenly_spaced_mask_times(path, events, len(masks), discretization_s)

    width, height = _choose_resolution(path, _meta_resolution(meta), masks, events)
    return finish_recording(events, width, height, EVIMO_NPZ, path,
                            masks=masks, mask_times_us=mask_times_us)


def read_evimo2_npy(path: Path, *, allow_pickle: bool = False) -> Recording:
    """Read an EVIMO2 v2 camera folder: the three event arrays, masks and frame times."""
    times_s = _load_npy(path / "dataset_events_t.npy").reshape(-1)
    xy = _load_npy(path / "dataset_events_xy.npy")
    polarity = _load_npy(path / "dataset_events_p.npy").reshape(-1)
    if xy.ndim != 2 or xy.shape[1] != 2 or not len(times_s) == len(xy) == len(polarity):
        raise FileFormatError(
            path,
            f"event arrays disagree: t has {len(times_s)} entries, xy shape {xy.shape}, "
            f"p {len(polarity)} entries; expected N, (N, 2) and N",
        )
    # NOTE: EVIMO2 documents Samsung DVS polarity as inverted relative to
    # Prophesee; polarity is returned as stored, for every camera.
    events = events_from_columns(
        path, times_s.astype(np.float64), xy[:, 0].astype(np.float64),
        xy[:, 1].astype(np.float64), polarity.astype(np.float64),
    )

    info_path = path / "dataset_info.npz"
    meta = None
    discretization_s = None
    if info_path.is_file():
        with _open_npz(info_path) as info:
            if "discretization" in info.files:
                discretization_s = _discretization(info, info_path)
            has_meta = "meta" in info.files
        meta = _load_pickled_meta(info_path, "meta", allow_pickle) if has_meta else None
    else:
        LOG.info("%s: no dataset_info.npz, so no frame times or stated resolution", path)

    masks, frame_ids = _read_evimo2_masks(path / "dataset_mask.npz")
    mask_times_us = None
    if masks is not None:
        frame_times_s = _evimo2_frame_times(path, meta, frame_ids)
        if frame_times_s is not None:
            mask_times_us = seconds_to_us(frame_times_s)
        else:
            # Keys number frames from 0, so frame id k is the k-th evenly spaced frame.
            mask_times_us = _evenly_spaced_mask_times(
                path, events, int(frame_ids.max()) + 1, discretization_s
            )[frame_ids]

    width, height = _choose_resolution(path, _meta_resolution(meta), masks, events)
    return finish_recording(events, width, height, EVIMO2_NPY, path,
                            masks=masks, mask_times_us=mask_times_us)


def _read_evimo2_masks(path: Path):
    """Read dataset_mask.npz as (masks (F, H, W) object ids, frame ids (F,)), sorted by id."""
    if not path.is_file():
        return None, None
    with _open_npz(path) as archive:
        keyed = []
        for name in archive.files:
            match = EVIMO2_MASK_KEY.fullmatch(name)
            if match is None:
                LOG.warning("%s: ignored entry %r, expected mask_<frame id>", path, name)
                continue
            keyed.append((int(match.group(1)), name))
        keyed.sort()
        if not keyed:
            return None, None
        masks = [_load_entry(archive, path, name) for _, name in keyed]

    shapes = {m.shape for m in masks}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise FileFormatError(path, f"masks have shapes {sorted(shapes)}, expected one (H, W) shape")
    frame_ids = np.array([frame_id for frame_id, _ in keyed], dtype=np.int64)
    return object_ids(np.stack(masks)), frame_ids


def _evimo2_frame_times(path: Path, meta: dict | None, frame_ids: np.ndarray):
    """Return each mask's time from meta['frames'], matched by frame 'id', or None without meta."""
    if meta is None:
        return None
    times_by_id = {}
    for frame in _meta_frames(path, meta):
        if "id" in frame and "ts" in frame:
            times_by_id[int(frame["id"])] = float(frame["ts"])
    missing = [int(i) for i in frame_ids if int(i) not in times_by_id]
    if missing:
        raise FileFormatError(path, f"meta['frames'] has no 'ts' for mask frame ids {missing[:10]}")
    return np.array([times_by_id[int(i)] for i in frame_ids])


def _meta_frame_times(path: Path, meta: dict | None, frame_count: int):
    """Return the EV-IMO NPZ mask times from meta['frames'] in order, or None without meta."""
    if meta is None:
        return None
    frames = _meta_frames(path, meta)
    if len(frames) != frame_count:
        raise FileFormatError(
            path, f"meta['frames'] lists {len(frames)} frames but 'mask' contains {frame_count}"
        )
    return np.array([_frame_time_s(path, frame) for frame in frames])


def _load_json_meta(archive, path: Path):
    """Return the ``meta_json`` entry (JSON text, never pickled) as a dict, or None when unusable."""
    import json

    value = _load_entry(archive, path, "meta_json")
    try:
        meta = json.loads(str(value.item() if hasattr(value, "item") else value))
    except (ValueError, TypeError) as error:
        LOG.warning("%s: 'meta_json' is not valid JSON (%s); ignored", path, error)
        return None
    return meta if isinstance(meta, dict) else None


def _evenly_spaced_mask_times(path, events, frame_count: int, discretization_s):
    """Estimate mask times as t0 + k * discretization, t0 being the first event's time."""
    if discretization_s is None:
        raise FileFormatError(
            path, "masks have no times: no readable 'meta' and no 'discretization' entry"
        )
    # NOTE: EV-IMO documents ground-truth frames as unevenly spaced (the motion
    # capture loses track at times), so these times are an approximation;
    # the exact ones are in the pickled meta, read with allow_pickle=True.
    LOG.warning("%s: mask times estimated as first event time + k * %g s, "
                "because the frame times in meta were not read", path, discretization_s)
    t0_us = int(events["t"].min()) if len(events) else 0
    return t0_us + seconds_to_us(np.arange(frame_count) * discretization_s)


def _choose_resolution(path, meta_resolution, masks, events) -> tuple[int, int]:
    """Resolution from masks, else from meta res_x/res_y, else the smallest known sensor.

    The intrinsics K are not used: the principal point of poster_translation.npz
    (132.2, 110.7) lies 12 and 21 pixels off the centre of its 240x180 sensor.
    """
    if masks is not None:
        height, width = masks.shape[1:]
        if meta_resolution is not None and meta_resolution != (width, height):
            LOG.warning("%s: masks are %dx%d but meta states %dx%d; using the masks",
                        path, width, height, *meta_resolution)
        return width, height
    if meta_resolution is not None:
        return meta_resolution
    width, height = guess_resolution(events)
    LOG.info("%s: no resolution stored; using %dx%d, the smallest known sensor "
             "that contains every event", path, width, height)
    return width, height


def _meta_resolution(meta: dict | None):
    camera = meta.get("meta") if meta is not None else None
    if not isinstance(camera, dict) or "res_x" not in camera or "res_y" not in camera:
        return None
    return int(camera["res_x"]), int(camera["res_y"])


def _frame_time_s(path: Path, frame: dict) -> float:
    try:
        return float(frame["ts"])
    except (KeyError, TypeError, ValueError):
        raise FileFormatError(
            path, f"meta frame {frame.get('id', '?')} has ts {frame.get('ts')!r}, expected seconds"
        ) from None


def _meta_frames(path: Path, meta: dict) -> list:
    frames = meta.get("frames", [])
    if not isinstance(frames, list) or not all(isinstance(f, dict) for f in frames):
        raise FileFormatError(path, "meta['frames'] is not a list of dicts")
    return frames


def _load_pickled_meta(path: Path, name: str, allow_pickle: bool):
    """Return the dict in the pickled ``name`` entry, or None unless ``allow_pickle``."""
    if not allow_pickle:
        LOG.info(PICKLE_SKIPPED_MESSAGE, path)
        return None
    try:
        with np.load(path, allow_pickle=True) as archive:
            value = archive[name]
    except (pickle.UnpicklingError, ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise FileFormatError(path, f"cannot unpickle {name!r}: {error}") from None
    meta = value.item() if value.dtype == object and value.shape == () else None
    if not isinstance(meta, dict):
        raise FileFormatError(path, f"'{name}' contains {value.dtype} {value.shape}, expected a pickled dict")
    return meta


@contextmanager
def _open_npz(path: Path):
    """Open an npz archive without unpickling, raising FileFormatError when it is not one."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise FileFormatError(path, f"cannot read the npz archive: {error}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise FileFormatError(path, "file is a single .npy array, expected an npz archive")
    with archive:
        yield archive


def _load_entry(archive, path: Path, name: str) -> np.ndarray:
    try:
        return archive[name]
    except KeyError:
        raise FileFormatError(path, f"archive has no {name!r} entry; entries: {sorted(archive.files)}") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise FileFormatError(path, f"cannot read entry {name!r}: {error}") from None


def _discretization(archive, path: Path) -> float:
    value = _load_entry(archive, path, "discretization")
    if value.size != 1 or not float(value.reshape(-1)[0]) > 0:
        raise FileFormatError(path, f"'discretization' is {value!r}, expected one positive number of seconds")
    return float(value.reshape(-1)[0])


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileFormatError(path.parent, f"EVIMO2 folder has no {path.name}")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise FileFormatError(path, f"cannot read the .npy array: {error}") from None
