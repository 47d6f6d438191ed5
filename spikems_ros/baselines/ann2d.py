"""ANN-2D: the SpikeMS encoder-decoder as a conventional CNN on event-count frames, and its weights files.

Tensor layout: frames (batch, 2, height, width), channel p counting the events of
polarity p (0 = OFF, 1 = ON) in the window; the output is a foreground logit per
polarity and pixel, (batch, 2, height, width). A pixel is predicted foreground
when either channel's logit is positive (probability above 0.5), the counterpart
of "at least one output spike of either polarity" for the spiking network.

Layers: three 3x3 stride-2 convolutions (2 -> 16 -> 32 -> 64), then three 3x3
stride-2 transposed convolutions (64 -> 32 -> 16 -> 2) whose output padding is
chosen per input size so the output lands back on the input grid (odd sizes
included). Batch norm and ReLU follow every layer but the last.

A weights file is ``torch.save`` of one dict of tensors and plain values. Its
keys: ``format`` "spikems-ann2d-weights", ``format_version`` 1,
``architecture`` "ann2d-6layer", ``channels`` (2, 16, 32, 64, 32, 16, 2),
``tensors`` (the state dict, batch-norm statistics included) and ``metadata``
(str to str, int or float). Files are read only with
``torch.load(weights_only=True)``, so loading one never runs code.
"""

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from spikems_ros.snn.geometry import KERNEL_SIZE, PADDING, STRIDE, LayerGeometry
from spikems_ros.snn.weights import (
    WeightsError, check_metadata, check_tensor_names, read_torch_dict, write_torch_file_atomically,
)

FORMAT_NAME = "spikems-ann2d-weights"
FORMAT_VERSION = 1
ARCHITECTURE = "ann2d-6layer"
CHANNELS = (2, 16, 32, 64, 32, 16, 2)
LAYER_NAMES = ("conv1", "conv2", "conv3", "deconv4", "deconv5", "deconv6")
TRANSPOSED = (False, False, False, True, True, True)
_TOP_LEVEL_KEYS = frozenset({"format", "format_version", "architecture", "channels", "tensors", "metadata"})


class Ann2dWeightsError(WeightsError):
    """An ANN-2D weights file that cannot be loaded: unreadable, another format or not matching the network."""

    file_kind = "ANN-2D weights file"


class Ann2dNetwork(nn.Module):
    """The ANN-2D encoder-decoder; ``forward`` maps count frames (B, 2, H, W) to logits (B, 2, H, W)."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        self.norms = nn.ModuleList()
        for index, transposed in enumerate(TRANSPOSED):
            in_channels, out_channels = CHANNELS[index], CHANNELS[index + 1]
            if transposed:
                self.decoder.append(
                    nn.ConvTranspose2d(in_channels, out_channels, KERNEL_SIZE, stride=STRIDE, padding=PADDING)
                )
            else:
                self.encoder.append(nn.Conv2d(in_channels, out_channels, KERNEL_SIZE, stride=STRIDE, padding=PADDING))
            if index < len(TRANSPOSED) - 1:
                self.norms.append(nn.BatchNorm2d(out_channels))

    @property
    def geometries(self) -> tuple:
        """Connectivity of each layer, the same as the spiking network's (for operation counts)."""
        return tuple(
            LayerGeometry(name, transposed, CHANNELS[index], CHANNELS[index + 1])
            for index, (name, transposed) in enumerate(zip(LAYER_NAMES, TRANSPOSED))
        )

    def forward(self, frames: Tensor) -> Tensor:
        if frames.dim() != 4 or frames.shape[1] != CHANNELS[0]:
            raise ValueError(
                f"ANN-2D expects count frames shaped (batch, {CHANNELS[0]}, height, width), "
                f"got {tuple(frames.shape)}"
            )
        # log1p compresses the counts: a textured pixel can fire tens of events in
        # a window, a noise pixel one, and the network should see both.
        hidden = torch.log1p(frames)
        sizes = [tuple(hidden.shape[-2:])]
        norms = iter(self.norms)
        for layer in self.encoder:
            hidden = torch.relu(next(norms)(layer(hidden)))
            sizes.append(tuple(hidden.shape[-2:]))

        # Each transposed convolution returns to the size of the matching encoder input.
        targets = sizes[-2::-1]  # (B, C, h, w) sizes of conv3's, conv2's and conv1's inputs
        for position, (layer, target) in enumerate(zip(self.decoder, targets)):
            hidden = layer(hidden, output_size=target)
            if position < len(self.decoder) - 1:
                hidden = torch.relu(next(norms)(hidden))
        return hidden  # (B, 2, H, W) logits


def count_frame(events: np.ndarray, height: int, width: int, *, top: int = 0, left: int = 0) -> np.ndarray:
    """Count events per polarity and pixel into a float32 (2, height, width) frame.

    ``top`` and ``left`` shift the frame over a crop of the sensor; events outside
    it are ignored.
    """
    frame = np.zeros((2, height, width), dtype=np.float32)
    x = events["x"].astype(np.int64) - left
    y = events["y"].astype(np.int64) - top
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    np.add.at(frame, (events["p"][inside].astype(np.int64) & 1, y[inside], x[inside]), 1.0)
    return frame


def predicted_pixels(logits: Tensor) -> Tensor:
    """Return the boolean (batch, H, W) foreground map: a positive logit in either polarity channel."""
    return (logits > 0).any(dim=1)


def save_ann2d_weights(path, network: Ann2dNetwork, metadata: dict | None = None) -> None:
    """Write the network's weights to ``path`` under a temporary name, then rename it into place."""
    path = Path(path)
    content = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "architecture": ARCHITECTURE,
        "channels": list(CHANNELS),
        "tensors": {name: tensor.detach().cpu().clone() for name, tensor in network.state_dict().items()},
        "metadata": check_metadata(path, {} if metadata is None else metadata, Ann2dWeightsError),
    }
    write_torch_file_atomically(path, content)


@dataclasses.dataclass(frozen=True)
class Ann2dWeights:
    """Validated content of an ANN-2D weights file."""

    tensors: dict  # parameter and buffer name -> tensor, on the CPU
    metadata: dict  # str -> str, int or float


def read_ann2d_weights(path) -> Ann2dWeights:
    """Read and validate an ANN-2D weights file, raising Ann2dWeightsError that names the file and the problem."""
    path = Path(path)
    content = read_torch_dict(path, FORMAT_NAME, Ann2dWeightsError)
    if content.get("format") != FORMAT_NAME:
        hint = " (a spiking-network file: pass it as --weights)" if content.get("format") == "spikems-weights" else ""
        raise Ann2dWeightsError(path, f"format is {content.get('format')!r}, expected {FORMAT_NAME!r}{hint}")
    if content.get("format_version") != FORMAT_VERSION:
        raise Ann2dWeightsError(
            path, f"format_version is {content.get('format_version')!r}, this code reads version {FORMAT_VERSION}"
        )
    if content.get("architecture") != ARCHITECTURE or list(content.get("channels", [])) != list(CHANNELS):
        raise Ann2dWeightsError(
            path,
            f"architecture {content.get('architecture')!r} with channels {content.get('channels')!r} is invalid: "
            f"expected {ARCHITECTURE!r} with {list(CHANNELS)}",
        )
    missing = sorted(_TOP_LEVEL_KEYS - content.keys())
    unknown = sorted(str(key) for key in content.keys() - _TOP_LEVEL_KEYS)
    if missing or unknown:
        raise Ann2dWeightsError(path, f"missing entries {missing} and unknown entries {unknown}")

    tensors = content["tensors"]
    expected = Ann2dNetwork().state_dict()
    check_tensor_names(path, tensors, expected, Ann2dWeightsError)
    for name, reference in expected.items():
        tensor = tensors[name]
        if not isinstance(tensor, Tensor) or tensor.dtype != reference.dtype or tensor.shape != reference.shape:
            raise Ann2dWeightsError(
                path,
                f"{name} is {type(tensor).__name__} {getattr(tensor, 'dtype', '')} "
                f"{tuple(getattr(tensor, 'shape', ()))}, expected {reference.dtype} {tuple(reference.shape)}",
            )
    return Ann2dWeights(dict(tensors), check_metadata(path, content["metadata"], Ann2dWeightsError))


def load_ann2d(path, device: torch.device | str = "cpu") -> Ann2dNetwork:
    """Build the ANN-2D network from a weights file, in evaluation mode, on ``device``."""
    weights = read_ann2d_weights(path)
    network = Ann2dNetwork()
    network.load_state_dict(weights.tensors)
    return network.to(device).eval()
