"""Data-driven scaling of initial weights so that every layer spikes before training starts.

With sparse event input (well under 1 % of inputs spike per bin) and weights of
zero mean, the potentials of deep layers rarely reach threshold: those layers
stay silent, pass no spikes on, and the surrogate gradient cannot revive them.
Layer by layer, from the input side, each layer's weights are multiplied by the
gain that brings its firing rate on a sample batch to a target rate.
"""

import logging
import math

import torch

from spikems_ros.snn.network import SpikeMSNetwork

LOG = logging.getLogger(__name__)


@torch.no_grad()
def calibrate_weight_scales(
    network: SpikeMSNetwork,
    sample_spikes: torch.Tensor,
    target_rates: tuple,
    search_steps: int = 14,
    min_gain: float = 0.05,
    max_gain: float = 50.0,
) -> list:
    """Scale each layer's weights so its spike rate on ``sample_spikes`` (B, 2, H, W, T) is near its target.

    Returns the gain applied per layer. The search is a bisection on log(gain),
    so the rate reached is within a few percent of the target when the target
    is reachable within [min_gain, max_gain] (firing rate grows with the gain).
    """
    if len(target_rates) != len(network.layers):
        raise ValueError(f"expected {len(network.layers)} target rates, got {len(target_rates)}")

    gains = []
    for index, (layer, target) in enumerate(zip(network.layers, target_rates)):
        original = layer.weight.detach().clone()

        def rate_at(gain: float) -> float:
            layer.weight.copy_(original * gain)
            outputs = network.forward_all_layers(sample_spikes)
            return outputs[index + 1].mean().item()

        low, high = math.log(min_gain), math.log(max_gain)
        for _ in range(search_steps):
            middle = (low + high) / 2
            if rate_at(math.exp(middle)) < target:
                low = middle
            else:
                high = middle
        gain = math.exp((low + high) / 2)
        rate = rate_at(gain)
        gains.append(gain)
        LOG.info("initial weights of %s scaled by %.3f: spike rate %.4f (target %.4f)", layer.geometry.name, gain,
                 rate, target)
    return gains
