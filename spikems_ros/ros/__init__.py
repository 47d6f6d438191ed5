"""ROS 2 adapter of spikems_ros: the segmenter node and its helpers.

Only segmenter_node and messages import rclpy; parameters, event_queue, health
and log_bridge are plain Python.
"""
