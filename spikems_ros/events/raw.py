"""Reader of Prophesee RAW recordings in EVT 3.0 and EVT 2.0.

A RAW file is a text header of lines starting with '%', optionally closed by a
'% end' line, followed by the binary event words. The header names the format
either as ``% format EVT3;height=720;width=1280`` (Metavision 4 and later) or as
``% evt 3.0`` with the size in ``% geometry 1280x720`` (older files). The body
is decoded in fixed-size chunks by the same stateful decoders as ROS packets.
"""

import logging
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from spikems_ros.events.dtype import EVENT_DTYPE, TRIGGER_DTYPE
from spikems_ros.events.errors import DecodeError, FileFormatError
from spikems_ros.events.evt2 import Evt2Decoder
from spikems_ros.events.evt3 import Evt3Decoder

logger = logging.getLogger(__name__)

# Format name -> (decoder class, word size in bytes).
RAW_FORMATS = {"EVT3": (Evt3Decoder, 2), "EVT2": (Evt2Decoder, 4)}

# ``% evt <version>`` values of older headers -> format name.
EVT_VERSION_FORMATS = {"3.0": "EVT3", "2.0": "EVT2", "2.1": "EVT21"}

# Sensor size of camera plugins whose older headers give no geometry: the HD
# sensors Gen4.1 and IMX636.
PLUGIN_GEOMETRY = {
    "gen41": (1280, 720),
    "imx636": (1280, 720),
}

DEFAULT_CHUNK_BYTES = 1 << 16
MAX_HEADER_BYTES = 1 << 20


class RawRecording(NamedTuple):
    """Events and trigger edges of one RAW file, with the sensor size from its header."""

    events: np.ndarray  # EVENT_DTYPE, t in sensor microseconds
    triggers: np.ndarray  # TRIGGER_DTYPE, t in sensor microseconds
    width: int | None  # pixels, None when the header gives no size
    height: int | None  # pixels, None when the header gives no size
    format_name: str  # "EVT3" or "EVT2"


class RawHeader(NamedTuple):
    """The parsed text header of a RAW file."""

    fields: dict[str, str]  # header key -> rest of the line
    body_offset_bytes: int  # where the binary event words start
    format_name: str
    width: int | None
    height: int | None


def read_prophesee_raw(path, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> RawRecording:
    """Read a whole EVT 3.0 or EVT 2.0 RAW file into memory.

    Times are sensor microseconds as the decoders return them. Raises
    FileFormatError for files without a RAW header, for formats other than EVT3
    and EVT2, for invalid words and for a body that ends inside a word.
    """
    path = Path(path)
    if chunk_bytes < 4 or chunk_bytes % 4:
        raise ValueError(f"chunk_bytes must be a positive multiple of 4, got {chunk_bytes}")

    with open(path, "rb") as file:
        header = read_raw_header(file, path)
        decoder_class, word_bytes = RAW_FORMATS[header.format_name]
        decoder = decoder_class()
        event_chunks = []
        trigger_chunks = []
        body_bytes_read = 0
        events_read = 0

        while True:
            chunk = file.read(chunk_bytes)
            if not chunk:
                break

            complete_bytes = len(chunk) - len(chunk) % word_bytes
            try:
                decoded = decoder.decode(chunk[:complete_bytes])
            except DecodeError as error:
                offset = header.body_offset_bytes + body_bytes_read + error.offset_bytes
                raise FileFormatError(
                    path, f"invalid {header.format_name} data at byte {offset}: {error.reason}"
                ) from error

            event_chunks.append(decoded.events)
            trigger_chunks.append(decoded.triggers)
            body_bytes_read += complete_bytes
            events_read += decoded.events.size

            # Only the last chunk can end inside a word, because chunk_bytes is a
            # multiple of every word size.
            if complete_bytes < len(chunk):
                raise FileFormatError(
                    path,
                    f"{header.format_name} body is truncated: it ends with "
                    f"{len(chunk) - complete_bytes} byte(s) of an incomplete {word_bytes}-byte word "
                    f"after {body_bytes_read} complete bytes and {events_read} events",
                )

    if decoder.untimed_events_dropped:
        logger.info(
            "%s: dropped %d events that came before the first time words",
            path,
            decoder.untimed_events_dropped,
        )
    events = np.concatenate(event_chunks) if event_chunks else np.zeros(0, EVENT_DTYPE)
    triggers = np.concatenate(trigger_chunks) if trigger_chunks else np.zeros(0, TRIGGER_DTYPE)
    return RawRecording(events, triggers, header.width, header.height, header.format_name)


def read_raw_header(file, path) -> RawHeader:
    """Read the '%' header lines from an open binary file, leaving it at the body start."""
    fields: dict[str, str] = {}
    first_byte = file.read(1)
    if first_byte != b"%":
        found = f"byte {first_byte[0]:#04x}" if first_byte else "an empty file"
        raise FileFormatError(
            path, f"expected a Prophesee RAW file starting with '%' header lines, found {found}"
        )

    file.seek(0)
    while True:
        line_start = file.tell()
        if file.read(1) != b"%":
            file.seek(line_start)
            break

        line = file.readline(MAX_HEADER_BYTES)
        if not line.endswith(b"\n") or file.tell() > MAX_HEADER_BYTES:
            raise FileFormatError(
                path, f"RAW header is unterminated or longer than {MAX_HEADER_BYTES} bytes"
            )
        text = line.decode("latin-1").strip()
        if text == "end":
            break
        key, _, value = text.partition(" ")
        fields[key] = value.strip()

    format_name, width, height = parse_header_fields(fields, path)
    return RawHeader(fields, file.tell(), format_name, width, height)


def parse_header_fields(fields: dict[str, str], path) -> tuple[str, int | None, int | None]:
    """Return (format name, width, height) from header fields, checking the format is supported."""
    options: dict[str, str] = {}
    if "format" in fields:
        name, *option_texts = fields["format"].split(";")
        format_name = name.strip().upper()
        for option_text in option_texts:
            key, _, value = option_text.partition("=")
            options[key.strip()] = value.strip()
    elif "evt" in fields:
        version = fields["evt"]
        format_name = EVT_VERSION_FORMATS.get(version, f"EVT {version}")
    else:
        raise FileFormatError(
            path,
            "RAW header names no event format; expected a '% format EVT3;...' or '% evt 3.0' line",
        )

    if format_name not in RAW_FORMATS:
        raise FileFormatError(
            path,
            f"unsupported RAW event format {format_name!r}; supported: {', '.join(RAW_FORMATS)}",
        )

    width, height = _header_geometry(fields, options, path)
    return format_name, width, height


def _header_geometry(fields, options, path) -> tuple[int | None, int | None]:
    """Return the sensor (width, height) from format options, geometry or plugin name."""
    try:
        if "width" in options and "height" in options:
            return int(options["width"]), int(options["height"])
    except ValueError:
        raise FileFormatError(
            path, f"invalid width {options['width']!r} or height {options['height']!r} in the format line"
        ) from None

    if "geometry" in fields:
        match = re.fullmatch(r"(\d+)\s*x\s*(\d+)", fields["geometry"])
        if match is None:
            raise FileFormatError(
                path, f"invalid geometry {fields['geometry']!r}; expected WIDTHxHEIGHT"
            )
        return int(match.group(1)), int(match.group(2))

    plugin_name = fields.get("plugin_name", "")
    for plugin_key, geometry in PLUGIN_GEOMETRY.items():
        if plugin_key in plugin_name:
            return geometry

    # NOTE: headers without format options, geometry or a known plugin give no
    # sensor size; callers must take it from elsewhere.
    return None, None
