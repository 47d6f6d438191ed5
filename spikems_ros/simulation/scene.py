"""A MOD-like scene: a textured background moved by the camera and textured objects moving on their own.

The camera is modelled as a smooth 2D similarity motion of a distant textured
plane: translation stands for camera pan and tilt, rotation about the image
centre for roll, and scale for motion along the optical axis. Objects move in
image coordinates on their own smooth paths (sums of sinusoids), optionally
spinning, and are drawn in front of the background in id order (higher ids in
front). Rendering returns log intensity and a label map of the front-most object.

NOTE: a plane cannot show parallax, so background flow is exactly a similarity
field; a 3D scene with depth would give richer ego-motion.
"""

import math
from dataclasses import dataclass

import numpy as np

from spikems_ros.simulation.config import SceneConfig
from spikems_ros.simulation.texture import (
    BilinearTable,
    background_texture,
    bilinear_table,
    object_texture,
    sample_bilinear,
)

SHAPES = ("ellipse", "rectangle", "blob")

# Harmonics of the blob outline r(phi) = R (1 + sum_k a_k cos(k phi + psi_k)); consecutive
# from 2, because the signed distance steps from one harmonic to the next.
BLOB_HARMONICS = np.arange(2, 6)


@dataclass(frozen=True)
class CameraMotion:
    """Image motion of the background plane: texture point = T(t) + s(t) R(phi(t)) (pixel - centre)."""

    start_px: tuple  # texture coordinates seen at the image centre at t = 0
    velocity_px_s: tuple  # mean drift of T(t)
    wobble_px: tuple  # amplitude of the sinusoidal shake added to T(t), per axis; scales with the speed
    wobble_hz: tuple  # frequency of that shake, per axis
    wobble_phase: tuple  # phase of that shake in radians, per axis
    roll_rate_rad_s: float  # constant part of phi(t)
    roll_wobble_rad: float  # amplitude of the sinusoidal part of phi(t)
    roll_wobble_hz: float
    zoom_log_amplitude: float  # s(t) = exp(zoom_log_amplitude sin(2 pi zoom_hz t + zoom_phase))
    zoom_hz: float
    zoom_phase: float

    def at(self, time_s: float) -> tuple:
        """Return (translation x, translation y, scale, roll angle in radians) at ``time_s``."""
        translation = [
            self.start_px[axis]
            + self.velocity_px_s[axis] * time_s
            + self.wobble_px[axis] * math.sin(2 * math.pi * self.wobble_hz[axis] * time_s + self.wobble_phase[axis])
            for axis in (0, 1)
        ]
        roll = self.roll_rate_rad_s * time_s + self.roll_wobble_rad * math.sin(
            2 * math.pi * self.roll_wobble_hz * time_s
        )
        scale = math.exp(self.zoom_log_amplitude * math.sin(2 * math.pi * self.zoom_hz * time_s + self.zoom_phase))
        return translation[0], translation[1], scale, roll


@dataclass(frozen=True)
class SceneObject:
    """One independently moving textured shape; its centre follows a sum of two sinusoids per axis."""

    object_id: int  # 1..K, also the label of its events and its mask value
    shape: str  # one of SHAPES
    half_extent_px: tuple  # semi-axes (ellipse), half sides (rectangle) or base radius twice (blob)
    blob_amplitudes: tuple  # a_k of the blob outline; empty for other shapes
    blob_phases: tuple  # psi_k of the blob outline; empty for other shapes
    bounding_radius_px: float  # no part of the shape lies farther than this from its centre
    texture: BilinearTable  # S x S linear intensity, centred on the object's centre
    centre_px: tuple  # mean centre position (x, y)
    amplitude_px: tuple  # ((x first, x second), (y first, y second)) sinusoid amplitudes
    angular_frequency_rad_s: tuple  # same layout as amplitude_px
    phase_rad: tuple  # same layout as amplitude_px
    start_angle_rad: float
    spin_rad_s: float

    def pose_at(self, time_s: float) -> tuple:
        """Return (centre x, centre y, angle in radians) at ``time_s``."""
        position = []
        for axis in (0, 1):
            value = self.centre_px[axis]
            for term in (0, 1):
                value += self.amplitude_px[axis][term] * math.sin(
                    self.angular_frequency_rad_s[axis][term] * time_s + self.phase_rad[axis][term]
                )
            position.append(value)
        return position[0], position[1], self.start_angle_rad + self.spin_rad_s * time_s

    def signed_distance_px(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Approximate signed distance to the outline in object coordinates (negative inside)."""
        if self.shape == "rectangle":
            return np.maximum(np.abs(u) - self.half_extent_px[0], np.abs(v) - self.half_extent_px[1])

        if self.shape == "ellipse":
            a, b = self.half_extent_px
            rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
            # First-order distance (rho - 1) / |grad rho|, exact on the outline.
            gradient = np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2) / np.maximum(rho, 1e-6)
            return (rho - 1.0) / np.maximum(gradient, 1e-6)

        # The outline lies between base * (1 - sum a_k) and base * (1 + sum a_k), so
        # only pixels in that ring (plus one pixel) need the angle-dependent radius.
        base = self.half_extent_px[0]
        swing = base * sum(self.blob_amplitudes)
        distance = np.hypot(u, v)
        signed = distance - base  # (h, w); exact sign outside the ring
        ring = np.flatnonzero(np.abs(signed.ravel()) <= swing + 1.0)
        ring_distance = np.maximum(distance.ravel()[ring], 1e-6)
        cos_phi = u.ravel()[ring] / ring_distance  # (R,)
        sin_phi = v.ravel()[ring] / ring_distance  # (R,)
        cos_k, sin_k = cos_phi, sin_phi  # cos(k phi), sin(k phi) for k = 1
        radius = np.ones(ring.shape[0], dtype=np.float32)
        for amplitude, phase in zip(self.blob_amplitudes, self.blob_phases):
            # Angle addition steps k to k + 1 without trigonometry on arrays, then
            # a_k cos(k phi + psi_k) = a_k (cos(k phi) cos(psi_k) - sin(k phi) sin(psi_k)).
            cos_k, sin_k = cos_k * cos_phi - sin_k * sin_phi, sin_k * cos_phi + cos_k * sin_phi
            radius += np.float32(amplitude * math.cos(phase)) * cos_k - np.float32(amplitude * math.sin(phase)) * sin_k
        signed.ravel()[ring] = distance.ravel()[ring] - base * radius
        return signed


@dataclass(frozen=True)
class Scene:
    """Everything needed to render any instant of one sequence."""

    width: int
    height: int
    background: BilinearTable  # P x P periodic linear intensity
    camera: CameraMotion
    objects: tuple  # SceneObject, drawn in this order (later ones in front)


def _sample_camera(config: SceneConfig, rng: np.random.Generator, texture_size_px: int) -> CameraMotion:
    speed = rng.uniform(*config.camera_speed_px_s)
    heading = rng.uniform(0, 2 * math.pi)
    roll_rate = math.radians(config.camera_rotation_deg_s) * rng.uniform(-1, 1)
    return CameraMotion(
        start_px=tuple(rng.uniform(0, texture_size_px, 2)),
        velocity_px_s=(speed * math.cos(heading), speed * math.sin(heading)),
        wobble_px=tuple(speed * rng.uniform(0.02, 0.08, 2)),
        wobble_hz=tuple(rng.uniform(0.5, 2.0, 2)),
        wobble_phase=tuple(rng.uniform(0, 2 * math.pi, 2)),
        roll_rate_rad_s=roll_rate,
        roll_wobble_rad=math.radians(config.camera_rotation_deg_s * rng.uniform(0.0, 0.2)),
        roll_wobble_hz=rng.uniform(0.2, 1.0),
        zoom_log_amplitude=rng.uniform(0.0, config.camera_zoom),
        zoom_hz=rng.uniform(0.1, 0.5),
        zoom_phase=rng.uniform(0, 2 * math.pi),
    )


def _sample_object(
    config: SceneConfig, rng: np.random.Generator, object_id: int, background_mean: float
) -> SceneObject:
    shape = SHAPES[rng.integers(len(SHAPES))]
    radius = rng.uniform(*config.object_radius_fraction) * min(config.width, config.height)
    blob_amplitudes = ()
    blob_phases = ()

    if shape == "ellipse":
        half_extent = (radius, radius * rng.uniform(0.55, 1.0))
        bounding_radius = radius
    elif shape == "rectangle":
        half_extent = (radius * rng.uniform(0.6, 1.0), radius * rng.uniform(0.5, 0.9))
        bounding_radius = math.hypot(*half_extent)
    else:
        half_extent = (radius, radius)
        blob_amplitudes = tuple(rng.uniform(0.0, 0.1, len(BLOB_HARMONICS)))
        blob_phases = tuple(rng.uniform(0, 2 * math.pi, len(BLOB_HARMONICS)))
        bounding_radius = radius * (1.0 + sum(blob_amplitudes))

    # Two pixels of margin keep the anti-aliased outline inside the texture patch.
    texture_size = 2 * int(math.ceil(bounding_radius)) + 4
    texture = object_texture(
        rng, texture_size, background_mean, config.object_contrast, config.object_texture_wavelength_px
    )

    # The first sinusoid per axis carries the motion, with peak speed drawn from
    # object_speed_px_s; a weaker second one bends the path.
    amplitudes = []
    frequencies = []
    for size in (config.width, config.height):
        amplitude = rng.uniform(0.15, 0.4) * size
        peak_speed = rng.uniform(*config.object_speed_px_s)
        frequency = peak_speed / amplitude
        amplitudes.append((amplitude, amplitude * rng.uniform(0.0, 0.2)))
        frequencies.append((frequency, frequency * rng.uniform(1.5, 3.0)))

    spins = rng.random() < 0.5
    spin = math.radians(config.object_rotation_deg_s) * rng.uniform(-1, 1) if spins else 0.0
    return SceneObject(
        object_id=object_id,
        shape=shape,
        half_extent_px=half_extent,
        blob_amplitudes=blob_amplitudes,
        blob_phases=blob_phases,
        bounding_radius_px=bounding_radius,
        texture=bilinear_table(texture, periodic=False),
        centre_px=(config.width / 2 + rng.uniform(-0.1, 0.1) * config.width,
                   config.height / 2 + rng.uniform(-0.1, 0.1) * config.height),
        amplitude_px=tuple(amplitudes),
        angular_frequency_rad_s=tuple(frequencies),
        phase_rad=tuple(tuple(rng.uniform(0, 2 * math.pi, 2)) for _ in range(2)),
        start_angle_rad=rng.uniform(0, 2 * math.pi),
        spin_rad_s=spin,
    )


def sample_scene(config: SceneConfig, rng: np.random.Generator) -> Scene:
    """Draw the background, the camera motion and objects_min..objects_max objects from ``rng``."""
    # The periodic background spans at least twice the image diagonal at the
    # largest zoom, so no frame shows the same texture twice, whatever the roll.
    widest_view_px = math.hypot(config.width, config.height) * math.exp(config.camera_zoom)
    texture_size = 1 << int(math.ceil(math.log2(2 * widest_view_px)))
    background, background_mean = background_texture(
        rng, texture_size, config.background_contrast, config.background_texture_wavelength_px
    )
    camera = _sample_camera(config, rng, texture_size)

    object_count = int(rng.integers(config.objects_min, config.objects_max + 1))
    objects = tuple(
        _sample_object(config, rng, object_id, background_mean) for object_id in range(1, object_count + 1)
    )
    return Scene(config.width, config.height, bilinear_table(background, periodic=True), camera, objects)


def pixel_offsets(width: int, height: int) -> tuple:
    """Return pixel-centre offsets from the image centre: dx float32 (1, width), dy float32 (height, 1)."""
    dx = np.arange(width, dtype=np.float32)[None, :] - np.float32((width - 1) / 2)
    dy = np.arange(height, dtype=np.float32)[:, None] - np.float32((height - 1) / 2)
    return dx, dy


def render_frame(scene: Scene, time_s: float, offsets: tuple) -> tuple:
    """Render the scene at ``time_s``.

    Returns (log intensity float32 (H, W), labels uint8 (H, W)) where a label is
    the id of the front-most object covering any part of the pixel, else 0. Any
    part counts because a partly covered pixel already changes with the object,
    and labelling it background would mislabel the events of moving outlines.
    Intensities are composited in linear space, as light adds up on the sensor,
    and the logarithm is taken last.
    """
    dx, dy = offsets
    translation_x, translation_y, scale, roll = scene.camera.at(time_s)
    # Wrapping the translation keeps float32 coordinates small, and so precise, in long sequences.
    translation_x %= scene.background.width
    translation_y %= scene.background.height
    cos_roll = scale * math.cos(roll)
    sin_roll = scale * math.sin(roll)
    # Row and column terms are computed once and broadcast, leaving one full-frame add each.
    texture_x = (translation_x + cos_roll * dx) - sin_roll * dy  # (H, W)
    texture_y = (translation_y + sin_roll * dx) + cos_roll * dy  # (H, W)
    intensity = sample_bilinear(scene.background, texture_x, texture_y)  # (H, W)
    labels = np.zeros((scene.height, scene.width), dtype=np.uint8)
    flat_intensity = intensity.ravel()  # views, written through below
    flat_labels = labels.ravel()

    for scene_object in scene.objects:
        centre_x, centre_y, angle = scene_object.pose_at(time_s)
        reach = scene_object.bounding_radius_px + 1.0
        column_start = max(int(math.floor(centre_x - reach)), 0)
        column_stop = min(int(math.ceil(centre_x + reach)) + 1, scene.width)
        row_start = max(int(math.floor(centre_y - reach)), 0)
        row_stop = min(int(math.ceil(centre_y + reach)) + 1, scene.height)
        if column_start >= column_stop or row_start >= row_stop:
            continue

        # Pixel offsets from the object's centre, rotated into object coordinates.
        box_x = np.arange(column_start, column_stop, dtype=np.float32)[None, :] - centre_x
        box_y = np.arange(row_start, row_stop, dtype=np.float32)[:, None] - centre_y
        cos_angle, sin_angle = math.cos(angle), math.sin(angle)
        u = cos_angle * box_x + sin_angle * box_y  # (h, w)
        v = -sin_angle * box_x + cos_angle * box_y  # (h, w)

        # Coverage ramps from 1 to 0 across the one pixel straddling the outline,
        # which anti-aliases the edge so its events are spread in time.
        coverage = np.clip(0.5 - scene_object.signed_distance_px(u, v), 0.0, 1.0).ravel()  # (h*w,)
        covered = np.flatnonzero(coverage)
        coverage = coverage[covered].astype(np.float32)
        half = scene_object.texture.width / 2
        colour = sample_bilinear(scene_object.texture, u.ravel()[covered] + half, v.ravel()[covered] + half)

        box_width = column_stop - column_start
        pixel = (row_start + covered // box_width) * scene.width + column_start + covered % box_width
        flat_intensity[pixel] += coverage * (colour - flat_intensity[pixel])
        flat_labels[pixel] = scene_object.object_id

    return np.log(intensity), labels
