"""Forward the core library's ``logging`` records to a node's rclpy logger.

The core (pipeline, decoders, weights) logs with the standard ``logging``
module because it runs without ROS. In the node those records go to the ROS
log like the node's own messages. So that repeats do not flood it, a record
whose message template was forwarded less than ``throttle_s`` ago is counted
instead, and the count is added to the next forwarded one.
"""

import logging
import threading
import time
from contextlib import contextmanager


class RclpyLogHandler(logging.Handler):
    """logging.Handler that writes records to an rclpy logger, throttled per message template."""

    def __init__(self, ros_logger, throttle_s: float = 5.0):
        super().__init__()
        self.ros_logger = ros_logger
        self.throttle_s = float(throttle_s)
        self._last_forwarded_s = {}  # (logger name, template) -> monotonic time
        self._suppressed = {}  # (logger name, template) -> records dropped since
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        key = (record.name, str(record.msg))
        now_s = time.monotonic()
        with self._lock:
            if now_s - self._last_forwarded_s.get(key, -float("inf")) < self.throttle_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            self._last_forwarded_s[key] = now_s
            suppressed = self._suppressed.pop(key, 0)

        text = f"{record.name}: {record.getMessage()}"
        if suppressed:
            text += f" ({suppressed} similar messages suppressed)"
        if record.levelno >= logging.ERROR:
            self.ros_logger.error(text)
        elif record.levelno >= logging.WARNING:
            self.ros_logger.warning(text)
        elif record.levelno >= logging.INFO:
            self.ros_logger.info(text)
        else:
            self.ros_logger.debug(text)


@contextmanager
def library_logs_forwarded(ros_logger, package: str = "spikems_ros", level: int = logging.INFO):
    """Within the block, send the package's log records to ``ros_logger`` instead of Python's handlers."""
    handler = RclpyLogHandler(ros_logger)
    package_logger = logging.getLogger(package)
    previous_level, previous_propagate = package_logger.level, package_logger.propagate
    package_logger.addHandler(handler)
    package_logger.setLevel(level)
    # The records reach the ROS log once; with propagation they would also go to
    # Python's last-resort stderr handler.
    package_logger.propagate = False
    try:
        yield handler
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)
        package_logger.propagate = previous_propagate
