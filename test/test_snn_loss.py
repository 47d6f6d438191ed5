"""SpikeMS loss terms against hand-computed values."""

import math

import pytest
import torch

from spikems_ros.snn.loss import (
    LossConfig,
    count_bce_loss,
    count_logits,
    spikems_loss,
    target_spikes,
    van_rossum_loss,
)

UNIT_TAU = LossConfig(van_rossum_tau_ms=1.0, bin_ms=1.0)


def test_identical_trains_have_zero_spike_loss():
    generator = torch.Generator().manual_seed(0)
    spikes = (torch.rand(2, 2, 5, 6, 10, generator=generator) < 0.3).float()
    assert van_rossum_loss(spikes, spikes.clone()).item() == 0.0


def test_lone_spike_hand_computed():
    # tau = bin = 1: the filtered spike is [0, 1, 2/e], so the loss of that neuron is
    # (bin/tau) * (1 + 4/e^2). The other polarity channel is silent, so the mean over
    # the two neurons halves it.
    output = torch.zeros(1, 2, 1, 1, 3, dtype=torch.float64)
    output[0, 0, 0, 0, 0] = 1.0
    loss = van_rossum_loss(output, torch.zeros_like(output), UNIT_TAU)
    assert loss.item() == pytest.approx((1.0 + 4.0 / math.e**2) / 2, rel=1e-12)


def test_lone_spike_approaches_continuous_value():
    # For tau >> bin the sum tends to (1/tau) * integral of eps^2 = e^2/4.
    output = torch.zeros(1, 2, 1, 1, 600, dtype=torch.float64)
    output[0, :, 0, 0, 0] = 1.0
    config = LossConfig(van_rossum_tau_ms=40.0, bin_ms=1.0)
    loss = van_rossum_loss(output, torch.zeros_like(output), config)
    assert loss.item() == pytest.approx(math.e**2 / 4, rel=1e-3)


def test_spike_loss_is_symmetric():
    output = torch.zeros(1, 2, 1, 1, 6, dtype=torch.float64)
    target = torch.zeros_like(output)
    output[..., 1] = 1.0
    target[..., 3] = 1.0
    assert van_rossum_loss(output, target).item() == pytest.approx(van_rossum_loss(target, output).item())


def test_count_logits_hand_computed():
    output = torch.zeros(1, 2, 1, 3, 4)
    output[0, 0, 0, 1, 2] = 1.0  # pixel 1: one spike
    output[0, :, 0, 2, 0] = 1.0  # pixel 2: two spikes, one per polarity
    logits = count_logits(output)
    assert logits.tolist() == [[[-2.0, 2.0, 6.0]]]


def test_count_bce_hand_computed():
    output = torch.zeros(1, 2, 1, 3, 4, dtype=torch.float64)
    output[0, 0, 0, 1, 2] = 1.0
    label = torch.tensor([[[0.0, 1.0, 1.0]]], dtype=torch.float64)
    # Pixel 0: count 0, background, -log(1 - sigmoid(-2)) = log(1 + e^-2).
    # Pixel 1: count 1, foreground, -log(sigmoid(2)) = log(1 + e^-2).
    # Pixel 2: count 0, foreground, -log(sigmoid(-2)) = log(1 + e^2).
    expected = (2 * math.log1p(math.exp(-2)) + math.log1p(math.exp(2))) / 3
    assert count_bce_loss(output, label).item() == pytest.approx(expected, rel=1e-12)


def test_count_bce_valid_pixels():
    output = torch.zeros(1, 2, 1, 3, 4, dtype=torch.float64)
    label = torch.tensor([[[0.0, 1.0, 1.0]]], dtype=torch.float64)
    valid = torch.tensor([[[1.0, 0.0, 0.0]]])
    assert count_bce_loss(output, label, valid).item() == pytest.approx(math.log1p(math.exp(-2)), rel=1e-12)
    no_pixel = torch.zeros_like(valid)
    assert count_bce_loss(output, label, no_pixel).item() == 0.0


def test_target_spikes_mask_pixels():
    spikes = torch.ones(1, 2, 2, 2, 3)
    mask = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    target = target_spikes(spikes, mask)
    assert target[0, :, 0, 0].sum().item() == 6.0
    assert target[0, :, 0, 1].sum().item() == 0.0
    assert target[0, :, 1, 0].sum().item() == 0.0
    assert target[0, :, 1, 1].sum().item() == 6.0


def test_total_combines_terms():
    generator = torch.Generator().manual_seed(1)
    input_spikes = (torch.rand(2, 2, 4, 5, 8, generator=generator) < 0.3).float()
    output = (torch.rand(2, 2, 4, 5, 8, generator=generator) < 0.2).float()
    mask = (torch.rand(2, 4, 5, generator=generator) < 0.5).float()
    config = LossConfig(spike_loss_weight=0.25)
    terms = spikems_loss(output, input_spikes, mask, config=config)
    assert terms.bce.item() == pytest.approx(count_bce_loss(output, mask, config=config).item())
    assert terms.spike.item() == pytest.approx(
        van_rossum_loss(output, target_spikes(input_spikes, mask), config).item()
    )
    assert terms.total.item() == pytest.approx(terms.bce.item() + 0.25 * terms.spike.item())


def test_output_matching_target_gives_zero_spike_term():
    input_spikes = torch.zeros(1, 2, 2, 2, 4)
    input_spikes[0, 1, 0, 0, 1] = 1.0
    input_spikes[0, 0, 1, 1, 2] = 1.0
    mask = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    output = target_spikes(input_spikes, mask)
    assert spikems_loss(output, input_spikes, mask).spike.item() == 0.0


def test_loss_gradient_reaches_output():
    output = torch.zeros(1, 2, 3, 3, 5, requires_grad=True)
    input_spikes = torch.ones(1, 2, 3, 3, 5)
    mask = torch.ones(1, 3, 3)
    spikems_loss(output, input_spikes, mask).total.backward()
    assert output.grad is not None
    assert (output.grad < 0).any()


@pytest.mark.parametrize(
    "output_shape, mask_shape, match",
    [
        ((1, 2, 3, 3), (1, 3, 3), r"output_spikes must be shaped \(batch, 2, height, width, time\), got \(1, 2, 3, 3\)"),
        ((1, 2, 3, 3, 4), (1, 3, 4), r"foreground_label must be shaped \(batch, height, width\) = \(1, 3, 3\)"),
        ((1, 1, 3, 3, 4), (1, 3, 3), r"got \(1, 1, 3, 3, 4\)"),
    ],
)
def test_loss_rejects_wrong_shapes(output_shape, mask_shape, match):
    with pytest.raises(ValueError, match=match):
        count_bce_loss(torch.zeros(output_shape), torch.zeros(mask_shape))


def test_van_rossum_rejects_shape_mismatch():
    with pytest.raises(ValueError, match="target must have the shape"):
        van_rossum_loss(torch.zeros(1, 2, 3, 3, 4), torch.zeros(1, 2, 3, 3, 5))


def test_loss_config_rejects_invalid():
    with pytest.raises(ValueError, match="count_gain"):
        LossConfig(count_gain=0.0)
    with pytest.raises(ValueError, match="spike_loss_weight"):
        LossConfig(spike_loss_weight=-1.0)
