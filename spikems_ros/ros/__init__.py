"""ROS 2 adapter of spikems_ros: the segmenter node and its helpers (imports rclpy)."""
