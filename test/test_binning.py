"""Streaming binner: spike collapse, chunking invariance, dropped-event accounting, time jumps."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikems_ros.events.binning import StreamingBinner
from spikems_ros.events.dtype import make_events


def collect(binner, chunks):
    """Push chunks, flush, and return dense frames with their bin start times."""
    frames, starts = [], []
    for chunk in chunks:
        bins = binner.push(chunk)
        frames.append(bins.dense())
        starts.append(bins.bin_start_us)
    bins = binner.flush()
    frames.append(bins.dense())
    starts.append(bins.bin_start_us)
    return np.concatenate(frames), np.concatenate(starts)


def test_binner_collapses_same_pixel_and_polarity():
    events = make_events(
        x=[3, 3, 3, 4], y=[2, 2, 2, 2], t=[100, 500, 900, 950], p=[1, 1, 0, 1]
    )
    binner = StreamingBinner(width=8, height=4)

    frames, starts = collect(binner, [events])

    assert frames.shape == (1, 2, 4, 8)
    assert starts.tolist() == [0]
    assert frames[0, 1, 2, 3] == 1
    assert frames[0, 0, 2, 3] == 1
    assert frames[0, 1, 2, 4] == 1
    assert frames.sum() == 3


def test_binner_emits_bin_only_when_complete():
    binner = StreamingBinner(width=4, height=4, bin_width_us=1000)

    first = binner.push(make_events([0], [0], [1500], [1]))
    second = binner.push(make_events([1], [1], [2000], [1]))

    assert first.num_bins == 0
    assert second.bin_start_us.tolist() == [1000]
    assert binner.open_bin_start_us == 2000


def test_binner_emits_empty_bins_in_gaps():
    binner = StreamingBinner(width=4, height=4, bin_width_us=1000)
    events = make_events([0, 1], [0, 1], [100, 4100], [1, 0])

    frames, starts = collect(binner, [events])

    assert starts.tolist() == [0, 1000, 2000, 3000, 4000]
    assert frames[1:4].sum() == 0


def test_binner_advance_to_completes_bins_without_events():
    binner = StreamingBinner(width=4, height=4, bin_width_us=1000)
    binner.push(make_events([0], [0], [100], [1]))

    bins = binner.advance_to(3000)

    assert bins.bin_start_us.tolist() == [0, 1000, 2000]
    assert bins.num_spikes == 1
    assert binner.open_bin_start_us == 3000


def test_binner_drops_and_counts_out_of_range():
    binner = StreamingBinner(width=4, height=3)
    events = make_events([0, 4, 1, 2], [0, 0, 3, 2], [10, 20, 30, 40], [1, 1, 1, 0])

    frames, _ = collect(binner, [events])

    assert binner.counters.events_out_of_range == 2
    assert frames.sum() == 2


def test_binner_backward_jump_resets_timeline():
    binner = StreamingBinner(width=4, height=4, bin_width_us=1000)
    binner.push(make_events([0, 1], [0, 0], [5000, 6500], [1, 1]))

    bins = binner.push(make_events([2, 3], [0, 0], [100, 1200], [1, 1]))

    assert binner.counters.backward_jumps == 1
    # The old timeline's open bin (6000) ends it, then the new one starts at 0.
    assert bins.bin_start_us.tolist() == [6000, 0]
    assert bins.reset_at == 1
    assert binner.open_bin_start_us == 1000


def test_binner_drops_slightly_late_events():
    binner = StreamingBinner(width=4, height=4, bin_width_us=1000, backward_tolerance_us=1000)
    binner.push(make_events([0, 1], [0, 0], [100, 2100], [1, 1]))

    bins = binner.push(make_events([2, 3], [0, 0], [1900, 2200], [1, 1]))

    assert binner.counters.events_late == 1
    assert binner.counters.backward_jumps == 0
    assert bins.num_bins == 0


def test_binner_long_gap_restarts_timeline():
    binner = StreamingBinner(width=4, height=4, bin_width_us=1000, max_gap_us=50_000)
    events = make_events([0, 1], [0, 0], [100, 10_000_100], [1, 1])

    frames, starts = collect(binner, [events])

    assert binner.counters.forward_jumps == 1
    assert starts.tolist() == [0, 10_000_000]
    assert frames.sum() == 2


def test_binner_accounts_for_every_event():
    rng = np.random.default_rng(3)
    count = 5000
    events = make_events(
        rng.integers(0, 12, count),
        rng.integers(0, 10, count),
        np.sort(rng.integers(0, 50_000, count)),
        rng.integers(0, 2, count),
    )
    binner = StreamingBinner(width=10, height=10)

    collect(binner, np.array_split(events, 7))

    counters = binner.counters
    assert counters.events_in == count
    assert counters.events_binned + counters.events_out_of_range + counters.events_late == count
    assert counters.events_out_of_range > 0


def test_binner_rejects_invalid_configuration():
    with pytest.raises(ValueError, match="bin_width_us"):
        StreamingBinner(width=4, height=4, bin_width_us=0)
    with pytest.raises(ValueError, match="width"):
        StreamingBinner(width=0, height=4)


def test_binner_rejects_wrong_dtype():
    binner = StreamingBinner(width=4, height=4)
    with pytest.raises(TypeError, match="dtype"):
        binner.push(np.zeros(3, dtype=np.float64))


@st.composite
def event_streams(draw):
    count = draw(st.integers(0, 300))
    times = sorted(draw(st.lists(st.integers(0, 20_000), min_size=count, max_size=count)))
    xs = draw(st.lists(st.integers(0, 5), min_size=count, max_size=count))
    ys = draw(st.lists(st.integers(0, 4), min_size=count, max_size=count))
    ps = draw(st.lists(st.integers(0, 1), min_size=count, max_size=count))
    cuts = sorted(draw(st.lists(st.integers(0, count), max_size=6)))
    return make_events(xs, ys, times, ps), cuts


@settings(max_examples=60, deadline=None)
@given(event_streams(), st.sampled_from([250, 1000, 3000]))
def test_binner_output_independent_of_chunking(stream, bin_width_us):
    events, cuts = stream
    whole = StreamingBinner(width=6, height=5, bin_width_us=bin_width_us)
    chunked = StreamingBinner(width=6, height=5, bin_width_us=bin_width_us)

    frames_whole, starts_whole = collect(whole, [events])
    frames_chunked, starts_chunked = collect(chunked, np.split(events, cuts))

    np.testing.assert_array_equal(starts_chunked, starts_whole)
    np.testing.assert_array_equal(frames_chunked, frames_whole)

    # Reference: every event sets its (bin, polarity, y, x) cell.
    if events.shape[0]:
        reference = np.zeros_like(frames_whole)
        first_bin = (events["t"][0] // bin_width_us)
        reference[events["t"] // bin_width_us - first_bin, events["p"], events["y"], events["x"]] = 1
        np.testing.assert_array_equal(frames_whole, reference)
