"""SpikeMS: motion segmentation from a moving event camera with a spiking network.

The core (events, network, training, evaluation, simulation) imports without
rclpy; only ``spikems_ros.ros`` needs a ROS 2 installation.
"""

__version__ = "0.1.0"
