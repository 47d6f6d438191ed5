"""The SpikeMS architecture built from a peer library's neurons, for side-by-side timing.

snnTorch 1.0.0 (PyPI ``snntorch``) provides ``Synaptic`` neurons: a synaptic current
and a membrane potential, two cascaded first-order filters per neuron like the SRM
alpha kernel here, with reset by subtraction instead of the refractory kernel. The
peer network uses the same convolutions and weights, the PSP decay of each layer for
both of its decays and the layer's threshold, and is stepped one bin at a time, the
way snnTorch networks stream. Its spikes are not expected to equal ours: it measures
what the same amount of dense work costs in that library.
"""

import torch

from spikems_ros.snn.geometry import apply_weights
from spikems_ros.snn.network import SpikeMSNetwork, layer_output_sizes

PEER_NAME = "snntorch"


def peer_available() -> str | None:
    """Return the installed snnTorch version, or None when it is not installed."""
    try:
        import snntorch
    except ImportError:
        return None
    return snntorch.__version__


class SnnTorchSpikeMS:
    """The SpikeMS layers with snnTorch ``Synaptic`` neurons, stepped bin by bin on one stream."""

    def __init__(self, network: SpikeMSNetwork, height: int, width: int, device: str = "cpu"):
        import snntorch

        self.device = torch.device(device)
        self.weights = [layer.weight.detach().to(self.device) for layer in network.layers]
        self.geometries = network.geometries
        self.output_sizes = layer_output_sizes(height, width)
        self.neurons = [
            snntorch.Synaptic(alpha=config.psp_decay, beta=config.psp_decay, threshold=config.threshold,
                              reset_mechanism="subtract").to(self.device)
            for config in network.neuron_configs
        ]
        self.reset()

    def reset(self) -> None:
        """Put every neuron at rest."""
        self.states = [
            (torch.zeros(1, geometry.out_channels, *size, device=self.device),
             torch.zeros(1, geometry.out_channels, *size, device=self.device))
            for geometry, size in zip(self.geometries, self.output_sizes)
        ]

    @torch.no_grad()
    def step(self, frame: torch.Tensor) -> torch.Tensor:
        """Advance all layers by one bin of input spikes (1, 2, height, width); return the output spikes."""
        spikes = frame
        for index, (weight, geometry, size, neuron) in enumerate(
            zip(self.weights, self.geometries, self.output_sizes, self.neurons)
        ):
            current = apply_weights(spikes, weight, geometry, size)  # (1, out, h, w)
            synaptic, membrane = self.states[index]
            spikes, synaptic, membrane = neuron(current, synaptic, membrane)
            self.states[index] = (synaptic, membrane)
        return spikes
