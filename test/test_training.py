"""Training: configuration parsing, a learning regression run and data-parallel training with torchrun."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

from spikems_ros.training.config import (
    DataSplitConfig,
    OptimConfig,
    SurrogateConfig,
    TrainConfig,
    WindowConfig,
    config_from_dict,
    load_config,
)
from spikems_ros.training.data import build_sample, draw_sample_specs, load_split
from spikems_ros.training.loop import train

REPOSITORY_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(tmp_path, epochs=4, samples=48) -> TrainConfig:
    split = DataSplitConfig(dir=str(tmp_path / "data"), sequences=2, seconds=0.2, seed=5, width=64, height=48)
    return TrainConfig(
        train=split,
        validation=split,
        window=WindowConfig(crop_height=32, crop_width=32, warmup_bins=4, output_delay_bins=4),
        optim=OptimConfig(
            epochs=epochs, samples_per_epoch=samples, batch_size=8, learning_rate=3e-3, validation_windows=8, seed=0
        ),
        surrogate=SurrogateConfig(tau_rho=1.0, scale_rho=1.0),
        output_dir=str(tmp_path / "run"),
    )


def test_shipped_config_loads():
    config = load_config(os.path.join(REPOSITORY_ROOT, "config", "train_synthetic.yaml"))

    assert config.window.bin_us == 1000
    assert config.window.window_bins == 10
    assert config.train.seed != config.validation.seed


def test_config_rejects_unknown_key():
    with pytest.raises(ValueError, match="unknown keys"):
        config_from_dict({"optim": {"epochs": 1, "learning_rat": 0.1}})


def test_config_rejects_invalid_value():
    with pytest.raises(ValueError, match="window_bins"):
        config_from_dict({"window": {"window_bins": 0}})


def test_sample_shapes_and_labels(tmp_path):
    config = tiny_config(tmp_path)
    streams = load_split(config.train, config.window)
    specs = draw_sample_specs(streams, config.window, 4, seed=1, crop=True)

    sample = build_sample(streams, specs[0], config.window)

    bins = config.window.warmup_bins + config.window.window_bins + config.window.output_delay_bins
    assert sample["input"].shape == (2, 32, 32, bins)
    assert sample["label"].shape == (32, 32)
    # Foreground spikes are a subset of the input spikes, and labels a subset of event pixels.
    assert (sample["foreground_input"] <= sample["input"]).all()
    assert (sample["label"] <= sample["event_pixels"]).all()


@pytest.mark.slow
def test_training_lowers_loss(tmp_path):
    config = tiny_config(tmp_path, epochs=5)

    final = train(config, device_name="cpu")

    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 5
    checkpoint = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    initial_loss = checkpoint["history"][0]["validation_loss"]
    assert checkpoint["history"][0]["epoch"] == -1
    assert final["validation_loss"] <= 0.7 * initial_loss, (initial_loss, final["validation_loss"])
    assert (tmp_path / "run" / "weights.pt").is_file()


@pytest.mark.slow
def test_training_resume_continues(tmp_path):
    config = tiny_config(tmp_path, epochs=1, samples=8)
    train(config, device_name="cpu")

    train(dataclasses.replace(config, optim=dataclasses.replace(config.optim, epochs=2)), resume=True)

    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [entry["epoch"] for entry in history] == [0, 1]


def test_training_rejects_unavailable_cuda(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="cuda"):
        train(tiny_config(tmp_path), device_name="cuda")


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    config = tiny_config(tmp_path, epochs=1, samples=16)
    # Generate the data once so both ranks only read it.
    load_split(config.train, config.window)
    config_path = tmp_path / "config.yaml"
    import yaml

    config_path.write_text(yaml.safe_dump(dataclasses.asdict(config)))

    result = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            "-m", "spikems_ros.training", "--config", str(config_path), "--device", "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPOSITORY_ROOT,
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 1 of 2 joined the gloo process group" in result.stderr
    history = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(history) == 1


def test_split_from_another_generator_version_is_refused(tmp_path):
    from spikems_ros.simulation import GENERATOR_VERSION, SceneConfig, simulate_sequence, write_sequence

    config = tiny_config(tmp_path)
    sequence = simulate_sequence(SceneConfig(width=64, height=48, duration_s=0.01, seed=5), 0)
    stale = dataclasses.replace(sequence, meta={**sequence.meta, "generator_version": GENERATOR_VERSION - 1})
    folder = tmp_path / "data"
    folder.mkdir()
    write_sequence(folder / "seq_0000.npz", stale)

    with pytest.raises(ValueError, match=f"generator version {GENERATOR_VERSION - 1}.*delete"):
        load_split(config.train, config.window)


def write_tiny_config(tmp_path, model="snn"):
    import yaml

    config = dataclasses.replace(tiny_config(tmp_path, samples=8), model=model)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(dataclasses.asdict(config)))
    return path


def test_cli_refuses_earlier_run(tmp_path, caplog):
    from spikems_ros.cli import main

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"epoch": 0}\n')

    assert main(["train", "--config", str(write_tiny_config(tmp_path))]) == 2
    assert "contains an earlier run (metrics.jsonl); pass --resume to continue it, --force" in caplog.text
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == '{"epoch": 0}\n'
    assert not (tmp_path / "data").exists()


def test_force_deletes_only_run_files(tmp_path):
    from spikems_ros.training.cli import RUN_FILES, check_output_dir

    for name in (*RUN_FILES, "notes.txt"):
        (tmp_path / name).write_text("earlier")

    check_output_dir(tmp_path, "snn", resume=False, force=True)

    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]


def test_resume_keeps_earlier_run(tmp_path):
    from spikems_ros.training.cli import check_output_dir

    (tmp_path / "checkpoint.pt").write_text("earlier")
    check_output_dir(tmp_path, "snn", resume=True, force=False)
    assert (tmp_path / "checkpoint.pt").read_text() == "earlier"


def test_cli_checks_start_files_before_data(tmp_path, caplog):
    from spikems_ros.baselines.ann2d import Ann2dNetwork, save_ann2d_weights
    from spikems_ros.cli import main

    config_path = str(write_tiny_config(tmp_path))
    save_ann2d_weights(tmp_path / "ann.pt", Ann2dNetwork())

    assert main(["train", "--config", config_path, "--resume"]) == 2
    assert f"--resume: no checkpoint at {tmp_path / 'run' / 'checkpoint.pt'}" in caplog.text
    assert main(["train", "--config", config_path, "--initial-weights", str(tmp_path / "missing.pt")]) == 2
    assert f"--initial-weights {tmp_path / 'missing.pt'}: file not found" in caplog.text
    assert main(["train", "--config", config_path, "--initial-weights", str(tmp_path / "ann.pt")]) == 2
    assert "format is 'spikems-ann2d-weights'" in caplog.text
    # The data would be generated on first use; none of the rejected runs got that far.
    assert not (tmp_path / "data").exists()


def test_cli_missing_config_named(tmp_path, caplog):
    from spikems_ros.cli import main

    assert main(["train", "--config", str(tmp_path / "missing.yaml")]) == 2
    assert f"--config {tmp_path / 'missing.yaml'}: file not found" in caplog.text


@pytest.mark.slow
def test_cli_resume_of_finished_run_rejected(tmp_path, caplog):
    from spikems_ros.cli import main

    config_path = str(write_tiny_config(tmp_path))
    assert main(["train", "--config", config_path, "--epochs", "1"]) == 0

    assert main(["train", "--config", config_path, "--epochs", "1", "--resume"]) == 2
    assert "has completed 1 epochs and the configuration sets 1, so nothing is left to train" in caplog.text
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1


def test_split_with_another_seed_is_refused(tmp_path):
    config = tiny_config(tmp_path)
    load_split(config.train, config.window)
    other_seed = dataclasses.replace(config.train, seed=config.train.seed + 1)

    with pytest.raises(ValueError, match="seed = 5.*seed = 6"):
        load_split(other_seed, config.window)
