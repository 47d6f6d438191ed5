"""The benchmark commands run end to end and report consistent counts (timings are not checked)."""

import json

import numpy as np
import pytest

from spikems_ros.benchmarks.stream import split_bins
from spikems_ros.cli import main
from spikems_ros.events.binning import StreamingBinner
from spikems_ros.events.dtype import make_events

from conftest import real_file


def test_split_bins_keeps_every_spike():
    rng = np.random.default_rng(0)
    count = 500
    events = make_events(rng.integers(0, 20, count), rng.integers(0, 10, count),
                         np.sort(rng.integers(0, 23_000, count)), rng.integers(0, 2, count))
    bins = StreamingBinner(20, 10).push(events)

    chunks = split_bins(bins, 5)

    assert [chunk.num_bins for chunk in chunks] == [5, 5, 5, 5, 2]
    rejoined = np.concatenate([chunk.dense() for chunk in chunks])
    np.testing.assert_array_equal(rejoined, bins.dense())


def test_bench_stream_smoke(capsys):
    code = main(["bench", "stream", "--width", "40", "--height", "30", "--rates", "1e6", "--seconds", "0.01",
                 "--chunk-bins", "4", "--json"])

    assert code == 0
    report = json.loads(capsys.readouterr().out)
    (entry,) = report["rates"]
    assert entry["bins"] == 10
    paths = [row["path"] for row in entry["rows"]]
    assert paths[0] == "reference"
    assert paths[-1] == "fast"
    for row in entry["rows"]:
        assert row["bins"] == 10
        assert row["real_time_factor"] > 0
    assert entry["rows"][0]["speedup_vs_reference"] == 1.0
    # Both paths count the same synaptic work on this stream.
    assert entry["fast_synaptic_ops"] > 0
    assert entry["fast_synaptic_ops"] == pytest.approx(entry["synaptic_ops_per_bin"] * entry["bins"], rel=1e-3)


def test_bench_stream_rejects_bad_rates():
    assert main(["bench", "stream", "--rates", "fast", "--seconds", "0.01"]) == 2


@pytest.mark.parametrize("arguments, message", [
    (["--rates", "inf"], "finite rates > 0"),
    (["--seconds", "inf"], "seconds = inf is invalid"),
    (["--rates", "1e9", "--seconds", "2"], "use a lower rate or fewer seconds"),
    (["--threads", "0"], "threads = 0 is invalid"),
    (["--threads", "1000"], "threads = 1000 is invalid: expected an integer from 1 to"),
    (["--width", "0"], "width = 0 is invalid: expected 16 to 65535 pixels"),
])
def test_bench_stream_rejects_bad_settings(arguments, message, caplog):
    # Rejected before any path runs, so these take no time.
    assert main(["bench", "stream", *arguments]) == 2
    assert message in caplog.text


def test_bench_decode_rejects_zero_repeats(tmp_path, caplog):
    assert main(["bench", "decode", str(tmp_path / "missing.raw"), "--repeats", "0"]) == 2
    assert "--repeats 0 is invalid" in caplog.text


def test_bench_decode_counts_match(capsys):
    path = real_file("evt3_sample.raw")

    code = main(["bench", "decode", str(path), "--repeats", "1", "--json"])

    assert code == 0
    report = json.loads(capsys.readouterr().out)
    counts = {row["decoder"].split()[0]: row["events"] for row in report["rows"]}
    assert counts["spikems_ros"] == 219_596
    if "expelliarmus" in counts:
        assert counts["expelliarmus"] == counts["spikems_ros"]
