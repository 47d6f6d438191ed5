"""Writing ROS 2 bags with rosbags: messages from nested dictionaries, outputs renamed when complete."""

import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from rosbags.interfaces import Nodetype
from rosbags.rosbag2 import StoragePlugin
from rosbags.rosbag2 import Writer as Ros2Writer

from spikems_ros.bags.types import output_typestore

LOG = logging.getLogger(__name__)

STORAGE_PLUGINS = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}

# rosbag2 metadata version written; rosbags 0.11 writes versions 8 and 9 only.
BAG_VERSION = 9

# numpy dtype of each ROS primitive type that sequences and arrays hold as numpy arrays.
# rosbags 0.11.9 stores `byte` sequences as int8 and `char` sequences as uint8.
PRIMITIVE_DTYPES = {
    "bool": np.bool_,
    "byte": np.int8,
    "char": np.uint8,
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "uint16": np.uint16,
    "int32": np.int32,
    "uint32": np.uint32,
    "int64": np.int64,
    "uint64": np.uint64,
    "float32": np.float32,
    "float64": np.float64,
}


class OutputExistsError(FileExistsError, ValueError):
    """An output path that exists and may not be replaced."""

    def __init__(self, path, hint: str = "remove it or choose another path"):
        self.path = Path(path)
        super().__init__(f"output {path} exists; {hint}")


# Files the commands write into an output folder: a rosbag2 folder or PNG renderings.
# With --force a folder is replaced only when it contains nothing else.
REPLACEABLE_SUFFIXES = {".yaml", ".mcap", ".db3", ".png"}


def _holds_only_outputs(folder: Path) -> bool:
    return all(entry.is_file() and entry.suffix in REPLACEABLE_SUFFIXES for entry in folder.iterdir())


def check_output_path(path, *, force: bool, hint: str = "remove it or choose another path") -> Path:
    """Return ``path`` as a Path, raising OutputExistsError when it exists and may not be replaced.

    Without ``force`` nothing existing is replaced. With it, a file or a folder
    holding only bag files and PNG renderings is; a folder with other content is
    not, so a mistyped path never deletes unrelated files.
    """
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return path
    if not force:
        raise OutputExistsError(path, hint)
    if path.is_dir() and not path.is_symlink() and not _holds_only_outputs(path):
        raise OutputExistsError(
            path,
            "it holds files other than bag files and PNG renderings, so --force does not replace it; "
            "remove it yourself or choose another path",
        )
    return path


def check_output_is_not_input(output, input_path, option: str = "--output") -> None:
    """Raise ValueError when ``output`` is ``input_path``, lies inside it or contains it.

    With --force an output replaces what is at its path, which must never be the
    recording being read.
    """
    output_resolved = Path(output).resolve()
    input_resolved = Path(input_path).resolve()
    if output_resolved == input_resolved or input_resolved in output_resolved.parents \
            or output_resolved in input_resolved.parents:
        raise ValueError(
            f"{option} {output} is invalid: it is or overlaps the input {input_path}; choose another path"
        )


@contextmanager
def replace_when_complete(path, *, force: bool, hint: str = "remove it or choose another path"):
    """Yield a temporary path to write a file or folder to; move it to ``path`` when the block succeeds.

    The temporary path lies in a hidden staging folder next to ``path`` and has
    the same name, so a bag written there names its storage file after the
    final name. On an exception the staging folder is removed and an existing
    ``path`` stays as it was. With ``force`` an existing ``path`` is replaced.
    """
    path = check_output_path(path, force=force, hint=hint)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        written = staging / path.name
        yield written

        if not (written.exists() or written.is_symlink()):
            raise FileNotFoundError(f"nothing was written to {written}, so {path} was not created")
        check_output_path(path, force=force, hint=hint)
        if path.exists() or path.is_symlink():
            # Move the old output aside first: a folder cannot be replaced by rename.
            os.replace(path, staging / f"{path.name}.replaced")
        os.replace(written, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def time_fields(time_ns: int) -> dict:
    """Return builtin_interfaces/Time fields of a time in nanoseconds since the epoch."""
    time_ns = int(time_ns)
    return {"sec": time_ns // 1_000_000_000, "nanosec": time_ns % 1_000_000_000}


def stamp_ns(fields: dict) -> int:
    """Return the header stamp of a message given as nested fields, in nanoseconds."""
    stamp = fields["header"]["stamp"]
    return int(stamp["sec"]) * 1_000_000_000 + int(stamp["nanosec"])


def build_message(typestore, message_type: str, fields: dict):
    """Build a rosbags message of ``message_type`` from nested dictionaries.

    Every field of the type must be present and no other: a mismatch raises
    ValueError naming the type, so the dictionaries and the registered
    definitions cannot drift apart. Sequences of numbers become numpy arrays.
    """
    if message_type not in typestore.fielddefs:
        raise ValueError(f"message type {message_type!r} is not registered in the typestore")
    if not isinstance(fields, dict):
        raise TypeError(f"{message_type}: expected a dict of fields, got {type(fields).__name__}")

    _, field_definitions = typestore.fielddefs[message_type]
    names = [name for name, _ in field_definitions]
    missing = [name for name in names if name not in fields]
    unknown = sorted(set(fields) - set(names))
    if missing or unknown:
        raise ValueError(
            f"{message_type}: fields {missing} are missing and {unknown} are unknown; expected exactly {names}"
        )

    values = {
        name: _build_value(typestore, f"{message_type}.{name}", definition, fields[name])
        for name, definition in field_definitions
    }
    return typestore.types[message_type](**values)


def _build_value(typestore, path: str, definition, value):
    node_type, detail = definition
    if node_type == Nodetype.BASE:
        return _build_primitive(path, detail[0], value)
    if node_type == Nodetype.NAME:
        return build_message(typestore, detail, value)

    (element_type, element_detail), size = detail
    if node_type == Nodetype.ARRAY and len(value) != size:
        raise ValueError(f"{path}: fixed-size array of {size} elements got {len(value)}")
    if element_type == Nodetype.NAME:
        return [build_message(typestore, element_detail, item) for item in value]
    primitive = element_detail[0]
    if primitive == "string":
        return [str(item) for item in value]
    return np.asarray(value, dtype=PRIMITIVE_DTYPES[primitive]).reshape(-1)


def _build_primitive(path: str, primitive: str, value):
    if primitive == "string":
        return str(value)
    if primitive == "bool":
        return bool(value)
    if primitive in ("float32", "float64"):
        return float(value)
    if isinstance(value, (bytes, bytearray)) and len(value) == 1:
        return value[0]
    if primitive not in PRIMITIVE_DTYPES:
        raise ValueError(f"{path}: unsupported primitive type {primitive!r}")
    return int(value)


class BagWriter:
    """A ROS 2 bag being written with rosbags: one connection per topic, messages from nested fields.

    Use as a context manager. The bag is closed (index and metadata.yaml written)
    when the block ends normally and aborted on an exception.
    """

    def __init__(self, path, *, storage: str = "mcap", typestore=None):
        if storage not in STORAGE_PLUGINS:
            raise ValueError(f"storage {storage!r} is invalid: expected one of {sorted(STORAGE_PLUGINS)}")
        self.path = Path(path)
        self.storage = storage
        self.typestore = typestore if typestore is not None else output_typestore()
        self._writer = Ros2Writer(self.path, version=BAG_VERSION, storage_plugin=STORAGE_PLUGINS[storage])
        self._topics = {}  # topic -> (connection, message type)
        self.message_counts = {}  # topic -> messages written

    def __enter__(self):
        self._writer.open()
        return self

    def __exit__(self, exception_type, exception, traceback):
        if exception_type is None:
            self._writer.close()
        else:
            self._writer.abort()
        return False

    def add_topic(self, topic: str, message_type: str, *, offered_qos_profiles=()):
        """Add a topic whose definition comes from the typestore; return its connection."""
        connection = self._writer.add_connection(
            topic, message_type, typestore=self.typestore, offered_qos_profiles=offered_qos_profiles
        )
        self._register(topic, connection, message_type)
        return connection

    def add_raw_topic(self, topic: str, message_type: str, *, message_definition: str, type_hash: str,
                      serialization_format: str = "cdr", offered_qos_profiles=()):
        """Add a topic with a definition and RIHS01 type hash copied from another bag."""
        connection = self._writer.add_connection(
            topic, message_type, msgdef=message_definition, rihs01=type_hash,
            serialization_format=serialization_format, offered_qos_profiles=offered_qos_profiles,
        )
        self._register(topic, connection, message_type)
        return connection

    def _register(self, topic: str, connection, message_type: str) -> None:
        if topic in self._topics:
            raise ValueError(f"topic {topic!r} was added twice")
        self._topics[topic] = (connection, message_type)
        self.message_counts[topic] = 0

    def write(self, topic: str, fields: dict, timestamp_ns: int | None = None) -> None:
        """Serialize a message given as nested fields and write it.

        The bag timestamp is ``timestamp_ns``, or the message's header stamp when None.
        """
        connection, message_type = self._connection(topic)
        message = build_message(self.typestore, message_type, fields)
        if timestamp_ns is None:
            timestamp_ns = stamp_ns(fields)
        self._writer.write(connection, int(timestamp_ns), self.typestore.serialize_cdr(message, message_type))
        self.message_counts[topic] += 1

    def write_raw(self, topic: str, timestamp_ns: int, data) -> None:
        """Write an already serialized (CDR) message."""
        connection, _ = self._connection(topic)
        self._writer.write(connection, int(timestamp_ns), data)
        self.message_counts[topic] += 1

    def _connection(self, topic: str):
        if topic not in self._topics:
            raise ValueError(f"topic {topic!r} was not added; added topics: {sorted(self._topics)}")
        return self._topics[topic]
