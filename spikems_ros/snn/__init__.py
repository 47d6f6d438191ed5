"""Spiking network core of SpikeMS: SRM neurons, the encoder-decoder network, loss,
weights files and synaptic-operation counting. Imports only torch."""

from spikems_ros.snn.energy import (
    LayerOperations,
    OperationsReport,
    count_ann_macs,
    count_network_operations,
    count_synaptic_ops,
    fan_out_map,
)
from spikems_ros.snn.loss import LossConfig, LossTerms, spikems_loss
from spikems_ros.snn.network import (
    ARCHITECTURE,
    CHANNELS,
    LAYER_NAMES,
    LayerStats,
    NetworkState,
    SpikeMSNetwork,
)
from spikems_ros.snn.neuron import RELEASED_NEURON_CONFIGS, NeuronConfig
from spikems_ros.snn.weights import WeightsError, WeightsFile, load_network, read_weights, save_weights

__all__ = [
    "ARCHITECTURE",
    "CHANNELS",
    "LAYER_NAMES",
    "RELEASED_NEURON_CONFIGS",
    "LayerOperations",
    "LayerStats",
    "LossConfig",
    "LossTerms",
    "NetworkState",
    "NeuronConfig",
    "OperationsReport",
    "SpikeMSNetwork",
    "WeightsError",
    "WeightsFile",
    "count_ann_macs",
    "count_network_operations",
    "count_synaptic_ops",
    "fan_out_map",
    "load_network",
    "read_weights",
    "save_weights",
    "spikems_loss",
]
