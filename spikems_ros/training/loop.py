"""SLAYER-style training of the SpikeMS network, on one process or data-parallel.

Run under ``torchrun`` the loop joins the process group that torchrun describes
(RANK, WORLD_SIZE, MASTER_ADDR in the environment): gloo on CPU, nccl on CUDA.
Every process draws its own share of the epoch's samples; DistributedDataParallel
averages the gradients. Only rank 0 writes checkpoints and logs metrics.
"""

import dataclasses
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from spikems_ros.snn.loss import LossConfig, LossTerms, count_logits, van_rossum_loss
from spikems_ros.snn.network import SpikeMSNetwork
from spikems_ros.snn.neuron import RELEASED_NEURON_CONFIGS
from spikems_ros.snn.weights import load_network, save_weights
from spikems_ros.training.calibration import calibrate_weight_scales
from spikems_ros.training.config import TrainConfig, config_to_dict
from spikems_ros.training.data import WindowDataset, draw_sample_specs, load_split

LOG = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "spikems-training-checkpoint"
CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class DistributedContext:
    """Rank, world size and device of this process in a (possibly single-process) training job."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_name: str) -> DistributedContext:
    """Join torchrun's process group when launched by it; otherwise run alone."""
    if device_name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but torch.cuda.is_available() is False; use --device cpu")
    if device_name not in ("cpu", "cuda"):
        raise ValueError(f"device {device_name!r} is invalid: expected 'cpu' or 'cuda'")

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistributedContext(0, 1, torch.device(device_name))

    backend = "nccl" if device_name == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    rank = dist.get_rank()
    if device_name == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    LOG.info("rank %d of %d joined the %s process group", rank, world_size, backend)
    return DistributedContext(rank, world_size, device)


def surrogate_neuron_configs(config: TrainConfig) -> tuple:
    """Return the released per-layer neuron configurations with the training surrogate applied."""
    overrides = {
        name: value for name, value in dataclasses.asdict(config.surrogate).items() if value is not None
    }
    return tuple(dataclasses.replace(neuron, **overrides) for neuron in RELEASED_NEURON_CONFIGS)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def event_pixel_iou(output_spikes: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Event-pixel IoU per sample: predicted pixels (any output spike) against labelled pixels.

    ``output_spikes`` (batch, 2, H, W, T), ``label`` (batch, H, W). A sample with
    neither predicted nor labelled pixels scores 1.
    """
    predicted = output_spikes.sum(dim=(1, 4)) > 0  # (batch, H, W)
    truth = label > 0
    intersection = (predicted & truth).sum(dim=(1, 2)).double()
    union = (predicted | truth).sum(dim=(1, 2)).double()
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


class AllLayerOutputs(torch.nn.Module):
    """The network with every layer's output as the forward result.

    DistributedDataParallel averages gradients only for computations that go
    through its own forward, so the per-layer outputs (for spike rates) must come
    out of forward rather than from a second method.
    """

    def __init__(self, network: SpikeMSNetwork):
        super().__init__()
        self.network = network

    def forward(self, spikes: torch.Tensor) -> list:
        return self.network.forward_all_layers(spikes)


def _score(model, batch: dict, config: TrainConfig, loss_config: LossConfig, device) -> tuple:
    """Run the model on a batch; return loss terms, IoU per sample and per-layer spike rates."""
    window = config.window
    input_spikes = batch["input"].to(device)  # (B, 2, H, W, T)
    layer_outputs = model(input_spikes)  # input, then each layer's (B, C, h, w, T)
    output = layer_outputs[-1]

    scored = slice(
        window.warmup_bins + window.output_delay_bins,
        window.warmup_bins + window.output_delay_bins + window.window_bins,
    )
    window_slice = slice(window.warmup_bins, window.warmup_bins + window.window_bins)
    label = batch["label"].to(device)  # (B, H, W)
    event_pixels = batch["event_pixels"].to(device)  # (B, H, W)
    scored_output = output[..., scored]  # (B, 2, H, W, window_bins)

    # L_bce over all pixels: event pixels weigh 1, empty pixels less (see OptimConfig).
    pixel_weights = event_pixels + config.optim.empty_pixel_weight * (1 - event_pixels)
    pixel_weights = pixel_weights * (1 + (config.optim.foreground_weight - 1) * label)
    per_pixel = F.binary_cross_entropy_with_logits(
        count_logits(scored_output, loss_config), label, reduction="none"
    )  # (B, H, W)
    bce = (per_pixel * pixel_weights).sum() / pixel_weights.sum().clamp(min=1.0)

    # L_spike against the foreground input spikes of the window (the input spikes
    # masked by the ground truth), compared with the delayed output.
    spike_term = van_rossum_loss(scored_output, batch["foreground_input"].to(device)[..., window_slice], loss_config)
    terms = LossTerms(bce + loss_config.spike_loss_weight * spike_term, bce, spike_term)
    iou = event_pixel_iou(output[..., scored].detach(), label)
    spike_rates = [layer.detach().mean().item() for layer in layer_outputs[1:]]
    return terms, iou, spike_rates


def _save_checkpoint(path: Path, network, optimizer, epoch: int, history: list, config: TrainConfig) -> None:
    """Write a resumable checkpoint made only of tensors and plain values (weights_only loadable)."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "epoch": epoch,
        "model_state": network.state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "history": history,
        "config_json": json.dumps(config_to_dict(config)),
    }
    temporary = path.with_suffix(path.suffix + ".partial")
    torch.save(state, temporary)
    temporary.replace(path)


def load_checkpoint(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or foreign files
        raise ValueError(f"{path}: not a readable training checkpoint ({error})") from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} file")
    if state.get("format_version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"{path}: checkpoint format version {state.get('format_version')!r} is not supported; "
            f"expected {CHECKPOINT_VERSION}"
        )
    return state


def train(config: TrainConfig, device_name: str = "cpu", resume: bool = False, initial_weights=None) -> dict:
    """Train the SpikeMS network; return the final metrics. Writes into config.output_dir."""
    context = setup_distributed(device_name)
    seed_everything(config.optim.seed + context.rank)
    output_dir = Path(config.output_dir)
    if context.is_main:
        output_dir.mkdir(parents=True, exist_ok=True)

    # Rank 0 generates missing data first; the others wait, then read it.
    if context.is_main:
        train_streams = load_split(config.train, config.window)
        validation_streams = load_split(config.validation, config.window)
    if context.world_size > 1:
        dist.barrier()
    if not context.is_main:
        train_streams = load_split(config.train, config.window)
        validation_streams = load_split(config.validation, config.window)

    if initial_weights:
        network = load_network(initial_weights)
    else:
        network = SpikeMSNetwork(surrogate_neuron_configs(config))
    network = network.to(context.device)
    optimizer = torch.optim.Adam(
        network.parameters(), lr=config.optim.learning_rate, weight_decay=config.optim.weight_decay, amsgrad=True
    )
    loss_config = LossConfig(spike_loss_weight=config.optim.spike_loss_weight, bin_ms=config.window.bin_us / 1000)

    first_epoch = 0
    history = []
    checkpoint_path = output_dir / "checkpoint.pt"
    if resume:
        if not checkpoint_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint_path}")
        state = load_checkpoint(checkpoint_path)
        network.load_state_dict(state["model_state"])
        optimizer.load_state_dict(state["optimizer_state"])
        first_epoch = int(state["epoch"]) + 1
        history = list(state["history"])
        # Epochs count from 0 in the checkpoint and from 1 in the log, as in the epoch lines.
        LOG.info("resumed from %s after epoch %d", checkpoint_path, first_epoch)

    if not resume and not initial_weights and config.optim.initial_spike_rates:
        # Every rank draws the same calibration batch, so all start from the same weights.
        calibration_specs = draw_sample_specs(
            train_streams, config.window, 16, seed=20_000 + config.optim.seed, crop=True
        )
        calibration_batch = torch.stack(
            [sample["input"] for sample in WindowDataset(train_streams, calibration_specs, config.window)]
        ).to(context.device)  # (16, 2, H, W, T)
        calibrate_weight_scales(network, calibration_batch, tuple(config.optim.initial_spike_rates))

    trained = AllLayerOutputs(network)
    if context.world_size > 1:
        trained = torch.nn.parallel.DistributedDataParallel(
            trained, device_ids=[context.device.index] if context.device.type == "cuda" else None
        )

    validation_specs = draw_sample_specs(
        validation_streams, config.window, config.optim.validation_windows, seed=10_000 + config.optim.seed, crop=False
    )
    samples_per_process = max(1, config.optim.samples_per_epoch // context.world_size)

    if first_epoch == 0:
        # The untrained network's score, so every run shows how much training gained.
        initial = validate(network, validation_streams, validation_specs, config, loss_config, context.device)
        history.append({"epoch": -1, **initial})
        if context.is_main:
            LOG.info(
                "before training: validation loss %.4f, validation IoU %.3f",
                initial["validation_loss"], initial["validation_iou"],
            )

    for epoch in range(first_epoch, config.optim.epochs):
        started = time.perf_counter()
        # Each (epoch, rank) draws its own samples, reproducibly.
        specs = draw_sample_specs(
            train_streams,
            config.window,
            samples_per_process,
            seed=config.optim.seed * 1_000_003 + epoch * 1009 + context.rank,
            crop=True,
        )
        loader = torch.utils.data.DataLoader(
            WindowDataset(train_streams, specs, config.window), batch_size=config.optim.batch_size, shuffle=False
        )
        trained.train()
        loss_sum, iou_sum, batches = 0.0, 0.0, 0
        progress = tqdm(loader, desc=f"epoch {epoch + 1}/{config.optim.epochs}", disable=not context.is_main)
        for batch in progress:
            terms, iou, spike_rates = _score(trained, batch, config, loss_config, context.device)
            optimizer.zero_grad(set_to_none=True)
            terms.total.backward()
            optimizer.step()
            loss_sum += terms.total.item()
            iou_sum += iou.mean().item()
            batches += 1
            progress.set_postfix(loss=f"{terms.total.item():.4f}", iou=f"{iou.mean().item():.3f}")

        metrics = {
            "epoch": epoch,
            "train_loss": loss_sum / max(batches, 1),
            "train_iou": iou_sum / max(batches, 1),
            "seconds": time.perf_counter() - started,
        }
        metrics.update(validate(network, validation_streams, validation_specs, config, loss_config, context.device))
        history.append(metrics)
        if context.is_main:
            LOG.info(
                "epoch %d: train loss %.4f, train IoU %.3f, validation loss %.4f, validation IoU %.3f, "
                "spike rates %s (%.0f s)",
                epoch + 1, metrics["train_loss"], metrics["train_iou"], metrics["validation_loss"],
                metrics["validation_iou"], " ".join(f"{rate:.4f}" for rate in metrics["spike_rates"]),
                metrics["seconds"],
            )
            with (output_dir / "metrics.jsonl").open("a", encoding="utf-8") as log_file:
                log_file.write(json.dumps(metrics) + "\n")
            _save_checkpoint(checkpoint_path, network, optimizer, epoch, history, config)
            metadata = {
                "epoch": epoch + 1,
                "validation_iou": metrics["validation_iou"],
                "output_delay_bins": config.window.output_delay_bins,
                "bin_us": config.window.bin_us,
                "window_bins": config.window.window_bins,
                "train_config_json": json.dumps(config_to_dict(config)),
            }
            save_weights(output_dir / "weights.pt", network, metadata=metadata)
            best_iou = max((entry["validation_iou"] for entry in history[:-1] if entry["epoch"] >= 0), default=-1.0)
            if metrics["validation_iou"] > best_iou:
                save_weights(output_dir / "weights_best.pt", network, metadata=metadata)

    if context.world_size > 1:
        dist.barrier()
        dist.destroy_process_group()
    return history[-1] if history else {}


@torch.no_grad()
def validate(network, streams, specs, config: TrainConfig, loss_config: LossConfig, device) -> dict:
    """Score full-frame windows one at a time; return mean loss, IoU and per-layer spike rates."""
    network.eval()
    dataset = WindowDataset(streams, specs, config.window)
    losses, ious, rates = [], [], []
    for index in range(len(dataset)):
        batch = {name: tensor[None] for name, tensor in dataset[index].items()}
        terms, iou, spike_rates = _score(AllLayerOutputs(network), batch, config, loss_config, device)
        losses.append(terms.total.item())
        ious.append(iou.item())
        rates.append(spike_rates)
    return {
        "validation_loss": float(np.mean(losses)) if losses else float("nan"),
        "validation_iou": float(np.mean(ious)) if ious else float("nan"),
        "spike_rates": np.mean(rates, axis=0).tolist() if rates else [],
    }
