"""Fuzzing of the file readers: damaged RAW, bag, npz and AEDAT4 files.

``read_file`` must return a recording or raise FileFormatError naming the file;
any other exception, or a hang, is a failure. RAW bodies are checked more
closely: a bad word is reported at its byte offset in the file.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rosbags.rosbag2 import StoragePlugin
from rosbags.rosbag2 import Writer as Ros2Writer
from test_readers_bags import DVS_ARRAY, array_message, event_typestore

from spikems_ros.events.dtype import EVENT_DTYPE
from spikems_ros.events.errors import FileFormatError
from spikems_ros.events.readers import read_file
from spikems_ros.events.raw import read_prophesee_raw

from .fuzz_tally import fuzz_input, fuzz_settings
from .seed_packets import random_events, synthetic_seeds
from .test_decoder_fuzz import mutated

# Each example writes and reads a file, so fewer examples than for payloads.
MAX_EXAMPLES = 80

FILE_FUZZ_SETTINGS = fuzz_settings(MAX_EXAMPLES)

RAW_HEADERS = {
    "evt3": b"% format EVT3;height=480;width=640\n% end\n",
    "evt2": b"% evt 2.0\n% geometry 640x480\n",
}


def small_files(folder) -> dict[str, bytes]:
    """File name -> content of one small valid file of each binary format."""
    seeds = synthetic_seeds()
    files = {
        "events.raw": RAW_HEADERS["evt3"] + seeds["evt3"][0],
        "events_evt2.raw": RAW_HEADERS["evt2"] + seeds["evt2"][0],
    }

    npz_path = folder / "evimo.npz"
    events = random_events(0)
    table = np.stack([events["t"] / 1e6, events["x"], events["y"], events["p"]], axis=1).astype(np.float32)
    np.savez(npz_path, events=table)
    files["evimo.npz"] = npz_path.read_bytes()

    store = event_typestore(False)
    bag_path = folder / "bag"
    with Ros2Writer(bag_path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        connection = writer.add_connection("/dvs/events", DVS_ARRAY, typestore=store)
        for index in range(3):
            message = array_message(store, DVS_ARRAY, False, [(index, 2, 10, 1000 * e, True) for e in range(20)])
            writer.write(connection, 1_000_000_000 * (10 + index), store.serialize_cdr(message, DVS_ARRAY))
    files["events.mcap"] = next(bag_path.glob("*.mcap")).read_bytes()
    return files


@pytest.fixture(scope="module")
def fuzz_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("file_fuzz")


@pytest.fixture(scope="module")
def valid_files(fuzz_folder) -> dict[str, bytes]:
    return small_files(fuzz_folder)


def read_damaged(path) -> None:
    """Read ``path``; a recording or FileFormatError naming it are the only accepted outcomes."""
    try:
        recording = read_file(path)
    except FileFormatError as error:
        assert error.path == str(path)
        return
    assert recording.events.dtype == EVENT_DTYPE


@pytest.mark.parametrize("name", ["events.raw", "events_evt2.raw", "evimo.npz", "events.mcap", "events.db3",
                                  "events.bag", "events.aedat4"])
def test_random_file_content(name, fuzz_folder):
    path = fuzz_folder / f"random_{name}"

    @FILE_FUZZ_SETTINGS
    @given(content=st.binary(max_size=4096))
    def run(content):
        path.write_bytes(content)
        with fuzz_input(f"read_file random {path.suffix}"):
            read_damaged(path)

    run()


@pytest.mark.parametrize("name", ["events.raw", "events_evt2.raw", "evimo.npz", "events.mcap"])
def test_damaged_valid_file(name, fuzz_folder, valid_files):
    path = fuzz_folder / f"damaged_{name}"
    content = valid_files[name]

    @FILE_FUZZ_SETTINGS
    @given(damaged=mutated([content]))
    def run(damaged):
        path.write_bytes(damaged)
        with fuzz_input(f"read_file damaged {name}"):
            read_damaged(path)

    run()


@pytest.mark.parametrize("encoding", ["evt3", "evt2"])
def test_raw_body_errors_name_file_offset(encoding, fuzz_folder):
    path = fuzz_folder / f"body_{encoding}.raw"
    header = RAW_HEADERS[encoding]

    @FILE_FUZZ_SETTINGS
    @given(body=st.binary(max_size=4096))
    def run(body):
        path.write_bytes(header + body)
        with fuzz_input(f"raw body {encoding}"):
            try:
                recording = read_prophesee_raw(path, chunk_bytes=256)
            except FileFormatError as error:
                assert error.path == str(path)
                # EVT 2.0 headers without '% end' take a body starting with '%' for a header line.
                assert any(word in error.reason for word in ("truncated", "at byte", "header")), error.reason
                return
            assert recording.events.dtype == EVENT_DTYPE

    run()


def test_mcap_record_length_beyond_memory(fuzz_folder, valid_files):
    content = bytearray(valid_files["events.mcap"])
    # The first record (the MCAP header) follows the 8-byte magic: 1 opcode byte, then a uint64 length.
    content[9:17] = (1 << 62).to_bytes(8, "little")
    path = fuzz_folder / "huge_record.mcap"
    path.write_bytes(bytes(content))

    with pytest.raises(FileFormatError, match="larger than the memory available"):
        read_file(path)
