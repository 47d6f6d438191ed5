"""Labelled recordings for evaluation, one loader per dataset layout.

Every loader returns ``LabelledRecording`` objects: events with a ground-truth
foreground flag per event, or, where a dataset has only boxes (EED), ground-truth
boxes with their times. Layouts:

- ``evimo-txt``, ``evimo-npz``, ``evimo2-npy``: read by the readers in
  ``spikems_ros.events.readers.evimo``. An event is foreground when the mask
  nearest in time has a nonzero object id at its pixel.
- ``synthetic``: files of ``spikems simulate`` (``seq_*.npz``), which carry an
  object id per event.
- ``mod``: a folder with ``events.txt`` (``t x y p`` lines, t in seconds,
  p in {0, 1}, as EV-IMO TXT) and ``masks/`` holding one 8-bit PNG per
  ground-truth frame, 255 on moving objects and 0 elsewhere, with
  ``masks/timestamps.txt`` giving each frame's time in seconds, one line per
  PNG in file-name order.
- ``eed``: a folder with ``events.txt`` (as above) or one ROS bag of events,
  and ``boxes.txt`` with one ``t x_min y_min x_max y_max`` line per ground-truth
  box (t in seconds, inclusive pixel bounds). Several lines with the same t are
  several objects of one frame.

NOTE: the public MOD and EED downloads could not be inspected here. The file
names and columns of the ``mod`` and ``eed`` layouts above are this project's
choice: convert those datasets into them.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikems_ros.events.errors import FileFormatError
from spikems_ros.events.readers import detect_format, read_file
from spikems_ros.events.readers.detect import EVIMO2_NPY, EVIMO_NPZ, EVIMO_TXT
from spikems_ros.events.readers.evimo import read_events_txt
from spikems_ros.events.readers.recording import guess_resolution, seconds_to_us

LOG = logging.getLogger(__name__)

SYNTHETIC = "synthetic"
MOD = "mod"
EED = "eed"
DATASET_FORMATS = (EVIMO_TXT, EVIMO_NPZ, EVIMO2_NPY, MOD, EED, SYNTHETIC)

# MOD masks mark moving objects with this value.
MOD_FOREGROUND_VALUE = 255


@dataclass(frozen=True, eq=False)
class LabelledRecording:
    """Events with ground truth: a foreground flag per event, boxes per frame, or both."""

    name: str
    events: np.ndarray  # (N,) EVENT_DTYPE sorted by t
    foreground: np.ndarray | None  # (N,) bool per event; None when only boxes are known
    width: int
    height: int
    format_name: str = SYNTHETIC
    box_times_us: np.ndarray | None = None  # (B,) int64, sorted
    boxes: np.ndarray | None = None  # (B, 4) int64 inclusive x_min, y_min, x_max, y_max

    def __post_init__(self):
        if self.foreground is not None and self.foreground.shape != self.events.shape:
            raise ValueError(
                f"{self.name}: {self.events.shape[0]} events but foreground has shape {self.foreground.shape}"
            )
        if (self.boxes is None) != (self.box_times_us is None):
            raise ValueError(f"{self.name}: boxes and box_times_us must be given together")
        if self.boxes is not None and (self.boxes.ndim != 2 or self.boxes.shape != (len(self.box_times_us), 4)):
            raise ValueError(
                f"{self.name}: boxes has shape {self.boxes.shape}, expected ({len(self.box_times_us)}, 4)"
            )
        if self.foreground is None and self.boxes is None:
            raise ValueError(f"{self.name}: a labelled recording needs foreground flags or boxes")


def labels_from_masks(events: np.ndarray, masks: np.ndarray, mask_times_us: np.ndarray) -> np.ndarray:
    """Flag each event whose pixel has a nonzero id in the mask nearest to it in time, (N,) bool.

    Events outside the masks' frame are background.
    """
    if masks.shape[0] == 0 or events.shape[0] == 0:
        return np.zeros(events.shape[0], dtype=bool)
    order = np.argsort(mask_times_us, kind="stable")
    times_us = mask_times_us[order]

    # The nearest mask is the one after the event or the one before it.
    after = np.clip(np.searchsorted(times_us, events["t"]), 0, len(times_us) - 1)
    before = np.clip(after - 1, 0, len(times_us) - 1)
    take_before = np.abs(events["t"] - times_us[before]) <= np.abs(times_us[after] - events["t"])
    nearest = order[np.where(take_before, before, after)]

    height, width = masks.shape[1:]
    inside = (events["x"] < width) & (events["y"] < height)
    labels = np.zeros(events.shape[0], dtype=bool)
    labels[inside] = masks[nearest[inside], events["y"][inside], events["x"][inside]] > 0
    return labels


def _from_masked_recording(path: Path, recording) -> LabelledRecording:
    if recording.masks is None:
        raise FileFormatError(path, "recording has no masks, so it has no ground truth to evaluate against")
    foreground = labels_from_masks(recording.events, recording.masks, recording.mask_times_us)
    return LabelledRecording(
        path.name, recording.events, foreground, recording.width, recording.height, recording.format_name
    )


def load_evimo(path, *, allow_pickle: bool = False) -> LabelledRecording:
    """Load an EV-IMO TXT folder, EV-IMO .npz file or EVIMO2 camera folder with its masks.

    ``allow_pickle`` reads exact mask times from the pickled ``meta`` (trusted files only).
    """
    path = Path(path)
    return _from_masked_recording(path, read_file(path, allow_pickle=allow_pickle))


def load_synthetic(path) -> LabelledRecording:
    """Load one ``seq_*.npz`` file written by ``spikems simulate``."""
    from spikems_ros.simulation import load_synthetic_sequence

    path = Path(path)
    sequence = load_synthetic_sequence(path)
    return LabelledRecording(path.name, sequence.events, sequence.labels > 0, sequence.width, sequence.height)


def load_mod(path) -> LabelledRecording:
    """Load a folder in the ``mod`` layout (see the module docstring)."""
    path = Path(path)
    events = read_events_txt(path / "events.txt")
    mask_paths = sorted((path / "masks").glob("*.png"))
    if not mask_paths:
        raise FileFormatError(path / "masks", "no mask PNGs found; expected masks/*.png with 0 and 255")
    times_s = _read_table(path / "masks" / "timestamps.txt", columns=1).reshape(-1)
    if times_s.shape[0] != len(mask_paths):
        raise FileFormatError(
            path / "masks" / "timestamps.txt",
            f"lists {times_s.shape[0]} times but masks/ contains {len(mask_paths)} PNGs; expected one time per PNG",
        )
    masks = np.stack([_read_binary_mask_png(mask_path) for mask_path in mask_paths])  # (F, H, W) bool
    height, width = masks.shape[1:]
    foreground = labels_from_masks(events, masks, seconds_to_us(times_s))
    return LabelledRecording(path.name, events, foreground, width, height, MOD)


def load_eed(path) -> LabelledRecording:
    """Load a folder in the ``eed`` layout (see the module docstring); it has boxes, no per-event labels."""
    path = Path(path)
    if (path / "events.txt").is_file():
        events = read_events_txt(path / "events.txt")
        width, height = guess_resolution(events)
        LOG.warning("%s: events.txt gives no sensor size, so %dx%d is used, the smallest known sensor that "
                    "contains every event; the ANN energy in the report scales with this size", path, width, height)
    else:
        bags = sorted(path.glob("*.bag"))
        if len(bags) != 1:
            raise FileFormatError(
                path, f"found {len(bags)} .bag files and no events.txt; expected events.txt or exactly one bag"
            )
        recording = read_file(bags[0])
        events, width, height = recording.events, recording.width, recording.height

    table = _read_table(path / "boxes.txt", columns=5)
    order = np.argsort(table[:, 0], kind="stable")
    table = table[order]
    coordinates = table[:, 1:]
    if np.any(coordinates != np.round(coordinates)) or np.any(coordinates < 0):
        raise FileFormatError(path / "boxes.txt", "box bounds must be whole pixel numbers >= 0")
    boxes = coordinates.astype(np.int64)
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if np.any(bad):
        index = int(np.argmax(bad))
        raise FileFormatError(
            path / "boxes.txt", f"box {index} (sorted by time) is {boxes[index].tolist()}: expected x_min <= x_max "
            "and y_min <= y_max"
        )
    return LabelledRecording(path.name, events, None, width, height, EED, seconds_to_us(table[:, 0]), boxes)


def _read_table(path: Path, columns: int) -> np.ndarray:
    if not path.is_file():
        raise FileFormatError(path.parent, f"{path.name} is missing")
    try:
        table = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as error:
        raise FileFormatError(path, f"invalid line: {error}") from None
    if table.size == 0:
        return np.zeros((0, columns))
    if table.shape[1] != columns:
        raise FileFormatError(path, f"has {table.shape[1]} columns, expected {columns}")
    return table


def _read_binary_mask_png(path: Path) -> np.ndarray:
    """Read an 8-bit grey MOD mask as an (H, W) bool map (True = moving object)."""
    import png

    try:
        width, height, rows, info = png.Reader(filename=str(path)).asDirect()
        values = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    except png.Error as error:
        raise FileFormatError(path, f"invalid PNG: {error}") from None
    planes = info["planes"]
    values = values.reshape(height, width, planes)[..., 0]  # grey, or the first channel of RGB
    unexpected = np.setdiff1d(np.unique(values), [0, MOD_FOREGROUND_VALUE])
    if unexpected.size:
        LOG.warning("%s: mask values %s other than 0 and 255 count as foreground when above 127",
                    path, unexpected[:5].tolist())
    return values > MOD_FOREGROUND_VALUE // 2


def detect_dataset_format(path) -> str:
    """Return the layout of a labelled recording (one of DATASET_FORMATS), judged by its files."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_file() and path.suffix == ".npz" and _is_synthetic_npz(path):
        return SYNTHETIC
    if path.is_dir() and (path / "boxes.txt").is_file():
        return EED
    if path.is_dir() and (path / "masks").is_dir() and (path / "events.txt").is_file():
        return MOD
    try:
        format_name = detect_format(path)
    except FileFormatError:
        # The reader's message lists every event file format, most of which carry no labels.
        raise FileFormatError(
            path, f"is not a labelled recording; expected one of the layouts {', '.join(DATASET_FORMATS)}"
        ) from None
    if format_name not in (EVIMO_TXT, EVIMO_NPZ, EVIMO2_NPY):
        raise FileFormatError(
            path, f"{format_name} recordings carry no ground truth; expected one of {', '.join(DATASET_FORMATS)}"
        )
    return format_name


def _is_synthetic_npz(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            names = {Path(name).stem for name in archive.namelist()}
    except zipfile.BadZipFile:
        return False
    return {"labels", "meta_json", "events"} <= names


def load_recording(path, format_name: str | None = None, *, allow_pickle: bool = False) -> LabelledRecording:
    """Load one labelled recording; ``format_name`` None detects the layout."""
    path = Path(path)
    format_name = format_name or detect_dataset_format(path)
    if format_name == SYNTHETIC:
        return load_synthetic(path)
    if format_name == MOD:
        return load_mod(path)
    if format_name == EED:
        return load_eed(path)
    if format_name in (EVIMO_TXT, EVIMO_NPZ, EVIMO2_NPY):
        return load_evimo(path, allow_pickle=allow_pickle)
    raise ValueError(f"dataset format {format_name!r} is invalid: expected one of {', '.join(DATASET_FORMATS)}")


def load_dataset(path, format_name: str | None = None, *, allow_pickle: bool = False) -> list:
    """Load every labelled recording at ``path``: a recording itself, or a folder of recordings.

    A folder that is no recording is searched one level deep: its ``seq_*.npz``
    files, ``*.npz`` files and subfolders, in name order.
    """
    path = Path(path)
    try:
        detected = detect_dataset_format(path)
    except FileFormatError:
        if not path.is_dir() and format_name is None:
            raise
        detected = None
    if detected is not None and format_name in (None, detected):
        return [load_recording(path, detected, allow_pickle=allow_pickle)]
    if not path.is_dir():
        # A layout forced on a file is tried as given.
        return [load_recording(path, format_name, allow_pickle=allow_pickle)]

    recordings = []
    for child in sorted(path.iterdir()):
        if child.is_file() and child.suffix != ".npz":
            continue
        try:
            child_format = detect_dataset_format(child)
        except FileFormatError as error:
            LOG.info("%s: skipped (%s)", child, error)
            continue
        if format_name is not None and child_format != format_name:
            LOG.info("%s: skipped, it is %s, not %s", child, child_format, format_name)
            continue
        recordings.append(load_recording(child, child_format, allow_pickle=allow_pickle))
    if not recordings:
        if detected is not None:
            raise FileFormatError(path, f"is a {detected} recording, not {format_name}; leave out --format or "
                                  f"pass --format {detected}")
        raise FileFormatError(
            path, f"contains no labelled recording; expected one of the layouts {', '.join(DATASET_FORMATS)}"
        )
    return recordings
