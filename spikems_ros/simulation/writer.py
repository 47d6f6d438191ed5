"""Write synthetic sequences in the EV-IMO npz layout and read them back without unpickling.

Arrays in the file (N events, F masks of H x W pixels):

- ``events`` (N, 4) float64: t in seconds from the sequence start, x, y, p (0 or 1)
- ``labels`` (N,) uint8: object id of each event, 0 = background
- ``mask`` (F, H, W) uint16: object id x 1000 per pixel (the EV-IMO convention) of the
  front-most object covering any part of the pixel at t = k * discretization
- ``depth`` (F, H, W) uint16: all zeros, because the generator renders no depth
- ``index`` (F,) int64: index of the first event with t >= k * discretization
- ``discretization`` float64: mask spacing in seconds (0.001)
- ``K`` (3, 3) and ``D`` (4,) float64: nominal pinhole intrinsics and zero distortion
- ``meta_json`` 0-d unicode array: JSON text of the generator's metadata

EV-IMO files store ``meta`` as a pickled object; these files store ``meta_json``
instead, so reading one never unpickles anything.

The zip members carry a fixed timestamp, so the same sequence always gives the
same file bytes.
"""

import json
import zipfile
from pathlib import Path

import numpy as np

from spikems_ros.events.dtype import make_events
from spikems_ros.events.errors import FileFormatError
from spikems_ros.simulation.config import MAX_OBJECTS
from spikems_ros.simulation.generator import SyntheticSequence

# EV-IMO stores the object id times this factor in its masks.
MASK_ID_SCALE = 1000

# Zip member timestamp: the earliest a zip can hold, so that files are reproducible.
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)

# Masks are written this many frames at a time, so the uint16 copy stays small.
MASK_FRAMES_PER_CHUNK = 100

REQUIRED_ARRAYS = ("events", "labels", "mask", "index", "discretization", "K", "D", "meta_json")


def camera_matrix(width: int, height: int) -> np.ndarray:
    """Return nominal intrinsics: focal length = width in pixels (a 53 degree horizontal field of view).

    NOTE: the scene is rendered in image coordinates, not projected through this
    camera; the matrix only fills the layout's ``K``.
    """
    return np.array(
        [[width, 0.0, (width - 1) / 2], [0.0, width, (height - 1) / 2], [0.0, 0.0, 1.0]], dtype=np.float64
    )


def _write_member(archive: zipfile.ZipFile, name: str, array: np.ndarray, compress: bool) -> None:
    info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_TIMESTAMP)
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with archive.open(info, "w", force_zip64=True) as member:
        np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)


def _write_frames(archive: zipfile.ZipFile, name: str, shape: tuple, frames_of) -> None:
    """Write a uint16 (F, H, W) member chunk by chunk; ``frames_of(start, stop)`` returns frames start..stop-1."""
    info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_TIMESTAMP)
    info.compress_type = zipfile.ZIP_DEFLATED
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint16)), "fortran_order": False, "shape": shape}
    with archive.open(info, "w", force_zip64=True) as member:
        np.lib.format.write_array_header_1_0(member, header)
        for start in range(0, shape[0], MASK_FRAMES_PER_CHUNK):
            stop = min(start + MASK_FRAMES_PER_CHUNK, shape[0])
            member.write(np.ascontiguousarray(frames_of(start, stop), dtype=np.uint16).tobytes())


def write_sequence(path, sequence: SyntheticSequence) -> None:
    """Write ``sequence`` to ``path`` in the layout described in this module's docstring."""
    largest_id = int(sequence.masks.max(initial=0))
    if largest_id > MAX_OBJECTS:
        raise ValueError(f"mask object id {largest_id} is invalid; ids x 1000 must fit uint16, so 0 to {MAX_OBJECTS}")

    events = sequence.events
    table = np.empty((events.shape[0], 4), dtype=np.float64)  # (N, 4)
    table[:, 0] = events["t"] * 1e-6
    table[:, 1] = events["x"]
    table[:, 2] = events["y"]
    table[:, 3] = events["p"]

    index = np.searchsorted(events["t"], sequence.mask_times_us, side="left").astype(np.int64)  # (F,)
    interval_us = int(sequence.meta["mask_interval_us"])
    meta_text = json.dumps(sequence.meta, sort_keys=True)
    masks = sequence.masks
    shape = tuple(masks.shape)

    with zipfile.ZipFile(path, "w", allowZip64=True) as archive:
        # Deflate saves little on float64 event tables but much on masks, which are mostly zeros.
        _write_member(archive, "events", table, compress=False)
        _write_member(archive, "labels", sequence.labels.astype(np.uint8), compress=False)
        _write_frames(archive, "mask", shape,
                      lambda start, stop: masks[start:stop] * np.uint16(MASK_ID_SCALE))
        _write_frames(archive, "depth", shape,
                      lambda start, stop: np.zeros((stop - start,) + shape[1:], dtype=np.uint16))
        _write_member(archive, "index", index, compress=False)
        _write_member(archive, "discretization", np.float64(interval_us * 1e-6), compress=False)
        _write_member(archive, "K", camera_matrix(sequence.width, sequence.height), compress=False)
        _write_member(archive, "D", np.zeros(4, dtype=np.float64), compress=False)
        _write_member(archive, "meta_json", np.array(meta_text), compress=True)


def _require(condition: bool, path, reason: str) -> None:
    if not condition:
        raise FileFormatError(path, reason)


def load_synthetic_sequence(path) -> SyntheticSequence:
    """Read a file written by ``write_sequence``; raise FileFormatError when it does not match.

    Loading uses ``allow_pickle=False``: a file with object arrays is rejected,
    never unpickled.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"synthetic sequence {path} not found")

    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [name for name in REQUIRED_ARRAYS if name not in archive.files]
            _require(not missing, path, f"missing arrays {missing}; expected {list(REQUIRED_ARRAYS)}")
            meta_text = archive["meta_json"]
            _require(meta_text.size == 1 and meta_text.dtype.kind == "U", path,
                     f"meta_json has shape {meta_text.shape} and dtype {meta_text.dtype}, expected one string")
            meta = json.loads(meta_text.item())
            table = archive["events"]
            labels = archive["labels"]
            stored_masks = archive["mask"]
            discretization_s = float(archive["discretization"].item())
    except (zipfile.BadZipFile, OSError, json.JSONDecodeError) as error:
        raise FileFormatError(path, f"not a readable npz sequence: {error}") from error
    except ValueError as error:
        # np.load raises ValueError for object (pickled) arrays when allow_pickle=False.
        raise FileFormatError(path, f"invalid array: {error}") from error

    _require(table.ndim == 2 and table.shape[1] == 4, path, f"events has shape {table.shape}, expected (N, 4)")
    _require(labels.shape == (table.shape[0],), path,
             f"labels has shape {labels.shape}, expected ({table.shape[0]},) like events")
    _require(stored_masks.ndim == 3 and stored_masks.dtype == np.uint16, path,
             f"mask has shape {stored_masks.shape} and dtype {stored_masks.dtype}, expected (F, H, W) uint16")
    _require(not np.any(stored_masks % MASK_ID_SCALE), path,
             f"mask values must be object id x {MASK_ID_SCALE}")
    for key in ("width", "height", "mask_interval_us"):
        _require(isinstance(meta.get(key), int), path, f"meta_json lacks integer {key!r}")
    width, height = meta["width"], meta["height"]
    _require(stored_masks.shape[1:] == (height, width), path,
             f"mask frames are {stored_masks.shape[1:]}, expected (height, width) = {(height, width)}")

    x = table[:, 1]
    y = table[:, 2]
    p = table[:, 3]
    _require(bool(np.all((x >= 0) & (x < width) & (y >= 0) & (y < height))), path,
             f"event coordinates outside the {width} x {height} sensor")
    _require(bool(np.all((p == 0) | (p == 1))), path, "event polarity must be 0 or 1")
    time_us = np.rint(table[:, 0] * 1e6).astype(np.int64)
    events = make_events(x, y, time_us, p)

    mask_start_us = int(meta.get("mask_start_us", 0))
    interval_us = int(round(discretization_s * 1e6))
    mask_times_us = mask_start_us + np.arange(stored_masks.shape[0], dtype=np.int64) * interval_us
    return SyntheticSequence(
        events=events,
        labels=labels.astype(np.uint8),
        masks=stored_masks // np.uint16(MASK_ID_SCALE),
        mask_times_us=mask_times_us,
        width=width,
        height=height,
        meta=meta,
    )
