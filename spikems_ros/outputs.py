"""The messages the segmenter publishes, as plain nested dictionaries.

One description serves both publishers: the ROS node fills rclpy messages from
it, and ``spikems segment`` fills rosbags messages to write a bag, so both carry
exactly the same fields. Stamps are event time, never wall time.
"""

import numpy as np

from spikems_ros.events.packet import encode_packet_payload
from spikems_ros.pipeline import WindowResult, render_mask, render_overlay
from spikems_ros.snn.energy import ACCUMULATE_ENERGY_PJ, MULTIPLY_ACCUMULATE_ENERGY_PJ

NODE_NAME = "spikems_segmenter"

# Topic (relative to the node namespace, as the node declares it) -> message type.
OUTPUT_TOPICS = {
    "foreground_events": "event_camera_msgs/msg/EventPacket",
    "detections": "vision_msgs/msg/Detection2DArray",
    "image": "sensor_msgs/msg/Image",
    "mask": "sensor_msgs/msg/Image",
    "synaptic_ops": "spikems_ros/msg/SynapticOps",
}
DIAGNOSTICS_TOPIC = "/diagnostics"
DIAGNOSTICS_TYPE = "diagnostic_msgs/msg/DiagnosticArray"

OUTPUT_ENCODINGS = ("evt3", "mono")


def time_fields(time_us: int) -> dict:
    """builtin_interfaces/Time fields of a time in microseconds since the epoch."""
    time_us = int(time_us)
    return {"sec": time_us // 1_000_000, "nanosec": (time_us % 1_000_000) * 1000}


def header_fields(stamp_us: int, frame_id: str) -> dict:
    return {"stamp": time_fields(stamp_us), "frame_id": frame_id}


def foreground_packet(result: WindowResult, *, seq: int, width: int, height: int, encoding: str, frame_id: str,
                      previous_time_us: int | None) -> dict:
    """EventPacket of the window's foreground events.

    evt3 packets are stamped with their first event's time, the stamp a decoder
    anchors sensor time to; an empty packet carries the window start.
    """
    if encoding not in OUTPUT_ENCODINGS:
        raise ValueError(f"output encoding {encoding!r} is invalid: expected one of {OUTPUT_ENCODINGS}")
    events = result.window.events[result.window.foreground]
    payload, time_base_ns = encode_packet_payload(encoding, events, previous_time_us=previous_time_us)
    stamp_us = int(events["t"][0]) if events.shape[0] else result.window.start_us
    return {
        "header": header_fields(stamp_us, frame_id),
        "height": int(height),
        "width": int(width),
        "seq": int(seq),
        "time_base": int(time_base_ns),
        "encoding": encoding,
        "is_bigendian": False,
        "events": np.frombuffer(payload, dtype=np.uint8),
    }


def detections(result: WindowResult, frame_id: str) -> dict:
    """Detection2DArray with one detection per box, stamped at the window end."""
    header = header_fields(result.window.end_us, frame_id)
    items = []
    for box in result.boxes:
        center_x, center_y = box.center
        size_x, size_y = box.size
        items.append(
            {
                "header": header,
                "results": [
                    {
                        "hypothesis": {"class_id": "moving", "score": 1.0},
                        "pose": {
                            "pose": {
                                "position": {"x": float(center_x), "y": float(center_y), "z": 0.0},
                                "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0},
                            },
                            "covariance": np.zeros(36, dtype=np.float64),
                        },
                    }
                ],
                "bbox": {
                    "center": {"position": {"x": float(center_x), "y": float(center_y)}, "theta": 0.0},
                    "size_x": float(size_x),
                    "size_y": float(size_y),
                },
                "id": str(box.track_id) if box.track_id >= 0 else "",
            }
        )
    return {"header": header, "detections": items}


def _image(pixels: np.ndarray, encoding: str, stamp_us: int, frame_id: str) -> dict:
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    return {
        "header": header_fields(stamp_us, frame_id),
        "height": int(height),
        "width": int(width),
        "encoding": encoding,
        "is_bigendian": 0,
        "step": int(width * channels),
        "data": np.ascontiguousarray(pixels).reshape(-1),
    }


def overlay_image(result: WindowResult, width: int, height: int, frame_id: str) -> dict:
    """bgr8 overlay: background events dim grey, foreground red (ON) and blue (OFF), boxes green."""
    return _image(render_overlay(result.window, result.boxes, width, height), "bgr8", result.window.end_us, frame_id)


def mask_image(result: WindowResult, width: int, height: int, frame_id: str) -> dict:
    """mono8 mask: 255 at pixels with foreground events in the window."""
    return _image(render_mask(result.window, width, height), "mono8", result.window.end_us, frame_id)


def synaptic_ops(result: WindowResult, frame_id: str, bin_width_us: int, output_delay_bins: int) -> dict:
    """SynapticOps of the bins whose output decided the window."""
    operations = result.operations
    output_start_us = result.window.start_us + output_delay_bins * bin_width_us
    return {
        "header": header_fields(result.window.end_us, frame_id),
        "window_start": time_fields(output_start_us),
        "window_end": time_fields(output_start_us + operations["bins"] * bin_width_us),
        "bins": int(operations["bins"]),
        "bin_width_us": int(bin_width_us),
        "layers": [dict(layer) for layer in operations["layers"]],
        "total_input_spikes": operations["total_input_spikes"],
        "total_output_spikes": operations["total_output_spikes"],
        "total_synaptic_ops": operations["synaptic_ops"],
        "total_ann_macs": operations["ann_macs"],
        "accumulate_energy_pj": ACCUMULATE_ENERGY_PJ,
        "mac_energy_pj": MULTIPLY_ACCUMULATE_ENERGY_PJ,
        "snn_energy_pj": float(operations["snn_energy_pj"]),
        "ann_energy_pj": float(operations["ann_energy_pj"]),
        "energy_ratio": float(operations["energy_ratio"]),
    }


def diagnostics(stamp_us: int, values: dict, *, level: int = 0, message: str = "running") -> dict:
    """DiagnosticArray with one status named after the node; values become key-value pairs."""
    return {
        "header": header_fields(stamp_us, ""),
        "status": [
            {
                "level": int(level),
                "name": f"{NODE_NAME}: pipeline",
                "message": message,
                "hardware_id": "",
                "values": [{"key": str(key), "value": str(value)} for key, value in values.items()],
            }
        ],
    }
