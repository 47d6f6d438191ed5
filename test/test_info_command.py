"""spikems info: summary of an event file, as text and as JSON."""

import json

from spikems_ros.cli import main
from spikems_ros.simulation import SceneConfig, simulate_sequence, write_sequence


def write_scene(tmp_path):
    sequence = simulate_sequence(SceneConfig(width=32, height=24, duration_s=0.02, seed=6), 0)
    path = tmp_path / "seq_0000.npz"
    write_sequence(path, sequence)
    return path, sequence


def test_info_json_fields(tmp_path, capsys):
    path, sequence = write_scene(tmp_path)

    assert main(["info", str(path), "--json"]) == 0

    summary = json.loads(capsys.readouterr().out)
    assert summary["format"] == "evimo-npz"
    assert (summary["width"], summary["height"]) == (32, 24)
    assert summary["events"] == sequence.events.shape[0]
    assert summary["first_time_us"] == int(sequence.events["t"][0])
    assert summary["last_time_us"] == int(sequence.events["t"][-1])
    assert summary["masks"] == sequence.masks.shape[0]


def test_info_text_output(tmp_path, capsys):
    path, _ = write_scene(tmp_path)

    assert main(["info", str(path)]) == 0

    text = capsys.readouterr().out
    assert "resolution:  32x24" in text
    assert "ev/s" in text


def test_info_missing_file(tmp_path, caplog):
    assert main(["info", str(tmp_path / "absent.bag")]) == 2
    assert "absent.bag" in caplog.text
