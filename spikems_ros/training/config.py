"""Training configuration: dataclasses with one comment per field, read from YAML."""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass(frozen=True)
class DataSplitConfig:
    """One split of synthetic sequences: read from ``dir``, generated there when absent."""

    dir: str = "runs/synthetic/train"  # folder of seq_*.npz files, relative to the working directory
    sequences: int = 16  # sequences to generate when the folder is absent
    seconds: float = 1.0  # length of each generated sequence
    seed: int = 1  # generator seed; evaluation uses seeds never used here
    width: int = 346  # generated sensor width in pixels
    height: int = 260  # generated sensor height in pixels


@dataclass(frozen=True)
class WindowConfig:
    """Cutting of training samples from the event streams, in time bins."""

    bin_us: int = 1000  # width of one time bin
    window_bins: int = 10  # bins whose events are labelled and scored (the training window)
    warmup_bins: int = 6  # bins fed before the window so the network is not at rest
    # Bins the output is shifted against the input when scoring: every layer delays its
    # spikes by at least one step, so the prediction for window [s, s+w) arrives in [s+d, s+w+d).
    # NOTE: 6 bins is the sum of the one-step delays; the kernels peak later, but an
    # evaluation sweep of 2 to 14 bins changed event-pixel IoU only from 0.09 to 0.12.
    output_delay_bins: int = 6
    crop_height: int = 64  # training crop; the network is convolutional, so crops train it for any size
    crop_width: int = 64
    foreground_crop_probability: float = 0.7  # chance of centring a crop on a foreground event


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and schedule."""

    epochs: int = 8
    samples_per_epoch: int = 256  # training samples drawn per epoch (over all processes)
    batch_size: int = 8  # per process
    learning_rate: float = 1e-3  # Adam with amsgrad
    weight_decay: float = 0.0
    spike_loss_weight: float = 1.0  # lambda of L = L_bce + lambda * L_spike
    # BCE weight of pixels without input events in the window (event pixels weigh 1):
    # small, because empty pixels are easy, but not 0, since spikes there count against IoU.
    empty_pixel_weight: float = 0.2
    foreground_weight: float = 1.0  # BCE weight of foreground pixels against background ones
    # Per-layer spike rates the initial weights are scaled to on a sample batch
    # (conv1..deconv6); see training.calibration. Empty disables the calibration.
    initial_spike_rates: tuple = (0.05, 0.05, 0.05, 0.05, 0.05, 0.005)
    validation_windows: int = 8  # full-frame windows scored after each epoch
    seed: int = 0  # seeds torch, numpy and the sample draw


@dataclass(frozen=True)
class SurrogateConfig:
    """Surrogate-gradient shape used for every layer while training (None keeps the layer's value).

    Only the backward pass uses these, so they change how the network learns, not
    how trained weights run. A wider density (tau_rho about 1 threshold) passes
    gradient to neurons far below threshold, which keeps sparse layers learning.
    """

    tau_rho: float | None = None  # width of the surrogate density, in units of the threshold
    scale_rho: float | None = None  # height scale of the surrogate density


@dataclass(frozen=True)
class TrainConfig:
    """Everything ``spikems train`` needs."""

    train: DataSplitConfig = field(default_factory=DataSplitConfig)
    validation: DataSplitConfig = field(
        default_factory=lambda: DataSplitConfig(dir="runs/synthetic/val", sequences=4, seed=2)
    )
    window: WindowConfig = field(default_factory=WindowConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    surrogate: SurrogateConfig = field(default_factory=SurrogateConfig)
    output_dir: str = "runs/train"  # checkpoints, final weights and the metrics log
    model: str = "snn"  # "snn" (SpikeMS); other models are added by the evaluation tools

    def __post_init__(self):
        window = self.window
        for name in ("bin_us", "window_bins", "crop_height", "crop_width"):
            if getattr(window, name) < 1:
                raise ValueError(f"window.{name} = {getattr(window, name)!r} is invalid: expected >= 1")
        for name in ("warmup_bins", "output_delay_bins"):
            if getattr(window, name) < 0:
                raise ValueError(f"window.{name} = {getattr(window, name)!r} is invalid: expected >= 0")
        for name in ("epochs", "samples_per_epoch", "batch_size"):
            if getattr(self.optim, name) < 1:
                raise ValueError(f"optim.{name} = {getattr(self.optim, name)!r} is invalid: expected >= 1")
        if not self.optim.learning_rate > 0:
            raise ValueError(f"optim.learning_rate = {self.optim.learning_rate!r} is invalid: expected > 0")


_SECTIONS = {
    "train": DataSplitConfig,
    "validation": DataSplitConfig,
    "window": WindowConfig,
    "optim": OptimConfig,
    "surrogate": SurrogateConfig,
}


def _build_section(section_class, name: str, values: dict, source: str):
    known = {item.name for item in dataclasses.fields(section_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{source}: unknown keys {unknown} in section {name!r}; accepted: {sorted(known)}")
    return section_class(**values)


def config_from_dict(values: dict, source: str = "configuration") -> TrainConfig:
    """Build a TrainConfig from nested dictionaries, rejecting unknown keys."""
    if not isinstance(values, dict):
        raise ValueError(f"{source}: expected a mapping at the top level, got {type(values).__name__}")
    top_level = {item.name for item in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - top_level)
    if unknown:
        raise ValueError(f"{source}: unknown keys {unknown}; accepted: {sorted(top_level)}")

    arguments = {}
    for name, item in values.items():
        if name in _SECTIONS:
            if not isinstance(item, dict):
                raise ValueError(f"{source}: section {name!r} must be a mapping, got {item!r}")
            arguments[name] = _build_section(_SECTIONS[name], name, item, source)
        else:
            arguments[name] = item
    return TrainConfig(**arguments)


def load_config(path) -> TrainConfig:
    """Read a TrainConfig from a YAML file."""
    path = Path(path)
    with path.open(encoding="utf-8") as stream:
        values = yaml.safe_load(stream) or {}
    return config_from_dict(values, source=str(path))


def config_to_dict(config: TrainConfig) -> dict:
    """Return the configuration as nested plain dictionaries (for checkpoints and logs)."""
    return dataclasses.asdict(config)
