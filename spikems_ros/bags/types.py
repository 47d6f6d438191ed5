"""Message definitions of the segmenter's outputs, for writing and reading bags with rosbags.

rosbags ships the ROS 2 Kilted types (std_msgs, sensor_msgs, geometry_msgs,
diagnostic_msgs) but neither vision_msgs, event_camera_msgs nor this package's
messages. The field lists below are registered from .msg text. They equal
msg/*.msg of this package and the vision_msgs 4.x field lists, without comments;
a test compares them with those files.
"""

from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from spikems_ros.events.message_definitions import EVENT_MESSAGE_DEFINITIONS

LAYER_SYNAPTIC_OPS_MSG = """\
string name
uint64 input_spikes
uint64 output_spikes
uint64 synaptic_ops
uint64 ann_macs
"""

SYNAPTIC_OPS_MSG = """\
std_msgs/Header header
builtin_interfaces/Time window_start
builtin_interfaces/Time window_end
uint32 bins
uint32 bin_width_us
LayerSynapticOps[] layers
uint64 total_input_spikes
uint64 total_output_spikes
uint64 total_synaptic_ops
uint64 total_ann_macs
float64 accumulate_energy_pj
float64 mac_energy_pj
float64 snn_energy_pj
float64 ann_energy_pj
float64 energy_ratio
"""

POINT_2D_MSG = """\
float64 x
float64 y
"""

POSE_2D_MSG = """\
vision_msgs/Point2D position
float64 theta
"""

BOUNDING_BOX_2D_MSG = """\
vision_msgs/Pose2D center
float64 size_x
float64 size_y
"""

OBJECT_HYPOTHESIS_MSG = """\
string class_id
float64 score
"""

OBJECT_HYPOTHESIS_WITH_POSE_MSG = """\
vision_msgs/ObjectHypothesis hypothesis
geometry_msgs/PoseWithCovariance pose
"""

DETECTION_2D_MSG = """\
std_msgs/Header header
vision_msgs/ObjectHypothesisWithPose[] results
vision_msgs/BoundingBox2D bbox
string id
"""

DETECTION_2D_ARRAY_MSG = """\
std_msgs/Header header
vision_msgs/Detection2D[] detections
"""

# Type name (``pkg/msg/Type``) -> definition, for the types rosbags does not ship.
OUTPUT_MESSAGE_DEFINITIONS = {
    "spikems_ros/msg/LayerSynapticOps": LAYER_SYNAPTIC_OPS_MSG,
    "spikems_ros/msg/SynapticOps": SYNAPTIC_OPS_MSG,
    "vision_msgs/msg/Point2D": POINT_2D_MSG,
    "vision_msgs/msg/Pose2D": POSE_2D_MSG,
    "vision_msgs/msg/BoundingBox2D": BOUNDING_BOX_2D_MSG,
    "vision_msgs/msg/ObjectHypothesis": OBJECT_HYPOTHESIS_MSG,
    "vision_msgs/msg/ObjectHypothesisWithPose": OBJECT_HYPOTHESIS_WITH_POSE_MSG,
    "vision_msgs/msg/Detection2D": DETECTION_2D_MSG,
    "vision_msgs/msg/Detection2DArray": DETECTION_2D_ARRAY_MSG,
    "event_camera_msgs/msg/EventPacket": EVENT_MESSAGE_DEFINITIONS["event_camera_msgs/msg/EventPacket"],
}


def register_types(typestore, definitions: dict) -> None:
    """Register message definitions (type name -> .msg text) in a rosbags typestore."""
    types = {}
    for name, text in definitions.items():
        types.update(get_types_from_msg(text, name))
    typestore.register(types)


def output_typestore():
    """Return a ROS 2 Kilted typestore with every type the segmenter publishes registered.

    The event array types of dvs_msgs and prophesee_event_msgs are registered too,
    so the same store serves ``spikems convert-bag``.
    """
    typestore = get_typestore(Stores.ROS2_KILTED)
    register_types(typestore, {**EVENT_MESSAGE_DEFINITIONS, **OUTPUT_MESSAGE_DEFINITIONS})
    return typestore
