"""Valid payloads of every encoding, the starting points of the mutation fuzzing.

Synthetic payloads come from the encoders and from hand-built words; real ones
from the recordings in the real-data folder, when it is present.
"""

import struct
from pathlib import Path

import numpy as np

from spikems_ros.events.dtype import make_events
from spikems_ros.events.evt2 import encode_evt2
from spikems_ros.events.evt3 import encode_evt3
from spikems_ros.events.mono import encode_mono
from spikems_ros.events.raw import read_raw_header

# Real packets taken from each bag, and bytes taken from each one, to keep every fuzz input small.
REAL_PACKETS_PER_BAG = 4
MAX_SEED_BYTES = 4096


def random_events(seed: int, count: int = 60, width: int = 640, height: int = 480) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return make_events(
        rng.integers(0, width, count),
        rng.integers(0, height, count),
        np.sort(rng.integers(1_000, 40_000, count)),
        rng.integers(0, 2, count),
    )


def libcaer_payload(events: np.ndarray) -> bytes:
    """libcaer polarity events: uint32 data (x << 17 | y << 2 | p << 1 | valid) and int32 microseconds."""
    data = (events["x"].astype(np.uint32) << 17) | (events["y"].astype(np.uint32) << 2)
    data |= (events["p"].astype(np.uint32) << 1) | 1
    records = np.empty(events.size, dtype=[("data", "<u4"), ("timestamp", "<i4")])
    records["data"] = data
    records["timestamp"] = events["t"] - events["t"][0]
    return records.tobytes()


def libcaer_cmp_payload() -> bytes:
    """TIME_HIGH, TIME_LOW, ADDR_X, ADDR_Y, VECT_BASE_Y and two VECT_8 words, as libcaer_driver writes them."""
    words = [0x0001, 0x1010, 0x2000 | 100, 0x3000 | 0x800 | 50, 0x4000 | 8, 0x5000 | 0b10100101, 0x5000 | 0xFF,
             0x1020, 0x2000 | 7, 0x3000 | 3]
    return struct.pack(f"<{len(words)}H", *words)


def synthetic_seeds() -> dict[str, list[bytes]]:
    """Encoding name -> valid payloads built here."""
    events = [random_events(seed) for seed in range(3)]
    # Events of one row and time make VECT_12 words in EVT 3.0.
    row = make_events(np.arange(24, 48), np.full(24, 7), np.full(24, 5_000), np.ones(24))
    return {
        "evt3": [encode_evt3(chunk) for chunk in events] + [encode_evt3(row)],
        "evt2": [encode_evt2(chunk) for chunk in events],
        "mono": [encode_mono(chunk, int(chunk["t"][0]) * 1000) for chunk in events],
        "libcaer": [libcaer_payload(chunk) for chunk in events],
        "libcaer_cmp": [libcaer_cmp_payload()],
    }


def _bag_payloads(path: Path) -> dict[str, list[bytes]]:
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    from spikems_ros.events.message_definitions import EVENT_PACKET_MSG

    typestore = get_typestore(Stores.ROS2_KILTED)
    # event_array_msgs/EventArray is the older name of EventPacket, with the same fields.
    packet_types = ("event_camera_msgs/msg/EventPacket", "event_array_msgs/msg/EventArray")
    for type_name in packet_types:
        typestore.register(get_types_from_msg(EVENT_PACKET_MSG, type_name))
    payloads: dict[str, list[bytes]] = {}
    with AnyReader([path], default_typestore=typestore) as reader:
        connections = [c for c in reader.connections if c.msgtype in packet_types]
        for index, (connection, _, raw) in enumerate(reader.messages(connections=connections)):
            if index == REAL_PACKETS_PER_BAG:
                break
            message = reader.deserialize(raw, connection.msgtype)
            payloads.setdefault(message.encoding, []).append(message.events.tobytes()[:MAX_SEED_BYTES])
    return payloads


def real_seeds(real_data_dir: Path) -> dict[str, list[bytes]]:
    """Encoding name -> payloads cut from the real recordings present in ``real_data_dir``."""
    seeds: dict[str, list[bytes]] = {}
    for name in ("test_events_1.db3", "test_data_mono_cd_0.db3"):
        path = real_data_dir / name
        if path.is_file():
            for encoding, payloads in _bag_payloads(path).items():
                seeds.setdefault(encoding, []).extend(payloads)

    raw_path = real_data_dir / "evt3_sample.raw"
    if raw_path.is_file():
        with open(raw_path, "rb") as file:
            read_raw_header(file, raw_path)
            seeds.setdefault("evt3", []).append(file.read(MAX_SEED_BYTES))
    return seeds


def all_seeds(real_data_dir: Path) -> dict[str, list[bytes]]:
    seeds = synthetic_seeds()
    for encoding, payloads in real_seeds(real_data_dir).items():
        seeds.setdefault(encoding, []).extend(payloads)
    return seeds
