"""Recognise an event file format from the file's first bytes, or a folder's contents."""

import zipfile
from pathlib import Path

import yaml

from spikems_ros.events.errors import FileFormatError
from spikems_ros.events.raw import read_raw_header

ROSBAG1 = "rosbag1"
ROSBAG2_SQLITE3 = "rosbag2-sqlite3"
ROSBAG2_MCAP = "rosbag2-mcap"
PROPHESEE_EVT3 = "prophesee-evt3"
PROPHESEE_EVT2 = "prophesee-evt2"
EVIMO_TXT = "evimo-txt"
EVIMO_NPZ = "evimo-npz"
EVIMO2_NPY = "evimo2-npy"
AEDAT4 = "aedat4"

FORMAT_NAMES = (
    ROSBAG1, ROSBAG2_SQLITE3, ROSBAG2_MCAP, PROPHESEE_EVT3, PROPHESEE_EVT2,
    EVIMO_TXT, EVIMO_NPZ, EVIMO2_NPY, AEDAT4,
)

# File signatures: ROS 1 bag format 2.0, SQLite 3 (rosbag2 .db3), MCAP, AEDAT 4.0.
MAGIC_BYTES = (
    (b"#ROSBAG V2.0", ROSBAG1),
    (b"SQLite format 3\x00", ROSBAG2_SQLITE3),
    (b"\x89MCAP0\r\n", ROSBAG2_MCAP),
    (b"#!AER-DAT4.0", AEDAT4),
)

# Expected content for each suffix, named in the error when a file does not match it.
EXPECTED_BY_SUFFIX = {
    ".bag": "a ROS 1 bag starting with '#ROSBAG V2.0'",
    ".db3": "a rosbag2 SQLite 3 file starting with 'SQLite format 3'",
    ".mcap": "a rosbag2 MCAP file starting with the MCAP magic bytes",
    ".aedat4": "an AEDAT 4.0 file starting with '#!AER-DAT4.0'",
    ".raw": "a Prophesee RAW file starting with '%' header lines",
    ".npz": "an EV-IMO npz archive (zip) holding an 'events' array",
}

SUPPORTED_INPUTS = (
    "a ROS 1 .bag, a rosbag2 folder or bare .db3/.mcap file, a Prophesee .raw file, "
    "an .aedat4 file, an EV-IMO .npz file, an EV-IMO folder with events.txt, "
    "or an EVIMO2 camera folder with dataset_events_t.npy"
)

# Format names read_raw_header returns -> format names here.
PROPHESEE_FORMATS = {"EVT3": PROPHESEE_EVT3, "EVT2": PROPHESEE_EVT2}

# Bytes read to recognise a file; the longest signature is 16 bytes.
SIGNATURE_BYTES = 16


def detect_format(path) -> str:
    """Return the format name of an event file or folder, judged by content and name.

    Raises FileNotFoundError for a missing path and FileFormatError for
    content that matches no supported format, or that contradicts the suffix.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        return _detect_folder_format(path)
    if not path.is_file():
        # Reading a named pipe would wait for a writer instead of failing.
        raise FileFormatError(path, "is neither a regular file nor a folder (a pipe or device); expected an event file")
    return _detect_file_format(path)


def _detect_folder_format(path: Path) -> str:
    if (path / "metadata.yaml").is_file():
        return _rosbag2_folder_format(path)
    if (path / "events.txt").is_file():
        return EVIMO_TXT
    if (path / "dataset_events_t.npy").is_file():
        return EVIMO2_NPY
    raise FileFormatError(
        path,
        "folder contains no metadata.yaml (rosbag2), events.txt (EV-IMO) or "
        f"dataset_events_t.npy (EVIMO2); expected {SUPPORTED_INPUTS}",
    )


def _rosbag2_folder_format(path: Path) -> str:
    metadata_path = path / "metadata.yaml"
    try:
        metadata = yaml.safe_load(metadata_path.read_text())
        storage = metadata["rosbag2_bagfile_information"]["storage_identifier"]
    except (yaml.YAMLError, KeyError, TypeError) as error:
        raise FileFormatError(
            metadata_path,
            f"invalid rosbag2 metadata ({error!r}); expected "
            "rosbag2_bagfile_information.storage_identifier",
        ) from None
    if storage == "sqlite3":
        return ROSBAG2_SQLITE3
    if storage == "mcap":
        return ROSBAG2_MCAP
    raise FileFormatError(
        metadata_path, f"unsupported rosbag2 storage {storage!r}; expected 'sqlite3' or 'mcap'"
    )


def _detect_file_format(path: Path) -> str:
    with path.open("rb") as stream:
        head = stream.read(SIGNATURE_BYTES)

    for magic, format_name in MAGIC_BYTES:
        if head.startswith(magic):
            return format_name
    if head.startswith(b"%"):
        return _prophesee_format(path)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _npz_format(path)

    suffix = path.suffix.lower()
    if suffix in EXPECTED_BY_SUFFIX:
        raise FileFormatError(
            path, f"content does not match the suffix {suffix}: expected {EXPECTED_BY_SUFFIX[suffix]}"
        )
    raise FileFormatError(path, f"unknown event file format; expected {SUPPORTED_INPUTS}")


def _prophesee_format(path: Path) -> str:
    """Read the event format from the RAW header ('% evt 3.0' or '% format EVT3;...')."""
    with path.open("rb") as stream:
        header = read_raw_header(stream, path)
    return PROPHESEE_FORMATS[header.format_name]


def _npz_format(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = {Path(name).stem for name in archive.namelist()}
    except zipfile.BadZipFile as error:
        raise FileFormatError(path, f"invalid zip/npz archive ({error})") from None
    if "events" in names:
        return EVIMO_NPZ
    raise FileFormatError(
        path,
        f"npz archive contains {sorted(names)} but no 'events' array; "
        "expected the EV-IMO npz layout (events, index, discretization, K, D, ...)",
    )
