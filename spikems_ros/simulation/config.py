"""Configuration of one synthetic scene: sensor, camera motion, objects and event model.

This module imports nothing heavy, so the command line can build its parser from
the defaults below without loading numpy.
"""

from dataclasses import dataclass

# Bumped whenever the same configuration and seed start producing different data.
GENERATOR_VERSION = 2

# Masks store object id x 1000 in uint16 (the EV-IMO convention), so ids stop at 65.
MAX_OBJECTS = 65


@dataclass(frozen=True)
class SceneConfig:
    """Parameters of one synthetic sequence; every field has a unit in its name or comment."""

    width: int = 346  # sensor width in pixels (346 is the DAVIS346 of EV-IMO)
    height: int = 260  # sensor height in pixels
    # Length of the sequence, a whole number of mask intervals. NOTE: masks stay in
    # memory as uint16, 2 x width x height bytes per interval (180 MB per second at 346 x 260).
    duration_s: float = 1.0
    seed: int = 0  # base seed; each sequence index derives its own streams from it
    render_rate_hz: int = 2000  # log-intensity frames per second; events are interpolated between them
    mask_interval_us: int = 1000  # spacing of the ground-truth masks (the `discretization`)
    objects_min: int = 1  # minimum number of independently moving objects in a sequence
    objects_max: int = 3  # maximum number of independently moving objects in a sequence
    contrast_threshold: float = 0.25  # mean log-intensity change that fires one event
    threshold_sigma: float = 0.03  # per-pixel Gaussian mismatch of the ON and OFF thresholds
    refractory_us: int = 100  # after an event a pixel ignores crossings for this long
    noise_rate_hz: float = 0.1  # background-activity noise events per pixel per second
    camera_speed_px_s: tuple = (40.0, 120.0)  # range of the background's mean image speed
    camera_rotation_deg_s: float = 10.0  # maximum camera roll rate about the image centre
    camera_zoom: float = 0.08  # maximum log-scale swing, the image effect of moving along the optical axis
    # Objects move faster and carry finer, stronger texture than the background, so a 10 ms
    # window fires on about 80 % of an object's pixels against about 10 % of the background's.
    object_speed_px_s: tuple = (150.0, 300.0)  # range of each object's peak speed per image axis
    object_rotation_deg_s: float = 60.0  # maximum object spin rate; about half the objects spin
    object_radius_fraction: tuple = (0.12, 0.22)  # object radius as a fraction of min(width, height)
    background_contrast: float = 1.0  # scales the background texture's contrast (events per unit of motion)
    background_texture_wavelength_px: tuple = (8.0, 32.0)  # range of the background's shortest patch wavelength
    object_texture_wavelength_px: tuple = (2.0, 4.0)  # range of each object's shortest patch wavelength
    object_contrast: float = 2.0  # scales each object texture's contrast, as background_contrast does

    def __post_init__(self):
        validate_config(self)

    @property
    def duration_us(self) -> int:
        return int(round(self.duration_s * 1_000_000))

    @property
    def render_step_us(self) -> int:
        return 1_000_000 // self.render_rate_hz

    @property
    def mask_count(self) -> int:
        return self.duration_us // self.mask_interval_us


def _check_range(name: str, value, low, high) -> None:
    if not low <= value <= high:
        raise ValueError(f"{name} = {value!r} is out of range; expected {low} to {high}")


def _check_pair(name: str, pair, low, high) -> None:
    if len(pair) != 2 or not low <= pair[0] <= pair[1] <= high:
        raise ValueError(
            f"{name} = {pair!r} is invalid; expected (minimum, maximum) with "
            f"{low} <= minimum <= maximum <= {high}"
        )


def validate_config(config: SceneConfig) -> None:
    """Raise ValueError naming the first field whose value the generator cannot use."""
    for name in ("width", "height", "render_rate_hz", "mask_interval_us", "seed",
                 "objects_min", "objects_max", "refractory_us"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} = {value!r} must be an int")

    _check_range("width", config.width, 16, 65535)
    _check_range("height", config.height, 16, 65535)
    _check_range("seed", config.seed, 0, 2**63 - 1)
    _check_range("mask_interval_us", config.mask_interval_us, 1, 10**6)

    rate = config.render_rate_hz
    if rate <= 0 or 1_000_000 % rate != 0 or config.mask_interval_us % (1_000_000 // rate) != 0:
        raise ValueError(
            f"render_rate_hz = {rate} is invalid; the render step 1e6/rate must be a whole number "
            f"of microseconds that divides mask_interval_us = {config.mask_interval_us} "
            f"(for 1000 us masks: 1000, 2000, 4000, 5000, 8000, 10000, ... Hz)"
        )

    if config.duration_us < config.mask_interval_us or config.duration_us % config.mask_interval_us:
        raise ValueError(
            f"duration_s = {config.duration_s!r} is invalid; expected a positive whole number of "
            f"mask intervals ({config.mask_interval_us} us)"
        )

    _check_range("objects_min", config.objects_min, 0, MAX_OBJECTS)
    _check_range("objects_max", config.objects_max, config.objects_min, MAX_OBJECTS)
    _check_range("contrast_threshold", config.contrast_threshold, 0.01, 2.0)
    _check_range("threshold_sigma", config.threshold_sigma, 0.0, config.contrast_threshold)
    _check_range("refractory_us", config.refractory_us, 0, 10**6)
    _check_range("noise_rate_hz", config.noise_rate_hz, 0.0, 1000.0)
    _check_pair("camera_speed_px_s", config.camera_speed_px_s, 0.0, 10_000.0)
    _check_range("camera_rotation_deg_s", config.camera_rotation_deg_s, 0.0, 360.0)
    _check_range("camera_zoom", config.camera_zoom, 0.0, 0.5)
    _check_pair("object_speed_px_s", config.object_speed_px_s, 0.0, 10_000.0)
    _check_range("object_rotation_deg_s", config.object_rotation_deg_s, 0.0, 720.0)
    _check_pair("object_radius_fraction", config.object_radius_fraction, 0.02, 0.5)
    _check_range("background_contrast", config.background_contrast, 0.0, 3.0)
    _check_pair("background_texture_wavelength_px", config.background_texture_wavelength_px, 2.0, 256.0)
    _check_range("object_contrast", config.object_contrast, 0.0, 3.0)
    _check_pair("object_texture_wavelength_px", config.object_texture_wavelength_px, 2.0, 256.0)
