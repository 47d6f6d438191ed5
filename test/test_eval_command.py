"""``spikems eval`` end to end on generated data, and the report built from its scores."""

import json
import math

import numpy as np
import pytest
import torch

from spikems_ros.baselines.ann2d import Ann2dNetwork, save_ann2d_weights
from spikems_ros.cli import main
from spikems_ros.evaluation.runner import summarize
from spikems_ros.snn.energy import ACCUMULATE_ENERGY_PJ, MULTIPLY_ACCUMULATE_ENERGY_PJ
from spikems_ros.snn.network import SpikeMSNetwork
from spikems_ros.snn.weights import save_weights

SMALL_SCENE = ["--synthetic", "--seed", "5", "--sequences", "2", "--seconds", "0.08", "--width", "48", "--height", "32"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)  # fixes the random initial weights
    save_weights(folder / "snn.pt", SpikeMSNetwork(), metadata={"bin_us": 1000, "output_delay_bins": 6, "window_bins": 10})
    save_ann2d_weights(folder / "ann.pt", Ann2dNetwork())
    return folder


@pytest.fixture(scope="module")
def report(weights, tmp_path_factory):
    folder = tmp_path_factory.mktemp("report") / "out"
    argv = ["eval", "--weights", str(weights / "snn.pt"), *SMALL_SCENE, "--windows", "1,3,10",
            "--baseline", str(weights / "ann.pt"), "--report", str(folder), "--warmup-ms", "10"]
    assert main(argv) == 0
    return folder, json.loads((folder / "report.json").read_text())


def test_report_files_written(report):
    folder, _ = report
    assert sorted(path.name for path in folder.iterdir()) == [
        "energy_per_layer.png", "iou_vs_window.png", "report.json", "results.md"
    ]
    assert (folder / "iou_vs_window.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (folder / "results.md").read_text()
    assert "| sequence | SNN 1 ms | ANN-2D 1 ms | SNN 3 ms |" in markdown
    assert "| seed5_seq1 |" in markdown
    assert "## Energy (10 ms windows)" in markdown


def test_report_rows_per_window(report):
    _, content = report
    assert [row["window_ms"] for row in content["windows"]] == [1, 3, 10]
    for row in content["windows"]:
        assert row["windows"] > 0
        for key in ("event_pixel_iou_mean", "per_event_iou_mean", "detection_rate_mean", "energy_ratio"):
            assert key in row
        assert 0.0 <= row["ann2d"]["event_pixel_iou_mean"] <= 1.0
        assert 0.0 <= row["filtered"]["per_event_iou_mean"] <= 1.0
    assert {row["sequence"] for row in content["sequences"]} == {"seed5_seq0", "seed5_seq1"}


def test_energy_table_adds_up(report):
    _, content = report
    energy = content["energy"]
    layers, total = energy["layers"][:-1], energy["layers"][-1]
    assert [row["layer"] for row in layers] == ["conv1", "conv2", "conv3", "deconv4", "deconv5", "deconv6"]
    assert total["layer"] == "total"
    assert total["synaptic_ops"] == sum(row["synaptic_ops"] for row in layers)
    assert total["ann_macs"] == sum(row["ann_macs"] for row in layers)
    assert total["snn_energy_pj"] == pytest.approx(total["synaptic_ops"] * ACCUMULATE_ENERGY_PJ)
    assert total["ann_energy_pj"] == pytest.approx(total["ann_macs"] * MULTIPLY_ACCUMULATE_ENERGY_PJ)
    assert sum(row["synaptic_ops"] for row in energy["sequences"]) == total["synaptic_ops"]

    ten_ms = content["windows"][2]
    assert ten_ms["synaptic_ops"] == total["synaptic_ops"]
    # One dense pass per scored window at 48x32.
    assert ten_ms["ann_macs"] % ten_ms["windows"] == 0


def test_incremental_summary(report):
    _, content = report
    incremental = content["incremental"]
    assert incremental["trained_window_ms"] == 10
    assert incremental["short_window_ms"] == 3
    assert incremental["latency_saved_ms"] == 7
    assert incremental["short_filtered_iou"] == content["windows"][1]["filtered"]["per_event_iou_mean"]


def test_json_output(weights, capsys):
    argv = ["eval", "--weights", str(weights / "snn.pt"), *SMALL_SCENE, "--windows", "5", "--json"]
    assert main(argv) == 0
    content = json.loads(capsys.readouterr().out)
    (row,) = content["windows"]
    assert row["window_ms"] == 5
    assert "ann2d" not in row
    assert content["incremental"]["filtered_fraction"] is None


def test_report_folder_not_overwritten(weights, tmp_path, caplog):
    (tmp_path / "keep.txt").write_text("x")
    argv = ["eval", "--weights", str(weights / "snn.pt"), *SMALL_SCENE, "--report", str(tmp_path)]
    assert main(argv) == 2
    assert "not empty; pass --force" in caplog.text


def test_spiking_weights_as_baseline_rejected(weights, caplog):
    argv = ["eval", "--weights", str(weights / "snn.pt"), *SMALL_SCENE, "--baseline", str(weights / "snn.pt")]
    assert main(argv) == 2
    assert "format is 'spikems-weights'" in caplog.text


def test_eed_folder_scores_detection_only(weights, tmp_path, capsys):
    folder = tmp_path / "eed"
    folder.mkdir()
    rng = np.random.default_rng(0)
    times_s = np.sort(rng.uniform(0, 0.08, 4000))
    xs = rng.integers(0, 240, times_s.shape[0])
    ys = rng.integers(0, 180, times_s.shape[0])
    (folder / "events.txt").write_text(
        "".join(f"{t:.6f} {x} {y} {i % 2}\n" for i, (t, x, y) in enumerate(zip(times_s, xs, ys)))
    )
    (folder / "boxes.txt").write_text("".join(f"{t:.3f} 10 10 40 40\n" for t in np.arange(0.0, 0.08, 0.005)))

    argv = ["eval", "--weights", str(weights / "snn.pt"), "--data", str(folder), "--windows", "10", "--json"]
    assert main(argv) == 0
    (row,) = json.loads(capsys.readouterr().out)["windows"]
    assert row["windows"] > 0
    assert row["event_pixel_iou_mean"] is None
    assert 0.0 <= row["detection_rate_mean"] <= 1.0


def test_detection_rate_ignores_windows_without_box():
    scores = [{"snn": {"event_pixel_iou": 0.5, "per_event_iou": 1.0, "detected": value}}
              for value in (1.0, 0.0, 1.0, float("nan"))]
    summary = summarize(scores, "snn")
    assert summary["windows"] == 4
    assert summary["detection_rate_mean"] == pytest.approx(2 / 3)
    assert summary["event_pixel_iou_mean"] == 0.5
    assert summary["per_event_iou_std"] == 0.0


def test_summary_of_nothing_is_nan():
    summary = summarize([], "snn")
    assert summary["windows"] == 0
    assert math.isnan(summary["detection_rate_mean"])


def test_report_header_reproduces_command(report):
    folder, _ = report
    command = (folder / "results.md").read_text().splitlines()[2]
    assert "--synthetic --seed 5 --sequences 2 --seconds 0.08 --width 48 --height 32" in command
    assert "--warmup-ms 10" in command
    assert "--baseline " in command


@pytest.mark.parametrize("option", ["--weights", "--baseline"])
def test_missing_weights_file_named(weights, tmp_path, caplog, option):
    files = {"--weights": str(weights / "snn.pt"), "--baseline": str(weights / "ann.pt")}
    files[option] = str(tmp_path / "missing.pt")
    argv = ["eval", "--weights", files["--weights"], *SMALL_SCENE, "--baseline", files["--baseline"]]
    assert main(argv) == 2
    assert f"{option} {tmp_path / 'missing.pt'}: file not found" in caplog.text


def test_ann_weights_as_weights_rejected(weights, caplog):
    argv = ["eval", "--weights", str(weights / "ann.pt"), *SMALL_SCENE]
    assert main(argv) == 2
    assert "is an ANN-2D weights file: pass it as --baseline" in caplog.text


def test_scene_options_rejected_with_data(weights, tmp_path, caplog):
    argv = ["eval", "--weights", str(weights / "snn.pt"), "--data", str(tmp_path), "--width", "64", "--seed", "3"]
    assert main(argv) == 2
    assert "--seed, --width apply to --synthetic only" in caplog.text


def test_window_without_scores_logged(weights, capsys, caplog):
    argv = ["eval", "--weights", str(weights / "snn.pt"), *SMALL_SCENE, "--windows", "5,500", "--json"]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)["windows"]
    assert [row["windows"] > 0 for row in rows] == [True, False]
    assert "no 500 ms window had ground truth" in caplog.text


def test_masks_without_foreground_rejected(weights, tmp_path, caplog):
    # Object ids stored as 1 instead of 1 x 1000 round to id 0: no event is foreground.
    masks = np.zeros((2, 32, 48), np.uint16)
    masks[:, 10:20, 10:20] = 1
    times_s = np.linspace(0.0, 0.1, 200)
    events = np.stack([times_s, np.full(200, 12.0), np.full(200, 12.0), np.zeros(200)], axis=1)
    path = tmp_path / "ids_not_scaled.npz"
    np.savez(path, events=events.astype(np.float32), mask=masks, discretization=np.float64(0.05))

    argv = ["eval", "--weights", str(weights / "snn.pt"), "--data", str(path), "--windows", "10"]
    assert main(argv) == 2
    assert "no event of ids_not_scaled.npz is foreground in the ground truth" in caplog.text
    assert "object id x 1000" in caplog.text
