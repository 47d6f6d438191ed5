"""Conversion of a released SpikeMS (SLAYER) checkpoint into our weights format.

Layout read (a PyTorch state_dict, optionally under a "state_dict" or
"model_state_dict" key):

* ``conv1.weight`` (16, 2, 3, 3, 1), ``conv2.weight`` (32, 16, 3, 3, 1),
  ``conv3.weight`` (64, 32, 3, 3, 1): SLAYER 3D convolutions whose last kernel
  dimension is time (size 1), in (out, in, kh, kw, 1) order.
* ``deconv4.0.weight`` (64, 32, 3, 3, 1), ``deconv5.0.weight``,
  ``deconv6.0.weight``: SLAYER transposed convolutions, (in, out, kh, kw, 1).
* ``slayer_convN.srmKernel`` and ``slayer_convN.refKernel`` (N = 1..6), the
  sampled spike-response and refractory kernels of each layer, one value per
  simulation step (leading singleton dimensions are ignored).

Time constants are recovered in steps from the sampled kernels and converted
to milliseconds with ``source_bin_ms`` per step. Kernels are sampled shapes, so
the fit is exact for exact samples:

* SRM kernel v[k] = (k/tau) exp(1 - k/tau): ln v[k] - ln k - 1 = -ln tau - k/tau,
  a line in k with slope -1/tau.
* Refractory kernel, SLAYER alpha form (v[0] = 0, rises then decays): the same
  line with an amplitude, which gives scale_ref * threshold.
* Refractory kernel, first-order form (largest magnitude at k = 1, then a
  geometric decay): v[k] = -A exp(-k/tau) for k >= 1.

SLAYER scales each PSP convolution by its time step Ts, so the imported weights
are multiplied by ``weight_scale`` (default 1.0: the checkpoint's Ts was 1 in
its own units). NOTE: thresholds are not stored in such a checkpoint; the
released per-layer thresholds are used unless given.
"""

import dataclasses
import logging
import math
from pathlib import Path

import numpy as np
import torch

from spikems_ros.snn.network import LAYER_NAMES, SpikeMSNetwork
from spikems_ros.snn.neuron import RELEASED_NEURON_CONFIGS

LOG = logging.getLogger(__name__)

SLAYER_WEIGHT_KEYS = {
    "conv1": "conv1.weight",
    "conv2": "conv2.weight",
    "conv3": "conv3.weight",
    "deconv4": "deconv4.0.weight",
    "deconv5": "deconv5.0.weight",
    "deconv6": "deconv6.0.weight",
}


class SlayerImportError(ValueError):
    """A checkpoint that is not in the released SpikeMS layout, naming the file and the problem."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"SLAYER checkpoint {path}: {reason}")


@dataclasses.dataclass(frozen=True)
class RecoveredKernel:
    """Time constant (in steps) and amplitude fitted to a sampled kernel."""

    tau_steps: float
    amplitude: float
    form: str  # "alpha" or "first_order"
    max_error: float  # largest absolute difference between the samples and the fitted kernel


def _fit_line(x: np.ndarray, y: np.ndarray) -> tuple:
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def recover_alpha_kernel(samples: np.ndarray) -> RecoveredKernel:
    """Fit A (k/tau) exp(1 - k/tau) to samples of either sign; A carries the sign."""
    samples = np.asarray(samples, dtype=np.float64).reshape(-1)
    sign = -1.0 if samples.sum() < 0 else 1.0
    magnitude = sign * samples
    steps = np.arange(samples.shape[0], dtype=np.float64)
    # Samples far out in the tail are rounded to zero or noise; fit where they carry signal.
    usable = (steps >= 1) & (magnitude > 1e-6 * max(magnitude.max(), 1e-300))
    if np.count_nonzero(usable) < 2:
        raise ValueError("kernel has fewer than two usable samples after k = 0")
    slope, intercept = _fit_line(steps[usable], np.log(magnitude[usable]) - np.log(steps[usable]) - 1.0)
    if slope >= 0:
        raise ValueError(f"kernel does not decay (fitted slope {slope:.3g}); not an alpha kernel")
    tau_steps = -1.0 / slope
    amplitude = sign * tau_steps * math.exp(intercept)
    fitted = amplitude * (steps / tau_steps) * np.exp(1.0 - steps / tau_steps)
    return RecoveredKernel(tau_steps, amplitude, "alpha", float(np.abs(fitted - samples).max()))


def recover_first_order_kernel(samples: np.ndarray) -> RecoveredKernel:
    """Fit -A exp(-k/tau) for k >= 1 (value 0 at k = 0) to refractory samples."""
    samples = np.asarray(samples, dtype=np.float64).reshape(-1)
    magnitude = -samples
    steps = np.arange(samples.shape[0], dtype=np.float64)
    usable = (steps >= 1) & (magnitude > 1e-6 * max(magnitude.max(), 1e-300))
    if np.count_nonzero(usable) < 2:
        raise ValueError("kernel has fewer than two usable samples after k = 0")
    slope, intercept = _fit_line(steps[usable], np.log(magnitude[usable]))
    if slope >= 0:
        raise ValueError(f"kernel does not decay (fitted slope {slope:.3g})")
    tau_steps = -1.0 / slope
    amplitude = math.exp(intercept)
    fitted = np.where(steps >= 1, -amplitude * np.exp(-steps / tau_steps), 0.0)
    return RecoveredKernel(tau_steps, amplitude, "first_order", float(np.abs(fitted - samples).max()))


def recover_refractory_kernel(samples: np.ndarray) -> RecoveredKernel:
    """Decide the refractory form from the samples' shape and fit it."""
    magnitude = -np.asarray(samples, dtype=np.float64).reshape(-1)
    if magnitude.shape[0] < 3:
        raise ValueError(f"refractory kernel has {magnitude.shape[0]} samples, expected at least 3")
    peak = int(np.argmax(magnitude))
    # An alpha kernel with tau > 1 step rises after k = 1; a first-order kernel peaks at k = 1.
    # Both fits are tried at the tie (tau <= 1 step) and the closer one wins.
    candidates = []
    for recover in (recover_alpha_kernel, recover_first_order_kernel):
        try:
            candidates.append(recover(-magnitude))
        except ValueError:
            continue
    if not candidates:
        raise ValueError("refractory kernel fits neither the alpha nor the first-order form")
    if peak > 1:
        candidates = [candidate for candidate in candidates if candidate.form == "alpha"] or candidates
    return min(candidates, key=lambda candidate: candidate.max_error)


def _load_state_dict(path: Path) -> dict:
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # torch raises several types for corrupt or foreign files
        raise SlayerImportError(path, f"cannot be read as a PyTorch checkpoint without unpickling objects ({error})")
    for key in ("state_dict", "model_state_dict"):
        if isinstance(content, dict) and isinstance(content.get(key), dict):
            content = content[key]
    if not isinstance(content, dict):
        raise SlayerImportError(path, f"expected a state_dict (a dict of tensors), got {type(content).__name__}")
    # Checkpoints saved from nn.DataParallel prefix every key with "module.".
    return {key.removeprefix("module."): value for key, value in content.items()}


def convert_slayer_checkpoint(path, *, source_bin_ms: float = 1.0, weight_scale: float = 1.0,
                              thresholds=None) -> tuple:
    """Build a SpikeMSNetwork from a released SpikeMS checkpoint.

    Returns (network, report) where report lists the recovered constants per layer.
    """
    path = Path(path)
    if not source_bin_ms > 0:
        raise ValueError(f"source_bin_ms = {source_bin_ms!r} is invalid: expected a number > 0")
    thresholds = thresholds or [config.threshold for config in RELEASED_NEURON_CONFIGS]
    if len(thresholds) != len(LAYER_NAMES):
        raise ValueError(f"expected {len(LAYER_NAMES)} thresholds, got {len(thresholds)}")
    state = _load_state_dict(path)

    missing = [key for key in SLAYER_WEIGHT_KEYS.values() if key not in state]
    missing += [
        f"slayer_conv{index}.{kernel}"
        for index in range(1, 7)
        for kernel in ("srmKernel", "refKernel")
        if f"slayer_conv{index}.{kernel}" not in state
    ]
    if missing:
        raise SlayerImportError(path, f"missing entries {missing}; present: {sorted(state)[:20]}")

    reference = SpikeMSNetwork()
    configs, tensors, report = [], {}, []
    for index, (name, released) in enumerate(zip(LAYER_NAMES, RELEASED_NEURON_CONFIGS), start=1):
        weight = state[SLAYER_WEIGHT_KEYS[name]]
        expected_shape = tuple(getattr(reference, name).weight.shape)
        if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != expected_shape + (1,):
            shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
            raise SlayerImportError(
                path, f"{SLAYER_WEIGHT_KEYS[name]} has shape {shape}, expected {expected_shape + (1,)}"
            )
        tensors[f"{name}.weight"] = weight[..., 0].to(torch.float32) * weight_scale

        try:
            srm = recover_alpha_kernel(state[f"slayer_conv{index}.srmKernel"].detach().cpu().numpy())
            refractory = recover_refractory_kernel(state[f"slayer_conv{index}.refKernel"].detach().cpu().numpy())
        except ValueError as error:
            raise SlayerImportError(path, f"layer {name}: {error}") from error
        threshold = float(thresholds[index - 1])
        config = dataclasses.replace(
            released,
            threshold=threshold,
            tau_s_ms=srm.tau_steps * source_bin_ms,
            tau_r_ms=refractory.tau_steps * source_bin_ms,
            refractory_form=refractory.form,
            scale_ref=abs(refractory.amplitude) / threshold,
            bin_ms=1.0,
        )
        configs.append(config)
        report.append(
            {
                "layer": name,
                "tau_s_ms": config.tau_s_ms,
                "tau_r_ms": config.tau_r_ms,
                "refractory_form": config.refractory_form,
                "scale_ref": config.scale_ref,
                "srm_fit_error": srm.max_error,
                "refractory_fit_error": refractory.max_error,
            }
        )
        LOG.info(
            "%s: tau_s %.3f ms, tau_r %.3f ms (%s refractory, scale_ref %.3f)",
            name, config.tau_s_ms, config.tau_r_ms, config.refractory_form, config.scale_ref,
        )

    network = SpikeMSNetwork(tuple(configs))
    network.load_state_dict(tensors)
    return network, report
