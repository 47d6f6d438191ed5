"""Labelled synthetic event data: MOD-like scenes of moving objects seen by a moving camera.

Every event carries the id of the object that caused it (0 for the background,
which moves only because the camera moves), and 1 ms masks give the object ids
per pixel. ``simulate_sequence`` generates a sequence, ``write_sequence`` stores
it in the EV-IMO npz layout and ``load_synthetic_sequence`` reads it back.

Names are imported on first use, so that importing ``spikems_ros.simulation.config``
(as the command line does to build its parser) does not load numpy.
"""

import importlib

_EXPORTS = {
    "GENERATOR_VERSION": "spikems_ros.simulation.config",
    "SceneConfig": "spikems_ros.simulation.config",
    "SyntheticSequence": "spikems_ros.simulation.generator",
    "foreground_fraction": "spikems_ros.simulation.generator",
    "simulate_sequence": "spikems_ros.simulation.generator",
    "load_synthetic_sequence": "spikems_ros.simulation.writer",
    "write_sequence": "spikems_ros.simulation.writer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
