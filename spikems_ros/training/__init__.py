"""Offline training of the SpikeMS network (``spikems train`` or ``torchrun -m spikems_ros.training``)."""
