"""Weights files of the SpikeMS network in this project's own format.

A weights file is ``torch.save`` of one dict of tensors and plain values:

* ``format``: "spikems-weights";
* ``format_version``: 1;
* ``architecture``: "spikems-6layer";
* ``channels``: list of 7 channel counts, input first (2, 16, 32, 64, 32, 16, 2);
* ``neuron_configs``: list of 6 dicts, one per layer, with the fields of NeuronConfig;
* ``tensors``: dict from parameter name ("conv1.weight", ...) to tensor;
* ``metadata``: dict from str to str, int or float (training data, epochs, ...).

Files are read only with ``torch.load(weights_only=True)``, which rebuilds tensors
and plain containers and raises on any other pickled object, so a weights file can
never run code on load.
"""

import dataclasses
import os
import pickle
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from spikems_ros.snn.network import ARCHITECTURE, LAYER_NAMES, SpikeMSNetwork
from spikems_ros.snn.neuron import NeuronConfig

FORMAT_NAME = "spikems-weights"
FORMAT_VERSION = 1
_TOP_LEVEL_KEYS = frozenset(
    {"format", "format_version", "architecture", "channels", "neuron_configs", "tensors", "metadata"}
)
_NEURON_CONFIG_FIELDS = frozenset(field.name for field in dataclasses.fields(NeuronConfig))


class WeightsError(ValueError):
    """A weights file that cannot be loaded: unreadable, another format or not matching the network."""

    # What the file is, as the message names it; subclasses for other formats override it.
    file_kind = "weights file"

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.file_kind} {path}: {reason}")


@dataclasses.dataclass(frozen=True)
class WeightsFile:
    """Validated content of a weights file."""

    channels: tuple[int, ...]
    neuron_configs: tuple[NeuronConfig, ...]
    # Parameter name -> tensor, on the CPU, ready for SpikeMSNetwork.load_state_dict.
    tensors: dict[str, Tensor]
    metadata: dict[str, str | int | float]


def check_metadata(path, metadata, error_type: type = WeightsError) -> dict[str, str | int | float]:
    """Return ``metadata`` as a dict of str keys and str, int or float values, else raise ``error_type``."""
    if not isinstance(metadata, dict):
        raise error_type(path, f"metadata must be a dict, got {type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, (str, int, float)):
            raise error_type(
                path,
                f"metadata entry {key!r}: {value!r} is invalid: expected str keys and str, int or float values",
            )
    return dict(metadata)


def write_torch_file_atomically(path: Path, content: dict) -> None:
    """Save ``content`` with torch.save under a temporary name, then rename it into place.

    A reader never sees a partly written file under ``path``.
    """
    descriptor, temporary_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            torch.save(content, stream)
        # mkstemp creates the file readable by its owner only; give it the usual mode.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary_name, 0o666 & ~umask)
        os.replace(temporary_name, path)
    except BaseException:
        os.unlink(temporary_name)
        raise


def read_torch_dict(path: Path, format_name: str, error_type: type = WeightsError) -> dict:
    """Load a torch file with weights_only=True (no code is unpickled) and return its top-level dict.

    Raises ``error_type`` naming the file for corrupt, truncated or foreign
    content. OSError (missing file, no permission) propagates unchanged because
    the file is not at fault.
    """
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message is a paragraph; its first sentence names the failure.
        first_line = str(error).split(". ")[0] if str(error) else type(error).__name__
        raise error_type(
            path,
            f"cannot be read with weights_only=True ({first_line}): it is corrupt or contains "
            "objects other than tensors and plain values",
        ) from error
    except IsADirectoryError as error:
        raise error_type(path, "is a folder, expected a weights file") from error
    except OSError:
        raise
    except Exception as error:  # torch's loader raises many types (KeyError, RuntimeError, ...) for foreign files
        raise error_type(
            path, f"is not a readable torch file, it may be truncated or corrupt ({type(error).__name__}: {error})"
        ) from error
    if not isinstance(content, dict):
        raise error_type(path, f"contains a {type(content).__name__}, expected a dict in the {format_name} format")
    return content


def save_weights(path: str | os.PathLike, network: SpikeMSNetwork, metadata: dict | None = None) -> None:
    """Write the network's weights and configuration to ``path``.

    The file is written under a temporary name and renamed into place, so a reader
    never sees a partly written file.
    """
    path = Path(path)
    metadata = check_metadata(path, {} if metadata is None else metadata)
    content = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "architecture": ARCHITECTURE,
        "channels": list(network.channels),
        "neuron_configs": [dataclasses.asdict(config) for config in network.neuron_configs],
        "tensors": {name: tensor.detach().cpu().clone() for name, tensor in network.state_dict().items()},
        "metadata": metadata,
    }

    write_torch_file_atomically(path, content)


def _check_header(path: Path, content: dict) -> None:
    if content.get("format") != FORMAT_NAME:
        raise WeightsError(path, f"format is {content.get('format')!r}, expected {FORMAT_NAME!r}")
    if content.get("format_version") != FORMAT_VERSION:
        raise WeightsError(
            path, f"format_version is {content.get('format_version')!r}, this code reads version {FORMAT_VERSION}"
        )
    if content.get("architecture") != ARCHITECTURE:
        raise WeightsError(path, f"architecture is {content.get('architecture')!r}, expected {ARCHITECTURE!r}")
    missing = sorted(_TOP_LEVEL_KEYS - content.keys())
    unknown = sorted(str(key) for key in content.keys() - _TOP_LEVEL_KEYS)
    if missing or unknown:
        raise WeightsError(path, f"missing entries {missing} and unknown entries {unknown}")


def _parse_neuron_configs(path: Path, entries) -> tuple[NeuronConfig, ...]:
    if not isinstance(entries, list) or len(entries) != len(LAYER_NAMES):
        raise WeightsError(path, f"neuron_configs must be a list of {len(LAYER_NAMES)} dicts, got {entries!r}")
    configs = []
    for name, entry in zip(LAYER_NAMES, entries):
        if not isinstance(entry, dict) or set(entry) != _NEURON_CONFIG_FIELDS:
            fields = sorted(entry) if isinstance(entry, dict) else entry
            raise WeightsError(
                path, f"neuron config of {name} has fields {fields}, expected {sorted(_NEURON_CONFIG_FIELDS)}"
            )
        try:
            configs.append(NeuronConfig(**entry))
        except ValueError as error:
            raise WeightsError(path, f"neuron config of {name} is invalid: {error}") from error
    return tuple(configs)


def check_tensor_names(path: Path, tensors, expected: dict, error_type: type = WeightsError) -> None:
    """Raise ``error_type`` unless ``tensors`` is a dict with exactly the names of ``expected`` (a state dict)."""
    if not isinstance(tensors, dict):
        raise error_type(path, f"tensors must be a dict of name to tensor, got {type(tensors).__name__}")
    missing = sorted(expected.keys() - tensors.keys())
    unknown = sorted(str(key) for key in tensors.keys() - expected.keys())
    if missing or unknown:
        raise error_type(path, f"missing tensors {missing} and unknown tensors {unknown}")


def _check_tensors(path: Path, tensors, network: SpikeMSNetwork) -> dict[str, Tensor]:
    expected = network.state_dict()
    check_tensor_names(path, tensors, expected)
    for name, reference in expected.items():
        tensor = tensors[name]
        if not isinstance(tensor, Tensor) or not tensor.is_floating_point():
            raise WeightsError(path, f"{name} is {type(tensor).__name__} {getattr(tensor, 'dtype', '')}, expected a float tensor")
        if tensor.shape != reference.shape:
            raise WeightsError(path, f"{name} has shape {tuple(tensor.shape)}, expected {tuple(reference.shape)}")
        non_finite = int((~torch.isfinite(tensor)).sum())
        if non_finite:
            # A NaN weight makes every potential it reaches NaN, so the layer never spikes again.
            raise WeightsError(path, f"{name} contains {non_finite} NaN or infinite values, expected finite weights")
    return dict(tensors)


def read_weights(path: str | os.PathLike) -> WeightsFile:
    """Read and validate a weights file, raising WeightsError that names the file and the problem."""
    path = Path(path)
    content = read_torch_dict(path, FORMAT_NAME)
    _check_header(path, content)

    configs = _parse_neuron_configs(path, content["neuron_configs"])
    channels = content["channels"]
    try:
        network = SpikeMSNetwork(configs, channels)
    except (TypeError, ValueError) as error:
        raise WeightsError(path, f"describes no valid network: {error}") from error

    tensors = _check_tensors(path, content["tensors"], network)
    metadata = check_metadata(path, content["metadata"])
    return WeightsFile(tuple(channels), configs, tensors, metadata)


def load_network(path: str | os.PathLike, device: torch.device | str = "cpu") -> SpikeMSNetwork:
    """Build the network a weights file describes, with its weights, on ``device``."""
    weights = read_weights(path)
    network = SpikeMSNetwork(weights.neuron_configs, weights.channels)
    network.load_state_dict(weights.tensors)
    return network.to(device)
