"""Launch the spikems_segmenter node on an event camera stream, optionally with RViz.

    ros2 launch spikems_ros segment.launch.py camera_name:=event_camera rviz:=true

The node runs in the namespace ``camera_name``, so its outputs are
``/<camera_name>/spikems_segmenter/{foreground_events,detections,image,mask,synaptic_ops}``.
It reads ``events_topic``, by default ``/<camera_name>/events``, which is where
metavision_driver and libcaer_driver publish when their node is named after
the camera.
"""

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "spikems_ros"
EXECUTABLE = "segmenter_node"
NODE_NAME = "spikems_segmenter"

# Topics of the RViz configuration, written for the default camera_name.
RVIZ_DEFAULT_NAMESPACE = "/event_camera"
RVIZ_TOPICS = ("image", "mask")


def _is_true(text: str) -> bool:
    return text.strip().lower() in ("true", "1", "yes", "on")


def _launch_nodes(context):
    """Build the node actions from the launch arguments' values."""
    share = get_package_share_directory(PACKAGE)
    camera_name = LaunchConfiguration("camera_name").perform(context).strip("/")
    namespace = f"/{camera_name}" if camera_name else ""
    events_topic = LaunchConfiguration("events_topic").perform(context) or f"{namespace}/events"
    use_sim_time = _is_true(LaunchConfiguration("use_sim_time").perform(context))
    weights = LaunchConfiguration("weights").perform(context)

    # Later entries override earlier ones, so weights set here wins over the file,
    # and an empty weights argument leaves the file's value alone.
    parameters = [LaunchConfiguration("params_file").perform(context), {"use_sim_time": use_sim_time}]
    if weights:
        parameters.append({"weights": weights})

    actions = [
        Node(
            package=PACKAGE,
            executable=EXECUTABLE,
            name=NODE_NAME,
            namespace=namespace,
            parameters=parameters,
            remappings=[("~/events", events_topic)],
            output="screen",
            emulate_tty=True,
        )
    ]

    if _is_true(LaunchConfiguration("rviz").perform(context)):
        remappings = [
            (f"{RVIZ_DEFAULT_NAMESPACE}/{NODE_NAME}/{topic}", f"{namespace}/{NODE_NAME}/{topic}")
            for topic in RVIZ_TOPICS
        ]
        actions.append(
            Node(
                package="rviz2",
                executable="rviz2",
                name="spikems_rviz",
                arguments=["-d", f"{share}/rviz/spikems.rviz"],
                parameters=[{"use_sim_time": use_sim_time}],
                remappings=remappings,
                output="screen",
            )
        )
    return actions


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=f"{share}/config/segment.yaml",
                description="YAML file of node parameters (spikems_segmenter: ros__parameters:)",
            ),
            DeclareLaunchArgument(
                "weights",
                default_value="",
                description="weights file of the network; empty keeps the params_file value "
                "(by default the weights shipped with the package)",
            ),
            DeclareLaunchArgument(
                "camera_name",
                default_value="event_camera",
                description="namespace of the node, and of the default events topic",
            ),
            DeclareLaunchArgument(
                "events_topic",
                default_value="",
                description="EventPacket topic to segment; empty means /<camera_name>/events",
            ),
            DeclareLaunchArgument(
                "use_sim_time",
                default_value="false",
                description="use /clock for node time (when playing a bag with --clock)",
            ),
            DeclareLaunchArgument(
                "rviz",
                default_value="false",
                description="start RViz with rviz/spikems.rviz showing the overlay and the mask",
            ),
            OpaqueFunction(function=_launch_nodes),
        ]
    )
