"""Spike Response Model (SRM) neurons as pure functions over explicit state.

Tensor layout: one time step is ``(batch, channel, height, width)``; a whole
window adds time as the last dimension, ``(batch, channel, height, width, time)``.

Membrane potential of a neuron at step n::

    u[n] = sum_j w_j (eps * s_j)[n] + (nu * s)[n]        spike s[n] = 1 when u[n] >= theta

with the alpha spike response kernel eps(t) = (t/tau_s) exp(1 - t/tau_s) H(t) and a
refractory kernel nu driven by the neuron's own spikes. Both alpha kernels run as
two cascaded first-order filters with decay a = exp(-bin/tau), so a window and a
stream of single steps compute the same numbers in the same order::

    y2 <- a*y2 + a*y1        (reads y1 before this step's input)
    y1 <- a*y1 + x[n]
    out[n] = (e*bin/tau) * y2

An impulse at step 0 gives y2[k] = k a^k, hence out[k] = (k bin/tau) exp(1 - k bin/tau):
the sampled kernel, with value 0 at k = 0, so every layer adds one step of delay.
Unlike SLAYER, which truncates the kernel, the recurrence keeps the whole tail.
"""

import dataclasses
import math
from typing import NamedTuple

import torch
from torch import Tensor

REFRACTORY_FORMS = ("alpha", "first_order")


@dataclasses.dataclass(frozen=True)
class NeuronConfig:
    """Parameters of one layer of SRM neurons.

    The defaults are those of the first layer (conv1). ``RELEASED_NEURON_CONFIGS``
    holds all six layers and explains how the released values map onto 1 ms bins.
    """

    # Firing threshold theta, in the units of the weighted PSP sum.
    threshold: float = 0.22
    # Time constant of the alpha spike response kernel eps, whose peak is at t = tau_s_ms.
    tau_s_ms: float = 2.0
    # Time constant of the refractory kernel nu.
    tau_r_ms: float = 1.0
    # "alpha": nu(t) = -scale_ref*theta*(t/tau_r)*exp(1 - t/tau_r)*H(t), the SLAYER form.
    # "first_order": nu(k) = -scale_ref*theta*exp(-k*bin/tau_r) for k >= 1 step after
    # the spike, the form of the released SpikeMS code.
    refractory_form: str = "alpha"
    # Refractory amplitude in units of the threshold. SLAYER's alpha form uses 2.
    scale_ref: float = 2.0
    # Width of the surrogate gradient density in units of the threshold.
    tau_rho: float = 0.3
    # Height scale of the surrogate gradient density (its integral is 2*scale_rho).
    scale_rho: float = 0.20
    # Simulation time step at which every kernel above is sampled.
    bin_ms: float = 1.0
    # Largest learnable axonal delay per output channel, in whole steps. 0 disables delays.
    max_delay_steps: int = 0

    def __post_init__(self) -> None:
        for name in ("threshold", "tau_s_ms", "tau_r_ms", "tau_rho", "scale_rho", "bin_ms"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"NeuronConfig.{name} = {value!r} is invalid: expected a number > 0")
        if not isinstance(self.scale_ref, (int, float)) or isinstance(self.scale_ref, bool) or not self.scale_ref >= 0:
            raise ValueError(f"NeuronConfig.scale_ref = {self.scale_ref!r} is invalid: expected a number >= 0")
        if self.refractory_form not in REFRACTORY_FORMS:
            raise ValueError(
                f"NeuronConfig.refractory_form = {self.refractory_form!r} is invalid: "
                f"expected one of {REFRACTORY_FORMS}"
            )
        if (
            not isinstance(self.max_delay_steps, int)
            or isinstance(self.max_delay_steps, bool)
            or self.max_delay_steps < 0
        ):
            raise ValueError(
                f"NeuronConfig.max_delay_steps = {self.max_delay_steps!r} is invalid: expected an integer >= 0"
            )

    @property
    def psp_decay(self) -> float:
        """Per-step decay a = exp(-bin/tau_s) of both PSP filter stages."""
        return math.exp(-self.bin_ms / self.tau_s_ms)

    @property
    def psp_gain(self) -> float:
        """Factor e*bin/tau_s that turns the second PSP stage into eps sampled at the bins."""
        return math.e * self.bin_ms / self.tau_s_ms

    @property
    def refractory_decay(self) -> float:
        """Per-step decay exp(-bin/tau_r) of the refractory filter stages."""
        return math.exp(-self.bin_ms / self.tau_r_ms)

    @property
    def refractory_gain(self) -> float:
        """Factor applied to the refractory filter output, negative because nu inhibits."""
        amplitude = -self.scale_ref * self.threshold
        if self.refractory_form == "alpha":
            return amplitude * math.e * self.bin_ms / self.tau_r_ms
        return amplitude


# Released SpikeMS per-layer values (conv1, conv2, conv3, deconv4, deconv5, deconv6).
# The released code ran 0.2 ms bins, and its time constants (tau_s 2, 2, 4, 4, 2, 2 and
# tau_r 1, 1, 3, 3, 1, 1) count simulation steps. Here one step is 1 ms and the same
# numbers are kept as milliseconds, so every kernel has the same shape in steps as in
# the released network. The area of eps in steps (about 5.3 steps for tau_s = 2) sets
# how many input spikes reach the threshold, so keeping it keeps the released
# thresholds and surrogate widths in balance with the weights. Copying the 0.4 ms real
# time constants instead would leave eps[1] = 0.56, eps[2] = 0.09 at 1 ms bins: almost
# no integration across bins. The refractory form is the SLAYER alpha form of the
# method description; set refractory_form="first_order" for the released code's form.
# NOTE: these values were tuned for 0.2 ms bins and have not been retuned for 1 ms.
RELEASED_NEURON_CONFIGS = tuple(
    NeuronConfig(threshold=theta, tau_s_ms=tau_s, tau_r_ms=tau_r, scale_rho=scale_rho)
    for theta, tau_s, tau_r, scale_rho in (
        (0.22, 2.0, 1.0, 0.20),
        (0.22, 2.0, 1.0, 0.30),
        (0.24, 4.0, 3.0, 0.30),
        (0.24, 4.0, 3.0, 0.25),
        (0.22, 2.0, 1.0, 0.25),
        (0.22, 2.0, 1.0, 0.22),
    )
)


class AlphaFilterState(NamedTuple):
    """The two cascaded first-order stages of an alpha filter, each shaped like the filtered signal."""

    y1: Tensor
    y2: Tensor


class SrmState(NamedTuple):
    """State of a layer of SRM neurons, every tensor shaped (batch, channel, height, width)."""

    # Alpha filter of the synaptic input, whose scaled second stage is the PSP.
    psp: AlphaFilterState
    # Filter stages driven by the neuron's own spikes. The first-order refractory form
    # reads only y1 and leaves y2 at zero.
    refractory: AlphaFilterState


def zero_alpha_filter_state(like: Tensor) -> AlphaFilterState:
    """Return a filter state at rest, shaped, typed and placed like ``like``."""
    return AlphaFilterState(torch.zeros_like(like), torch.zeros_like(like))


def zero_srm_state(like: Tensor) -> SrmState:
    """Return neurons at rest, one per element of ``like`` (batch, channel, height, width)."""
    return SrmState(zero_alpha_filter_state(like), zero_alpha_filter_state(like))


def _advance_second_stage(state: AlphaFilterState, decay: float) -> Tensor:
    # Reads y1 before the current input is added, which delays the kernel by one step.
    return decay * state.y2 + decay * state.y1


def _advance_first_stage(y1: Tensor, current_input: Tensor, decay: float) -> Tensor:
    return decay * y1 + current_input


def alpha_filter_step(state: AlphaFilterState, current_input: Tensor, decay: float) -> AlphaFilterState:
    """Advance an alpha filter by one step. The filter output is gain * new ``y2``."""
    y2 = _advance_second_stage(state, decay)
    y1 = _advance_first_stage(state.y1, current_input, decay)
    return AlphaFilterState(y1, y2)


def alpha_filter(signal: Tensor, tau_ms: float, bin_ms: float) -> Tensor:
    """Filter ``signal`` (..., time) with the sampled alpha kernel, starting at rest.

    Returns a tensor shaped like ``signal``. Gradients flow through the filter, so the
    spike-train loss uses this function on both the prediction and the target.
    """
    if signal.dim() < 1 or signal.shape[-1] == 0:
        raise ValueError(f"alpha_filter needs a signal with a time dimension last, got shape {tuple(signal.shape)}")
    decay = math.exp(-bin_ms / tau_ms)
    gain = math.e * bin_ms / tau_ms

    state = zero_alpha_filter_state(signal[..., 0])
    outputs = []
    for step in range(signal.shape[-1]):
        state = alpha_filter_step(state, signal[..., step], decay)
        outputs.append(gain * state.y2)
    return torch.stack(outputs, dim=-1)  # (..., time)


def surrogate_density(potential: Tensor, threshold: float, tau_rho: float, scale_rho: float) -> Tensor:
    """Return the SLAYER surrogate ds/du = scale_rho/(tau_rho*theta) * exp(-|u - theta|/(tau_rho*theta))."""
    width = tau_rho * threshold
    return (scale_rho / width) * torch.exp(-(potential - threshold).abs() / width)


class _SpikeWithSurrogate(torch.autograd.Function):
    """Heaviside step u >= theta forward, SLAYER surrogate density backward."""

    @staticmethod
    def forward(ctx, potential: Tensor, threshold: float, tau_rho: float, scale_rho: float) -> Tensor:
        ctx.save_for_backward(potential)
        ctx.threshold = threshold
        ctx.tau_rho = tau_rho
        ctx.scale_rho = scale_rho
        return (potential >= threshold).to(potential.dtype)

    @staticmethod
    def backward(ctx, grad_spikes: Tensor):
        (potential,) = ctx.saved_tensors
        density = surrogate_density(potential, ctx.threshold, ctx.tau_rho, ctx.scale_rho)
        return grad_spikes * density, None, None, None


def spike(potential: Tensor, threshold: float, tau_rho: float, scale_rho: float) -> Tensor:
    """Return binary spikes (1.0 where ``potential >= threshold``) with a surrogate gradient."""
    return _SpikeWithSurrogate.apply(potential, threshold, tau_rho, scale_rho)


def srm_step(synaptic_input: Tensor, state: SrmState, config: NeuronConfig) -> tuple[Tensor, Tensor, SrmState]:
    """Advance a layer of SRM neurons by one step.

    ``synaptic_input`` is the weighted sum of the presynaptic spikes of this step,
    sum_j w_j s_j[n], shaped (batch, channel, height, width) like every state tensor.
    Filtering after the weighted sum equals filtering every presynaptic train first,
    because filter and sum are linear. Returns (spikes, membrane potential, new state).
    Gradients reach the input through the PSP filter and the surrogate. As in SLAYER,
    none flow through the refractory path, which receives the spikes detached.
    """
    psp_state = alpha_filter_step(state.psp, synaptic_input, config.psp_decay)
    psp = config.psp_gain * psp_state.y2

    # The refractory term of step n depends only on spikes before n, because nu(0) = 0.
    refractory_decay = config.refractory_decay
    if config.refractory_form == "alpha":
        refractory_y2 = _advance_second_stage(state.refractory, refractory_decay)
        refractory = config.refractory_gain * refractory_y2
    else:
        refractory_y2 = state.refractory.y2
        refractory = config.refractory_gain * (refractory_decay * state.refractory.y1)
    potential = psp + refractory

    spikes = spike(potential, config.threshold, config.tau_rho, config.scale_rho)

    refractory_y1 = _advance_first_stage(state.refractory.y1, spikes.detach(), refractory_decay)
    new_state = SrmState(psp_state, AlphaFilterState(refractory_y1, refractory_y2))
    return spikes, potential, new_state


def srm_window(synaptic_input: Tensor, state: SrmState, config: NeuronConfig) -> tuple[Tensor, SrmState]:
    """Run ``srm_step`` over every step of ``synaptic_input`` (batch, channel, height, width, time).

    Returns the spikes, shaped like the input, and the state after the last step.
    """
    spikes_per_step = []
    for step in range(synaptic_input.shape[-1]):
        spikes, _, state = srm_step(synaptic_input[..., step], state, config)
        spikes_per_step.append(spikes)
    return torch.stack(spikes_per_step, dim=-1), state  # (batch, channel, height, width, time)


def sample_srm_kernel(tau_s_ms: float, bin_ms: float, length: int) -> Tensor:
    """Return eps(k*bin) = (k bin/tau_s) exp(1 - k bin/tau_s) for k = 0..length-1 in float64."""
    if length < 0:
        raise ValueError(f"kernel length {length} is invalid: expected a count >= 0")
    time_ms = torch.arange(length, dtype=torch.float64) * bin_ms
    return (time_ms / tau_s_ms) * torch.exp(1.0 - time_ms / tau_s_ms)  # (length,)


def sample_refractory_kernel(
    threshold: float,
    tau_r_ms: float,
    bin_ms: float,
    length: int,
    refractory_form: str = "alpha",
    scale_ref: float = 2.0,
) -> Tensor:
    """Return the refractory kernel nu at k = 0..length-1 steps after a spike, in float64.

    Both forms are 0 at k = 0: a spike first lowers the potential one step later.
    """
    if length < 0:
        raise ValueError(f"kernel length {length} is invalid: expected a count >= 0")
    if refractory_form not in REFRACTORY_FORMS:
        raise ValueError(f"refractory_form {refractory_form!r} is invalid: expected one of {REFRACTORY_FORMS}")
    steps = torch.arange(length, dtype=torch.float64)
    time_ms = steps * bin_ms
    if refractory_form == "alpha":
        return -scale_ref * threshold * (time_ms / tau_r_ms) * torch.exp(1.0 - time_ms / tau_r_ms)
    kernel = -scale_ref * threshold * torch.exp(-time_ms / tau_r_ms)
    return torch.where(steps >= 1, kernel, torch.zeros_like(kernel))  # (length,)


def rounded_delay_steps(delay_steps: Tensor, max_delay_steps: int) -> Tensor:
    """Round real per-channel delays to whole steps in [0, max_delay_steps] (int64)."""
    return delay_steps.detach().clamp(0, max_delay_steps).round().to(torch.int64)


def delay_window(spikes: Tensor, history: Tensor, delay_steps: Tensor) -> tuple[Tensor, Tensor]:
    """Delay each channel of ``spikes`` (batch, channel, height, width, time) by whole steps.

    ``history`` (batch, channel, height, width, max_delay) contains the last spikes before
    this window, oldest first, so consecutive windows and single steps join seamlessly.
    ``delay_steps`` (channel,) is a real parameter: the forward pass rounds it into
    [0, max_delay]. The backward pass uses a straight-through estimate of
    d x(t - delay)/d delay = -x'(t - delay), with the backward difference
    out[t] - out[t-1] of the delayed train as x'. The raw parameter receives this
    gradient even outside [0, max_delay], so it can move back into range.
    Returns the delayed spikes and the new history.
    """
    max_delay = history.shape[-1]
    window_steps = spikes.shape[-1]
    channels = spikes.shape[1]
    padded = torch.cat([history, spikes], dim=-1)  # (batch, channel, height, width, max_delay + time)

    whole_steps = rounded_delay_steps(delay_steps, max_delay)  # (channel,)
    source_index = max_delay + torch.arange(window_steps, device=spikes.device) - whole_steps[:, None]  # (channel, time)
    source_index = source_index.view(1, channels, 1, 1, window_steps).expand_as(spikes)
    delayed = padded.gather(-1, source_index)  # (batch, channel, height, width, time)

    if delay_steps.requires_grad:
        previous = torch.cat([torch.zeros_like(delayed[..., :1]), delayed[..., :-1]], dim=-1)
        slope = (delayed - previous).detach()
        # The added term is exactly zero in the forward pass and carries -slope backward.
        offset = (delay_steps - delay_steps.detach()).view(1, channels, 1, 1, 1)
        delayed = delayed - offset * slope

    new_history = padded[..., padded.shape[-1] - max_delay :]
    return delayed, new_history
