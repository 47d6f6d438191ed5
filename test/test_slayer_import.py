"""Conversion of released SpikeMS/SLAYER checkpoints, on a checkpoint written in that layout."""

import json
import math

import numpy as np
import pytest
import torch

from spikems_ros.cli import main
from spikems_ros.snn.neuron import RELEASED_NEURON_CONFIGS
from spikems_ros.snn.slayer_import import (
    SlayerImportError,
    convert_slayer_checkpoint,
    recover_alpha_kernel,
    recover_refractory_kernel,
)
from spikems_ros.snn.weights import load_network

WEIGHT_SHAPES = {
    "conv1.weight": (16, 2, 3, 3, 1),
    "conv2.weight": (32, 16, 3, 3, 1),
    "conv3.weight": (64, 32, 3, 3, 1),
    "deconv4.0.weight": (64, 32, 3, 3, 1),
    "deconv5.0.weight": (32, 16, 3, 3, 1),
    "deconv6.0.weight": (16, 2, 3, 3, 1),
}
TAU_S_STEPS = (2.0, 2.0, 4.0, 4.0, 2.0, 2.0)
TAU_R_STEPS = (1.0, 1.0, 3.0, 3.0, 1.0, 1.0)


def srm_samples(tau, length=40):
    steps = np.arange(length, dtype=np.float64)
    return (steps / tau) * np.exp(1 - steps / tau)


def first_order_refractory(threshold, tau, scale_ref=2.0, length=40):
    steps = np.arange(length, dtype=np.float64)
    return np.where(steps >= 1, -scale_ref * threshold * np.exp(-steps / tau), 0.0)


def alpha_refractory(threshold, tau, scale_ref=2.0, length=40):
    steps = np.arange(length, dtype=np.float64)
    return -scale_ref * threshold * (steps / tau) * np.exp(1 - steps / tau)


def write_checkpoint(path, refractory="first_order", extra=None):
    generator = torch.Generator().manual_seed(0)
    state = {key: torch.randn(shape, generator=generator) * 0.1 for key, shape in WEIGHT_SHAPES.items()}
    for index in range(6):
        threshold = RELEASED_NEURON_CONFIGS[index].threshold
        state[f"slayer_conv{index + 1}.srmKernel"] = torch.tensor(srm_samples(TAU_S_STEPS[index]), dtype=torch.float32)
        make_refractory = first_order_refractory if refractory == "first_order" else alpha_refractory
        state[f"slayer_conv{index + 1}.refKernel"] = torch.tensor(
            make_refractory(threshold, TAU_R_STEPS[index]), dtype=torch.float32
        ).reshape(1, 1, 1, 1, -1)
    state.update(extra or {})
    torch.save(state, path)
    return state


@pytest.mark.parametrize("tau", [0.8, 1.0, 2.0, 3.5, 4.0, 7.0])
def test_recover_alpha_kernel(tau):
    recovered = recover_alpha_kernel(srm_samples(tau))
    assert recovered.tau_steps == pytest.approx(tau, rel=1e-9)
    assert recovered.amplitude == pytest.approx(1.0, rel=1e-9)


@pytest.mark.parametrize("tau", [1.0, 3.0])
def test_recover_first_order_refractory(tau):
    recovered = recover_refractory_kernel(first_order_refractory(0.22, tau))
    assert recovered.form == "first_order"
    assert recovered.tau_steps == pytest.approx(tau, rel=1e-9)
    assert recovered.amplitude == pytest.approx(0.44, rel=1e-9)


@pytest.mark.parametrize("tau", [1.5, 3.0])
def test_recover_alpha_refractory(tau):
    recovered = recover_refractory_kernel(alpha_refractory(0.24, tau))
    assert recovered.form == "alpha"
    assert recovered.tau_steps == pytest.approx(tau, rel=1e-9)
    assert recovered.amplitude == pytest.approx(-0.48, rel=1e-9)


def test_convert_checkpoint_recovers_constants(tmp_path):
    path = tmp_path / "spikems_released.pt"
    state = write_checkpoint(path)

    network, report = convert_slayer_checkpoint(path)

    for index, layer in enumerate(network.layers):
        config = network.neuron_configs[index]
        assert config.tau_s_ms == pytest.approx(TAU_S_STEPS[index], rel=1e-5)
        assert config.tau_r_ms == pytest.approx(TAU_R_STEPS[index], rel=1e-5)
        assert config.refractory_form == "first_order"
        assert config.scale_ref == pytest.approx(2.0, rel=1e-5)
    torch.testing.assert_close(network.conv1.weight, state["conv1.weight"][..., 0])
    torch.testing.assert_close(network.deconv4.weight, state["deconv4.0.weight"][..., 0])
    assert [entry["layer"] for entry in report] == ["conv1", "conv2", "conv3", "deconv4", "deconv5", "deconv6"]


def test_convert_checkpoint_scales_time(tmp_path):
    path = tmp_path / "released.pt"
    write_checkpoint(path, refractory="alpha")

    network, _ = convert_slayer_checkpoint(path, source_bin_ms=0.2)

    assert network.neuron_configs[2].tau_s_ms == pytest.approx(0.8, rel=1e-5)
    assert network.neuron_configs[2].refractory_form == "alpha"


def test_import_command_writes_loadable_weights(tmp_path, capsys):
    checkpoint = tmp_path / "released.pt"
    write_checkpoint(checkpoint, extra={"module.unused": torch.zeros(1)})
    output = tmp_path / "imported.pt"

    assert main(["import-slayer", str(checkpoint), "--output", str(output)]) == 0

    network = load_network(output)
    assert math.isclose(network.neuron_configs[0].tau_s_ms, 2.0, rel_tol=1e-5)
    printed = json.loads(capsys.readouterr().out)
    assert printed["output"] == str(output)
    assert main(["import-slayer", str(checkpoint), "--output", str(output)]) == 2


def test_convert_rejects_missing_kernel(tmp_path):
    path = tmp_path / "broken.pt"
    state = write_checkpoint(path)
    del state["slayer_conv3.refKernel"]
    torch.save(state, path)

    with pytest.raises(SlayerImportError, match="slayer_conv3.refKernel"):
        convert_slayer_checkpoint(path)


def test_convert_rejects_wrong_shape(tmp_path):
    path = tmp_path / "broken.pt"
    state = write_checkpoint(path)
    state["conv2.weight"] = torch.zeros(32, 16, 5, 5, 1)
    torch.save(state, path)

    with pytest.raises(SlayerImportError, match="conv2.weight"):
        convert_slayer_checkpoint(path)


def test_convert_rejects_pickled_objects(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"model": object}, path)

    with pytest.raises(SlayerImportError, match="unpickling"):
        convert_slayer_checkpoint(path)
