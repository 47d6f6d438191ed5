"""SpikeMS training loss: L = L_bce + lambda * L_spike.

Shapes: predicted and input spikes (batch, 2, height, width, time); foreground
masks and labels (batch, height, width), 1.0 for foreground and 0.0 for background.

* L_bce compares each pixel's spike count, summed over time and both polarities,
  with the pixel's foreground label. Counts become probabilities through
  p = sigmoid(count_gain * (count - count_offset)). The defaults (gain 4, offset 0.5)
  map a count of 0 to p = 0.12, 1 to 0.88 and 2 to 0.997, so one output spike marks a
  pixel as foreground. The logit is finite and its gradient is bounded by
  count_gain, unlike p = 1 - exp(-count), whose log-loss is infinite for a
  foreground pixel without spikes.
* L_spike is the van Rossum distance between the predicted and the target spike
  trains: both are filtered with the alpha kernel of ``neuron.alpha_filter``, and
  the squared difference is integrated over the window and normalised by tau, so
  (bin/tau) * sum_t (f_pred - f_target)^2. A lone unmatched spike then costs about
  e^2/4 = 1.85. The target is the input spike train masked by the ground-truth
  foreground mask.
"""

import dataclasses
from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor

from spikems_ros.snn.neuron import alpha_filter


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Weights and constants of the SpikeMS loss."""

    # lambda: weight of the van Rossum spike-train term against the count term.
    spike_loss_weight: float = 1.0
    # Slope of the count-to-logit map, per spike.
    count_gain: float = 4.0
    # Spike count at which a pixel is foreground with probability 0.5.
    count_offset: float = 0.5
    # Time constant of the alpha kernel filtering both trains. 2 ms is the output layer's tau_s.
    van_rossum_tau_ms: float = 2.0
    # Duration of one time step of the spike trains.
    bin_ms: float = 1.0

    def __post_init__(self) -> None:
        for name in ("count_gain", "van_rossum_tau_ms", "bin_ms"):
            if not getattr(self, name) > 0:
                raise ValueError(f"LossConfig.{name} = {getattr(self, name)!r} is invalid: expected a number > 0")
        if not self.spike_loss_weight >= 0:
            raise ValueError(
                f"LossConfig.spike_loss_weight = {self.spike_loss_weight!r} is invalid: expected a number >= 0"
            )


class LossTerms(NamedTuple):
    """The total loss and its two terms, each a scalar tensor."""

    total: Tensor
    bce: Tensor
    spike: Tensor


def _check_spike_window(name: str, spikes: Tensor) -> None:
    if not isinstance(spikes, Tensor) or spikes.dim() != 5 or spikes.shape[1] != 2:
        shape = tuple(spikes.shape) if isinstance(spikes, Tensor) else type(spikes).__name__
        raise ValueError(f"{name} must be shaped (batch, 2, height, width, time), got {shape}")


def _check_pixel_map(name: str, pixel_map: Tensor, spikes: Tensor) -> None:
    expected = (spikes.shape[0], *spikes.shape[2:4])
    if not isinstance(pixel_map, Tensor) or tuple(pixel_map.shape) != expected:
        shape = tuple(pixel_map.shape) if isinstance(pixel_map, Tensor) else type(pixel_map).__name__
        raise ValueError(f"{name} must be shaped (batch, height, width) = {expected}, got {shape}")


def count_logits(output_spikes: Tensor, config: LossConfig = LossConfig()) -> Tensor:
    """Return the foreground logit of every pixel, (batch, height, width), from its spike count."""
    _check_spike_window("output_spikes", output_spikes)
    counts = output_spikes.sum(dim=(1, 4))  # (batch, height, width)
    return config.count_gain * (counts - config.count_offset)


def count_bce_loss(
    output_spikes: Tensor,
    foreground_label: Tensor,
    valid_pixels: Tensor | None = None,
    config: LossConfig = LossConfig(),
) -> Tensor:
    """Return L_bce: binary cross-entropy of the count probabilities, averaged over pixels.

    ``foreground_label`` (batch, height, width) is 1.0 for foreground. Which
    pixels carry a label is the caller's choice: ``valid_pixels`` (batch, height,
    width), when given, restricts the average to pixels where it is nonzero, for
    example pixels with input events. With no valid pixel the loss is 0.
    """
    logits = count_logits(output_spikes, config)  # (batch, height, width)
    _check_pixel_map("foreground_label", foreground_label, output_spikes)
    per_pixel = F.binary_cross_entropy_with_logits(logits, foreground_label.to(logits.dtype), reduction="none")
    if valid_pixels is None:
        return per_pixel.mean()
    _check_pixel_map("valid_pixels", valid_pixels, output_spikes)
    weights = (valid_pixels != 0).to(per_pixel.dtype)
    return (per_pixel * weights).sum() / weights.sum().clamp(min=1.0)


def target_spikes(input_spikes: Tensor, foreground_mask: Tensor) -> Tensor:
    """Return the input spikes (batch, 2, height, width, time) at foreground pixels, zero elsewhere."""
    _check_spike_window("input_spikes", input_spikes)
    _check_pixel_map("foreground_mask", foreground_mask, input_spikes)
    keep = (foreground_mask != 0).to(input_spikes.dtype)[:, None, :, :, None]  # (batch, 1, height, width, 1)
    return input_spikes * keep


def van_rossum_loss(output_spikes: Tensor, target: Tensor, config: LossConfig = LossConfig()) -> Tensor:
    """Return L_spike: the van Rossum distance per neuron, averaged over batch, channels and pixels.

    Both arguments are (batch, 2, height, width, time) of the same shape.
    NOTE: every layer delays spikes by at least one step, so the output lags the
    input by six steps or more, and a target built from input spikes cannot be
    matched exactly. The loss still rewards output spikes close to target spikes.
    """
    _check_spike_window("output_spikes", output_spikes)
    if target.shape != output_spikes.shape:
        raise ValueError(
            f"target must have the shape of output_spikes {tuple(output_spikes.shape)}, got {tuple(target.shape)}"
        )
    filtered_output = alpha_filter(output_spikes, config.van_rossum_tau_ms, config.bin_ms)
    filtered_target = alpha_filter(target.to(output_spikes.dtype), config.van_rossum_tau_ms, config.bin_ms)
    squared = (filtered_output - filtered_target).square()  # (batch, 2, height, width, time)
    per_neuron = squared.sum(dim=-1) * (config.bin_ms / config.van_rossum_tau_ms)  # (batch, 2, height, width)
    return per_neuron.mean()


def spikems_loss(
    output_spikes: Tensor,
    input_spikes: Tensor,
    foreground_mask: Tensor,
    foreground_label: Tensor | None = None,
    valid_pixels: Tensor | None = None,
    config: LossConfig = LossConfig(),
) -> LossTerms:
    """Return L = L_bce + lambda * L_spike with both terms.

    ``foreground_mask`` (batch, height, width) is the ground-truth mask that selects
    the target spikes. ``foreground_label`` defaults to the same mask.
    """
    _check_spike_window("input_spikes", input_spikes)
    if input_spikes.shape != output_spikes.shape:
        raise ValueError(
            f"input_spikes {tuple(input_spikes.shape)} and output_spikes {tuple(output_spikes.shape)} "
            "must have the same shape"
        )
    label = foreground_mask if foreground_label is None else foreground_label
    bce = count_bce_loss(output_spikes, label, valid_pixels, config)
    spike_term = van_rossum_loss(output_spikes, target_spikes(input_spikes, foreground_mask), config)
    return LossTerms(bce + config.spike_loss_weight * spike_term, bce, spike_term)
