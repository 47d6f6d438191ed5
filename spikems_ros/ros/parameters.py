"""Parameters of the segmenter node: names, defaults, descriptions and checks.

Plain Python, so the table and its checks are usable and testable without
rclpy. The node declares one ROS parameter per ``ParameterSpec``, reads the
values back and passes them to ``settings_from_values``, which raises
ParameterError naming the value and the allowed range before anything starts.
"""

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from spikems_ros.outputs import OUTPUT_ENCODINGS
from spikems_ros.pipeline import PipelineConfig

DEFAULT_WEIGHTS_NAME = "spikems_synthetic.pt"
PACKAGE_NAME = "spikems_ros"

# Output delay used when the parameter is -1 and the weights file does not state one.
DEFAULT_OUTPUT_DELAY_BINS = 6


class ParameterError(ValueError):
    """A node parameter with an invalid value; the message names the value and what is accepted."""

    def __init__(self, name: str, value, expected: str):
        self.name = name
        self.value = value
        self.expected = expected
        super().__init__(f"parameter {name} = {value!r} is invalid: expected {expected}")


@dataclass(frozen=True)
class ParameterSpec:
    """One node parameter: its default (which fixes its type), help text and check."""

    name: str
    default: bool | int | float | str
    description: str  # what the parameter sets, with its unit
    constraints: str  # the accepted values, in words (ParameterDescriptor.additional_constraints)
    is_valid: Callable[[object], bool]


def _at_least(minimum):
    return lambda value: value >= minimum


def _any_value(value) -> bool:
    return True


def _is_device(value: str) -> bool:
    return re.fullmatch(r"cpu|cuda(:[0-9]+)?", value) is not None


PARAMETER_SPECS = (
    ParameterSpec(
        "weights", "",
        "path of the network weights file; empty for the weights shipped with the package",
        "an existing weights file, or empty", _any_value,
    ),
    ParameterSpec(
        "device", "cpu",
        "PyTorch device that runs the network",
        "cpu, cuda or cuda:N", _is_device,
    ),
    ParameterSpec(
        "bin_width_us", 1000,
        "width of one network time step in microseconds; must match the weights",
        "an integer >= 1 equal to the bin width of the weights", _at_least(1),
    ),
    ParameterSpec(
        "publish_period_ms", 10,
        "event time covered by each published window, in milliseconds",
        "an integer >= 1 whose length is a whole number of bins", _at_least(1),
    ),
    ParameterSpec(
        "output_delay_bins", -1,
        "bins between an input bin and the output bin read for it; -1 takes the value "
        f"stored in the weights file, or {DEFAULT_OUTPUT_DELAY_BINS} when it stores none",
        "-1 or an integer >= 0", _at_least(-1),
    ),
    ParameterSpec(
        "chunk_bins", 16,
        "maximum bins per network call: the node runs every complete bin at once, in calls of at "
        "most this many. Larger calls cost less per bin and add no latency",
        "an integer >= 1", _at_least(1),
    ),
    ParameterSpec(
        "box_min_pixels", 12,
        "smallest number of foreground pixels reported as a moving object",
        "an integer >= 1", _at_least(1),
    ),
    ParameterSpec(
        "box_merge_distance_px", 3,
        "foreground pixels this close, in pixels, belong to one object",
        "an integer >= 0", _at_least(0),
    ),
    ParameterSpec(
        "box_noise_min_neighbours", 1,
        "foreground pixels with fewer foreground neighbours (of 8) are dropped as noise before boxing",
        "an integer from 0 to 8", lambda value: 0 <= value <= 8,
    ),
    ParameterSpec(
        "tracking", True,
        "smooth boxes over windows with a constant-velocity Kalman filter per object",
        "true or false", _any_value,
    ),
    ParameterSpec(
        "track_max_missed_windows", 3,
        "windows in a row without a matching box after which a track is dropped",
        "an integer >= 1", _at_least(1),
    ),
    ParameterSpec(
        "track_min_iou", 0.1,
        "smallest IoU between a track's predicted box and a new box for them to match",
        "a number from 0 to 1", lambda value: 0.0 <= value <= 1.0,
    ),
    ParameterSpec(
        "events_qos_reliable", False,
        "subscribe to events with reliable QoS; false (best effort) receives from camera drivers, "
        "which publish best effort",
        "true or false", _any_value,
    ),
    ParameterSpec(
        "events_qos_depth", 1000,
        "history depth (KeepLast) of the events subscription, in messages",
        "an integer >= 1", _at_least(1),
    ),
    ParameterSpec(
        "frame_id", "",
        "frame_id of every output; empty copies the frame_id of the input packets",
        "any string", _any_value,
    ),
    ParameterSpec(
        "output_encoding", "evt3",
        "encoding of the published foreground EventPackets",
        " or ".join(OUTPUT_ENCODINGS), lambda value: value in OUTPUT_ENCODINGS,
    ),
    ParameterSpec(
        "max_latency_ms", 200,
        "maximum event time, in milliseconds, waiting in the input queue; older packets are dropped",
        "an integer >= 1", _at_least(1),
    ),
    ParameterSpec(
        "publish_images", True,
        "publish the ~/image overlay and the ~/mask image",
        "true or false", _any_value,
    ),
    ParameterSpec(
        "diagnostics_period_s", 1.0,
        "period of the /diagnostics status in seconds of wall time",
        "a number > 0", lambda value: math.isfinite(value) and value > 0.0,
    ),
)

PARAMETERS_BY_NAME = {spec.name: spec for spec in PARAMETER_SPECS}


@dataclass(frozen=True)
class NodeSettings:
    """Validated parameter values of the segmenter node, one field per parameter."""

    weights: str
    device: str
    bin_width_us: int
    publish_period_ms: int
    output_delay_bins: int
    chunk_bins: int
    box_min_pixels: int
    box_merge_distance_px: int
    box_noise_min_neighbours: int
    tracking: bool
    track_max_missed_windows: int
    track_min_iou: float
    events_qos_reliable: bool
    events_qos_depth: int
    frame_id: str
    output_encoding: str
    max_latency_ms: int
    publish_images: bool
    diagnostics_period_s: float


_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a floating-point number", str: "a string", list: "a list"}


def _typed_value(spec: ParameterSpec, value):
    """Return ``value`` converted to the type of the spec's default, or raise ParameterError."""
    expected_type = type(spec.default)
    if expected_type is float and isinstance(value, int) and not isinstance(value, bool):
        # Accept 1 for 1.0, as YAML files and the command line write it.
        return float(value)
    if expected_type is int and isinstance(value, bool):
        raise ParameterError(spec.name, value, f"{spec.constraints}, got a boolean")
    if not isinstance(value, expected_type):
        type_name = _TYPE_NAMES.get(type(value), f"a {type(value).__name__}")
        raise ParameterError(spec.name, value, f"{spec.constraints}, got {type_name}")
    return value


def settings_from_values(values: dict) -> NodeSettings:
    """Check every parameter value and return the settings; missing names take their default.

    Raises ParameterError for an unknown name, a value of the wrong type or a
    value outside its range.
    """
    unknown = sorted(set(values) - PARAMETERS_BY_NAME.keys())
    if unknown:
        raise ParameterError(unknown[0], values[unknown[0]], f"one of {sorted(PARAMETERS_BY_NAME)}")

    checked = {}
    for spec in PARAMETER_SPECS:
        value = _typed_value(spec, values.get(spec.name, spec.default))
        if not spec.is_valid(value):
            raise ParameterError(spec.name, value, spec.constraints)
        checked[spec.name] = value

    window_us = checked["publish_period_ms"] * 1000
    if window_us % checked["bin_width_us"]:
        raise ParameterError(
            "publish_period_ms", checked["publish_period_ms"],
            f"a multiple of bin_width_us = {checked['bin_width_us']} us",
        )
    return NodeSettings(**checked)


def pipeline_config(settings: NodeSettings, weights_metadata: dict, network_bin_us: int) -> PipelineConfig:
    """Return the pipeline configuration, checking the settings against the weights.

    ``weights_metadata`` is the metadata of the weights file (it may state
    ``bin_us`` and ``output_delay_bins``), ``network_bin_us`` the bin width the
    network's neurons were built for.
    """
    if settings.bin_width_us != network_bin_us:
        raise ParameterError(
            "bin_width_us", settings.bin_width_us, f"{network_bin_us}, the bin width of the network in the weights"
        )
    metadata_bin_us = weights_metadata.get("bin_us")
    if metadata_bin_us is not None and int(metadata_bin_us) != settings.bin_width_us:
        raise ParameterError(
            "bin_width_us", settings.bin_width_us, f"{metadata_bin_us}, the bin_us stored in the weights file"
        )

    output_delay_bins = settings.output_delay_bins
    if output_delay_bins == -1:
        output_delay_bins = int(weights_metadata.get("output_delay_bins", DEFAULT_OUTPUT_DELAY_BINS))

    return PipelineConfig(
        bin_width_us=settings.bin_width_us,
        window_bins=settings.publish_period_ms * 1000 // settings.bin_width_us,
        output_delay_bins=output_delay_bins,
        chunk_bins=settings.chunk_bins,
        box_min_pixels=settings.box_min_pixels,
        box_merge_distance_px=settings.box_merge_distance_px,
        box_noise_min_neighbours=settings.box_noise_min_neighbours,
        tracking=settings.tracking,
        track_max_missed_windows=settings.track_max_missed_windows,
        track_min_iou=settings.track_min_iou,
    )


def default_weights_candidates() -> list:
    """Return the places searched for the shipped weights, in order.

    First the package's ament share folder (an installed ROS 2 package), then
    the weights/ folder of the source tree next to the Python package.
    """
    candidates = []
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        pass
    else:
        try:
            candidates.append(Path(get_package_share_directory(PACKAGE_NAME)) / "weights" / DEFAULT_WEIGHTS_NAME)
        except PackageNotFoundError:
            pass
    candidates.append(Path(__file__).resolve().parents[2] / "weights" / DEFAULT_WEIGHTS_NAME)
    return candidates


def resolve_weights_path(value: str, candidates: list | None = None) -> Path:
    """Return the weights file to load: ``value`` when set, else the first shipped file found.

    Raises ParameterError when the file does not exist, naming every place searched.
    """
    if value:
        path = Path(value).expanduser()
        if not path.is_file():
            raise ParameterError("weights", value, "the path of an existing weights file")
        return path

    candidates = default_weights_candidates() if candidates is None else candidates
    for path in candidates:
        if path.is_file():
            return path
    searched = ", ".join(str(path) for path in candidates)
    raise ParameterError(
        "weights", value, f"the path of a weights file, because the shipped weights file was not found in {searched}"
    )
