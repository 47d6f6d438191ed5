"""SRM neuron maths against hand-computed kernels, spike times and the surrogate gradient."""

import math

import pytest
import torch

from spikems_ros.snn.neuron import (
    RELEASED_NEURON_CONFIGS,
    NeuronConfig,
    alpha_filter,
    delay_window,
    sample_refractory_kernel,
    sample_srm_kernel,
    spike,
    srm_step,
    surrogate_density,
    zero_srm_state,
)

# eps(k) = (k/2) exp(1 - k/2) for tau_s = 2 ms at 1 ms bins, k = 0..7.
EPS_TAU_2 = [
    0.0,
    0.8243606353500641,
    1.0,
    0.9097959895689501,
    0.7357588823428847,
    0.5578254003710745,
    0.4060058497098381,
    0.2872974951836458,
]


def impulse(length: int) -> torch.Tensor:
    signal = torch.zeros(length, dtype=torch.float64)
    signal[0] = 1.0
    return signal


def test_srm_kernel_golden_values():
    kernel = sample_srm_kernel(tau_s_ms=2.0, bin_ms=1.0, length=8)
    torch.testing.assert_close(kernel, torch.tensor(EPS_TAU_2, dtype=torch.float64), rtol=0, atol=1e-15)


def test_alpha_filter_impulse_equals_kernel():
    response = alpha_filter(impulse(8), tau_ms=2.0, bin_ms=1.0)
    torch.testing.assert_close(response, torch.tensor(EPS_TAU_2, dtype=torch.float64), rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("tau_ms, bin_ms", [(1.0, 1.0), (4.0, 1.0), (2.0, 0.2), (3.0, 0.5)])
def test_alpha_filter_matches_closed_form(tau_ms, bin_ms):
    length = 60
    response = alpha_filter(impulse(length), tau_ms=tau_ms, bin_ms=bin_ms)
    torch.testing.assert_close(response, sample_srm_kernel(tau_ms, bin_ms, length), rtol=1e-12, atol=1e-15)


def test_alpha_filter_is_zero_at_spike_step():
    response = alpha_filter(impulse(3), tau_ms=2.0, bin_ms=1.0)
    assert response[0].item() == 0.0
    assert response[1].item() > 0.0


def test_refractory_alpha_golden_values():
    kernel = sample_refractory_kernel(threshold=0.22, tau_r_ms=1.0, bin_ms=1.0, length=5, refractory_form="alpha")
    # -2 * 0.22 * k * exp(1 - k)
    expected = [0.0, -0.44, -0.3237339082308693, -0.17864257387232876, -0.08762524032744054]
    torch.testing.assert_close(kernel, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-15)


def test_refractory_first_order_golden_values():
    kernel = sample_refractory_kernel(
        threshold=0.22, tau_r_ms=1.0, bin_ms=1.0, length=5, refractory_form="first_order"
    )
    # -2 * 0.22 * exp(-k), starting one step after the spike.
    expected = [0.0, -0.16186695411543464, -0.05954752462410959, -0.021906310081860135, -0.008058881111043038]
    torch.testing.assert_close(kernel, torch.tensor(expected, dtype=torch.float64), rtol=0, atol=1e-15)


def run_single_neuron(config: NeuronConfig, synaptic_input: list[float]):
    state = zero_srm_state(torch.zeros(1, 1, 1, 1, dtype=torch.float64))
    spike_steps, potentials = [], []
    for step, value in enumerate(synaptic_input):
        current = torch.full((1, 1, 1, 1), value, dtype=torch.float64)
        spikes, potential, state = srm_step(current, state, config)
        potentials.append(potential.item())
        if spikes.item() == 1.0:
            spike_steps.append(step)
    return spike_steps, potentials


@pytest.mark.parametrize("refractory_form", ["alpha", "first_order"])
def test_refractory_recurrence_matches_kernel(refractory_form):
    # tau_s = 0.01 ms makes the PSP a one-step pulse: a huge input at step 0 gives
    # psp[1] = 1e50 * 100 e exp(-100), about 1e8, so the neuron spikes at step 1,
    # while psp[2] is below 1e-34. From step 2 on the potential is nu alone.
    config = NeuronConfig(
        threshold=0.5, tau_s_ms=0.01, tau_r_ms=3.0, refractory_form=refractory_form, scale_ref=2.0
    )
    synaptic_input = [1e50] + [0.0] * 12
    spike_steps, potentials = run_single_neuron(config, synaptic_input)
    assert spike_steps == [1]
    kernel = sample_refractory_kernel(0.5, 3.0, 1.0, len(synaptic_input) - 1, refractory_form, 2.0)
    torch.testing.assert_close(
        torch.tensor(potentials[2:], dtype=torch.float64), kernel[1:], rtol=1e-12, atol=1e-30
    )


def test_single_neuron_alpha_refractory_spike_steps():
    # Weight 0.8 times input spikes at steps 0, 3 and 4; tau_s = 2 ms, theta = 1.
    # Hand computation: u[n] = 0.8 * sum_m x[m] eps(n - m) + sum over own spikes of nu.
    config = NeuronConfig(threshold=1.0, tau_s_ms=2.0, tau_r_ms=1.0, refractory_form="alpha", scale_ref=2.0)
    synaptic_input = [0.8, 0.0, 0.0, 0.8, 0.8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    spike_steps, potentials = run_single_neuron(config, synaptic_input)
    expected_potentials = [
        0.0, 0.659489, 0.8, 0.727837, 1.248096, -0.094251, 0.381124, 0.73427, 0.795889, 0.696619, 0.54705, 0.403334
    ]
    assert spike_steps == [4]
    torch.testing.assert_close(
        torch.tensor(potentials, dtype=torch.float64), torch.tensor(expected_potentials, dtype=torch.float64), rtol=0, atol=1e-6
    )


def test_single_neuron_first_order_refractory_spike_steps():
    config = NeuronConfig(
        threshold=1.0, tau_s_ms=2.0, tau_r_ms=1.0, refractory_form="first_order", scale_ref=2.0
    )
    synaptic_input = [0.8, 0.0, 0.0, 0.8, 0.8, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    spike_steps, potentials = run_single_neuron(config, synaptic_input)
    expected_potentials = [
        0.0, 0.659489, 0.8, 0.727837, 1.248096, 1.16999, 0.846212, 1.176037, 0.322222, 0.558998, 0.509898, 0.394624
    ]
    assert spike_steps == [4, 5, 7]
    torch.testing.assert_close(
        torch.tensor(potentials, dtype=torch.float64), torch.tensor(expected_potentials, dtype=torch.float64), rtol=0, atol=1e-6
    )


def smoothed_step(potential: torch.Tensor, threshold: float, tau_rho: float, scale_rho: float) -> torch.Tensor:
    """Integral of the surrogate density from -inf, written out by hand."""
    width = tau_rho * threshold
    below = scale_rho * torch.exp((potential - threshold) / width)
    above = scale_rho * (2.0 - torch.exp(-(potential - threshold) / width))
    return torch.where(potential < threshold, below, above)


@pytest.mark.parametrize("threshold, tau_rho, scale_rho", [(0.22, 0.3, 0.2), (1.0, 0.5, 0.25), (0.24, 0.3, 0.3)])
def test_surrogate_gradient_matches_finite_difference(threshold, tau_rho, scale_rho):
    potential = torch.linspace(-0.5, 1.5, 41, dtype=torch.float64) * threshold * 2
    potential = potential[(potential - threshold).abs() > 1e-3].clone().requires_grad_(True)
    spike(potential, threshold, tau_rho, scale_rho).sum().backward()

    step_size = 1e-6
    numeric = (
        smoothed_step(potential.detach() + step_size, threshold, tau_rho, scale_rho)
        - smoothed_step(potential.detach() - step_size, threshold, tau_rho, scale_rho)
    ) / (2 * step_size)
    torch.testing.assert_close(potential.grad, numeric, rtol=1e-6, atol=1e-9)


def test_surrogate_peak_value():
    density = surrogate_density(torch.tensor([0.22], dtype=torch.float64), 0.22, 0.3, 0.2)
    assert density.item() == pytest.approx(0.2 / (0.3 * 0.22), rel=1e-12)


def test_spike_forward_is_binary_threshold():
    potential = torch.tensor([0.21, 0.22, 0.23, -1.0])
    spikes = spike(potential, 0.22, 0.3, 0.2)
    assert spikes.tolist() == [0.0, 1.0, 1.0, 0.0]
    assert spikes.dtype == potential.dtype


def test_no_gradient_through_refractory_path():
    config = NeuronConfig(threshold=0.5, tau_s_ms=2.0, tau_r_ms=2.0)
    state = zero_srm_state(torch.zeros(1, 1, 1, 1, dtype=torch.float64))
    first_input = torch.full((1, 1, 1, 1), 2.0, dtype=torch.float64, requires_grad=True)
    spikes, _, state = srm_step(first_input, state, config)
    _, _, state = srm_step(torch.zeros_like(first_input), state, config)
    assert not state.refractory.y1.requires_grad
    assert not state.refractory.y2.requires_grad
    assert state.psp.y2.requires_grad


def test_released_configs_values():
    assert [config.threshold for config in RELEASED_NEURON_CONFIGS] == [0.22, 0.22, 0.24, 0.24, 0.22, 0.22]
    assert [config.tau_s_ms for config in RELEASED_NEURON_CONFIGS] == [2, 2, 4, 4, 2, 2]
    assert [config.tau_r_ms for config in RELEASED_NEURON_CONFIGS] == [1, 1, 3, 3, 1, 1]
    assert [config.scale_rho for config in RELEASED_NEURON_CONFIGS] == [0.20, 0.30, 0.30, 0.25, 0.25, 0.22]
    assert all(config.scale_ref == 2.0 and config.tau_rho == 0.3 for config in RELEASED_NEURON_CONFIGS)


@pytest.mark.parametrize(
    "field, value",
    [
        ("threshold", 0.0),
        ("tau_s_ms", -1.0),
        ("bin_ms", 0.0),
        ("refractory_form", "exponential"),
        ("scale_ref", -1.0),
        ("max_delay_steps", -1),
        ("max_delay_steps", 1.5),
    ],
)
def test_neuron_config_rejects_invalid(field, value):
    with pytest.raises(ValueError, match=field):
        NeuronConfig(**{field: value})


def test_neuron_config_psp_constants():
    config = NeuronConfig(tau_s_ms=2.0, bin_ms=1.0)
    assert config.psp_decay == pytest.approx(math.exp(-0.5))
    assert config.psp_gain == pytest.approx(math.e / 2)


def test_delay_window_shifts_each_channel():
    spikes = torch.zeros(1, 2, 1, 1, 5)
    spikes[0, 0, 0, 0, 0] = 1.0
    spikes[0, 1, 0, 0, 1] = 1.0
    history = torch.zeros(1, 2, 1, 1, 3)
    delays = torch.tensor([2.0, 0.4])  # rounds to 2 and 0
    delayed, new_history = delay_window(spikes, history, delays)
    assert delayed[0, 0, 0, 0].tolist() == [0, 0, 1, 0, 0]
    assert delayed[0, 1, 0, 0].tolist() == [0, 1, 0, 0, 0]
    assert new_history.shape == (1, 2, 1, 1, 3)
    torch.testing.assert_close(new_history, spikes[..., 2:])


def test_delay_window_clamps_to_max():
    spikes = torch.zeros(1, 1, 1, 1, 6)
    spikes[..., 0] = 1.0
    delayed, _ = delay_window(spikes, torch.zeros(1, 1, 1, 1, 2), torch.tensor([7.0]))
    assert delayed[0, 0, 0, 0].tolist() == [0, 0, 1, 0, 0, 0]


def test_delay_window_straight_through_gradient():
    spikes = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0]).view(1, 1, 1, 1, 5)
    delays = torch.tensor([1.0], requires_grad=True)
    delayed, _ = delay_window(spikes, torch.zeros(1, 1, 1, 1, 2), delays)
    assert delayed.view(-1).tolist() == [0, 0, 1, 1, 0]
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]).view(1, 1, 1, 1, 5)
    (delayed * weights).sum().backward()
    # d out / d delay = -(out[t] - out[t-1]) = [0, 0, -1, 0, +1], weighted: -3 + 5.
    assert delays.grad.item() == pytest.approx(2.0)
