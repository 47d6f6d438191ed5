"""Training of the ANN-2D baseline on the same labelled windows as the spiking network.

A sample is the event-count frame (2, h, w) of one window of ``window.window_bins``
bins, cut at the positions ``draw_sample_specs`` draws for the spiking network.
Its label is 1 per polarity and pixel where a foreground event of that polarity
fell in the window. The ANN sees the window itself, so it needs neither the
warm-up bins nor the output delay of the spiking network.

Loss: binary cross-entropy on the logits, weighted as in the spiking network's
training (optim.empty_pixel_weight for pixels without events, optim.foreground_weight
for foreground pixels). The van Rossum term has no counterpart here, so
optim.spike_loss_weight is ignored.
"""

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from spikems_ros.baselines.ann2d import Ann2dNetwork, count_frame, predicted_pixels, save_ann2d_weights
from spikems_ros.training.config import TrainConfig, WindowConfig, config_to_dict
from spikems_ros.training.data import SampleSpec, draw_sample_specs, load_split
from spikems_ros.training.loop import seed_everything, setup_distributed

LOG = logging.getLogger(__name__)


def build_frame_sample(streams: list, spec: SampleSpec, window: WindowConfig) -> dict:
    """Cut one ANN sample: ``frame`` (2, h, w) event counts, ``label`` and ``event_pixels`` (2, h, w) 0/1."""
    stream = streams[spec.stream]
    end_us = spec.window_start_us + window.window_bins * window.bin_us
    start, stop = np.searchsorted(stream.events["t"], [spec.window_start_us, end_us])
    events = stream.events[start:stop]
    foreground = stream.foreground[start:stop]

    frame = count_frame(events, spec.height, spec.width, top=spec.top, left=spec.left)
    foreground_frame = count_frame(events[foreground], spec.height, spec.width, top=spec.top, left=spec.left)
    return {
        "frame": frame,
        "label": (foreground_frame > 0).astype(np.float32),
        "event_pixels": (frame > 0).astype(np.float32),
    }


def frame_batch(streams: list, specs: list, window: WindowConfig) -> dict:
    """Stack the samples of ``specs`` into tensors (batch, 2, h, w); all specs must share one size."""
    samples = [build_frame_sample(streams, spec, window) for spec in specs]
    return {name: torch.from_numpy(np.stack([sample[name] for sample in samples])) for name in samples[0]}


def weighted_bce(logits: torch.Tensor, batch: dict, config: TrainConfig) -> torch.Tensor:
    """BCE per polarity and pixel, with the spiking network's pixel weights."""
    label = batch["label"]
    event_pixels = batch["event_pixels"]
    weights = event_pixels + config.optim.empty_pixel_weight * (1 - event_pixels)
    weights = weights * (1 + (config.optim.foreground_weight - 1) * label)
    per_pixel = F.binary_cross_entropy_with_logits(logits, label, reduction="none")  # (B, 2, h, w)
    return (per_pixel * weights).sum() / weights.sum().clamp(min=1.0)


def event_pixel_iou(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Event-pixel IoU per sample (any polarity); a sample with nothing predicted or labelled scores 1."""
    predicted = predicted_pixels(logits)  # (B, h, w)
    truth = label.amax(dim=1) > 0
    intersection = (predicted & truth).sum(dim=(1, 2)).double()
    union = (predicted | truth).sum(dim=(1, 2)).double()
    return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


@torch.no_grad()
def validate_ann2d(network: Ann2dNetwork, streams: list, specs: list, config: TrainConfig, device) -> dict:
    """Score full-frame windows one at a time; return the mean loss and event-pixel IoU."""
    network.eval()
    losses, ious = [], []
    for spec in specs:
        batch = {name: tensor.to(device) for name, tensor in frame_batch(streams, [spec], config.window).items()}
        logits = network(batch["frame"])
        losses.append(weighted_bce(logits, batch, config).item())
        ious.append(event_pixel_iou(logits, batch["label"]).item())
    return {
        "validation_loss": float(np.mean(losses)) if losses else float("nan"),
        "validation_iou": float(np.mean(ious)) if ious else float("nan"),
    }


def train_ann2d(config: TrainConfig, device_name: str = "cpu") -> dict:
    """Train ANN-2D on one process; write weights.pt, weights_best.pt and metrics.jsonl into config.output_dir."""
    context = setup_distributed(device_name)
    if context.world_size > 1:
        raise ValueError("ANN-2D training runs on one process; start it without torchrun")
    seed_everything(config.optim.seed)
    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    train_streams = load_split(config.train, config.window)
    validation_streams = load_split(config.validation, config.window)
    network = Ann2dNetwork().to(context.device)
    optimizer = torch.optim.Adam(
        network.parameters(), lr=config.optim.learning_rate, weight_decay=config.optim.weight_decay, amsgrad=True
    )
    validation_specs = draw_sample_specs(
        validation_streams, config.window, config.optim.validation_windows, seed=10_000 + config.optim.seed, crop=False
    )
    history = []
    best_iou = -1.0
    for epoch in range(config.optim.epochs):
        started = time.perf_counter()
        specs = draw_sample_specs(
            train_streams, config.window, config.optim.samples_per_epoch,
            seed=config.optim.seed * 1_000_003 + epoch * 1009, crop=True,
        )
        network.train()
        loss_sum, iou_sum, batches = 0.0, 0.0, 0
        batch_starts = range(0, len(specs), config.optim.batch_size)
        progress = tqdm(batch_starts, desc=f"epoch {epoch + 1}/{config.optim.epochs}")
        for first in progress:
            batch = frame_batch(train_streams, specs[first : first + config.optim.batch_size], config.window)
            batch = {name: tensor.to(context.device) for name, tensor in batch.items()}
            logits = network(batch["frame"])
            loss = weighted_bce(logits, batch, config)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            iou = event_pixel_iou(logits.detach(), batch["label"]).mean().item()
            loss_sum += loss.item()
            iou_sum += iou
            batches += 1
            progress.set_postfix(loss=f"{loss.item():.4f}", iou=f"{iou:.3f}")

        metrics = {
            "epoch": epoch,
            "train_loss": loss_sum / max(batches, 1),
            "train_iou": iou_sum / max(batches, 1),
            "seconds": time.perf_counter() - started,
        }
        metrics.update(validate_ann2d(network, validation_streams, validation_specs, config, context.device))
        history.append(metrics)
        LOG.info(
            "epoch %d: train loss %.4f, train IoU %.3f, validation loss %.4f, validation IoU %.3f (%.0f s)",
            epoch + 1, metrics["train_loss"], metrics["train_iou"], metrics["validation_loss"],
            metrics["validation_iou"], metrics["seconds"],
        )
        with (output_dir / "metrics.jsonl").open("a", encoding="utf-8") as log_file:
            log_file.write(json.dumps(metrics) + "\n")

        metadata = {
            "epoch": epoch + 1,
            "validation_iou": metrics["validation_iou"],
            "bin_us": config.window.bin_us,
            "window_bins": config.window.window_bins,
            "train_config_json": json.dumps(config_to_dict(config)),
        }
        save_ann2d_weights(output_dir / "weights.pt", network, metadata=metadata)
        if metrics["validation_iou"] > best_iou:
            best_iou = metrics["validation_iou"]
            save_ann2d_weights(output_dir / "weights_best.pt", network, metadata=metadata)
    return history[-1] if history else {}
