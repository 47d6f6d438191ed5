"""Published field lists of the event-camera message types read from bags.

rosbags needs the definitions of types it does not ship; the same texts build
the test-support interface packages where the real ones are not installed.
Field lists follow event_camera_msgs (ROS 2, 2.x), dvs_msgs (rpg_dvs_ros) and
prophesee_event_msgs (prophesee_ros_wrapper).
"""

EVENT_PACKET_MSG = """\
std_msgs/Header header
uint32 height
uint32 width
uint64 seq
uint64 time_base
string encoding
bool is_bigendian
uint8[] events
"""

DVS_EVENT_MSG = """\
uint16 x
uint16 y
time ts
bool polarity
"""

DVS_EVENT_ARRAY_MSG = """\
std_msgs/Header header
uint32 height
uint32 width
dvs_msgs/Event[] events
"""

PROPHESEE_EVENT_MSG = """\
uint16 x
uint16 y
time ts
bool polarity
"""

PROPHESEE_EVENT_ARRAY_MSG = """\
std_msgs/Header header
uint32 height
uint32 width
prophesee_event_msgs/Event[] events
"""

# Type name (``pkg/msg/Type``) -> message definition text.
EVENT_MESSAGE_DEFINITIONS = {
    "event_camera_msgs/msg/EventPacket": EVENT_PACKET_MSG,
    "dvs_msgs/msg/Event": DVS_EVENT_MSG,
    "dvs_msgs/msg/EventArray": DVS_EVENT_ARRAY_MSG,
    "prophesee_event_msgs/msg/Event": PROPHESEE_EVENT_MSG,
    "prophesee_event_msgs/msg/EventArray": PROPHESEE_EVENT_ARRAY_MSG,
}
