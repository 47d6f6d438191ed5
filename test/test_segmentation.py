"""Streaming segmentation: the network driven from spike bins, and the window classification rule."""

import numpy as np
import torch

from spikems_ros.events.binning import SpikeBins, StreamingBinner
from spikems_ros.events.dtype import make_events
from spikems_ros.segmentation import BinOperations, NetworkOutput, StreamSegmenter, WindowClassifier
from spikems_ros.snn.network import SpikeMSNetwork


def active_network(seed=7):
    """A network whose layers all fire on sparse input; weights on a 2^-8 grid keep sums exact."""
    generator = torch.Generator().manual_seed(seed)
    network = SpikeMSNetwork()
    with torch.no_grad():
        for layer in network.layers:
            bound = 0.4 / layer.geometry.in_channels**0.5
            weight = bound * (2 * torch.rand(layer.weight.shape, generator=generator) - 1)
            layer.weight.copy_(torch.round(weight * 256) / 256)
    return network


def random_bins(width=21, height=17, bins=40, density=0.05, seed=3):
    rng = np.random.default_rng(seed)
    count = int(width * height * 2 * bins * density)
    events = make_events(
        rng.integers(0, width, count),
        rng.integers(0, height, count),
        np.sort(rng.integers(0, bins * 1000, count)),
        rng.integers(0, 2, count),
    )
    binner = StreamingBinner(width, height)
    first = binner.push(events)
    return first, binner.flush(), events


def output_keys(output: NetworkOutput):
    spikes = output.spikes
    return set(zip(spikes.bin_start_us[spikes.bin_index].tolist(), spikes.channel.tolist(),
                   spikes.y.tolist(), spikes.x.tolist()))


def test_segmenter_matches_window_forward():
    network = active_network()
    bins, tail, _ = random_bins()
    segmenter = StreamSegmenter(network, 21, 17, chunk_bins=7)

    output = segmenter.process(bins)

    frames = torch.from_numpy(bins.dense().astype(np.float32)).permute(1, 2, 3, 0)[None]  # (1, 2, H, W, T)
    reference = network(frames)[0]  # (2, H, W, T)
    channel, y, x, step = torch.nonzero(reference, as_tuple=True)
    expected = set(zip((bins.bin_start_us[step.numpy()]).tolist(), channel.tolist(), y.tolist(), x.tolist()))
    assert len(expected) > 0
    assert output_keys(output) == expected


def test_segmenter_independent_of_chunk_size():
    network = active_network()
    bins, _, _ = random_bins()

    by_one = StreamSegmenter(network, 21, 17, chunk_bins=1).process(bins)
    by_many = StreamSegmenter(network, 21, 17, chunk_bins=16).process(bins)

    assert output_keys(by_one) == output_keys(by_many)
    np.testing.assert_array_equal(by_one.operations.synaptic_ops, by_many.operations.synaptic_ops)


def test_segmenter_operations_match_step_statistics():
    network = active_network()
    bins, _, _ = random_bins(bins=12)
    output = StreamSegmenter(network, 21, 17, chunk_bins=5).process(bins)

    state = network.initial_state(1, 17, 21)
    frames = torch.from_numpy(bins.dense().astype(np.float32))
    for index in range(bins.num_bins):
        _, state, stats = network.step(frames[index][None], state)
        assert [int(s.synaptic_ops[0]) for s in stats] == output.operations.synaptic_ops[index].tolist()
        assert [int(s.input_spikes[0]) for s in stats] == output.operations.input_spikes[index].tolist()
        assert [int(s.output_spikes[0]) for s in stats] == output.operations.output_spikes[index].tolist()


def test_segmenter_carries_state_across_calls():
    network = active_network()
    bins, _, events = random_bins()
    whole = StreamSegmenter(network, 21, 17).process(bins)

    binner = StreamingBinner(21, 17)
    split = StreamSegmenter(network, 21, 17)
    keys = set()
    for chunk in np.array_split(events, 5):
        keys |= output_keys(split.process(binner.push(chunk)))

    assert keys == output_keys(whole)


def test_segmenter_resets_at_time_jump():
    network = active_network()
    bins, _, _ = random_bins(bins=20)
    fresh = StreamSegmenter(network, 21, 17).process(bins)

    # The same bins again after a reset marker must give the same spikes as from rest.
    jumped = SpikeBins(
        bin_start_us=np.concatenate([bins.bin_start_us, bins.bin_start_us]),
        bin_index=np.concatenate([bins.bin_index, bins.bin_index + bins.num_bins]),
        channel=np.concatenate([bins.channel, bins.channel]),
        y=np.concatenate([bins.y, bins.y]),
        x=np.concatenate([bins.x, bins.x]),
        width=21, height=17, bin_width_us=1000, reset_at=bins.num_bins,
    )
    output = StreamSegmenter(network, 21, 17, chunk_bins=6).process(jumped)

    second_half = output.spikes.bin_index >= bins.num_bins
    np.testing.assert_array_equal(np.sort(output.spikes.bin_index[second_half] - bins.num_bins),
                                  np.sort(fresh.spikes.bin_index))
    replayed = set(zip((output.spikes.bin_index[second_half] - bins.num_bins).tolist(),
                       output.spikes.channel[second_half].tolist(), output.spikes.y[second_half].tolist(),
                       output.spikes.x[second_half].tolist()))
    from_rest = set(zip(fresh.spikes.bin_index.tolist(), fresh.spikes.channel.tolist(), fresh.spikes.y.tolist(),
                        fresh.spikes.x.tolist()))
    assert len(from_rest) > 0
    assert replayed == from_rest


def hand_made_output(bin_starts_us, spikes, num_layers=6):
    """NetworkOutput for bins starting at bin_starts_us with spikes (bin_position, y, x)."""
    positions = np.array([spike[0] for spike in spikes], dtype=np.int64)
    return NetworkOutput(
        spikes=SpikeBins(
            bin_start_us=np.asarray(bin_starts_us, dtype=np.int64),
            bin_index=positions,
            channel=np.zeros(len(spikes), np.uint8),
            y=np.array([spike[1] for spike in spikes], dtype=np.uint16),
            x=np.array([spike[2] for spike in spikes], dtype=np.uint16),
            width=4, height=3, bin_width_us=1000,
        ),
        operations=BinOperations(*(np.ones((len(bin_starts_us), num_layers), np.int64) for _ in range(3))),
    )


def test_classifier_reads_delayed_output_bins():
    classifier = WindowClassifier(4, 3, bin_us=1000, window_bins=10, output_delay_bins=6, num_layers=6)
    events = make_events([1, 2, 1], [1, 1, 2], [500, 4000, 9000], [1, 0, 1])
    classifier.add_events(events)
    # Output bins 0..19 ms; a spike at (1, 1) in bin 3 (before the delay, ignored)
    # and at (1, 1) again and (2, 1) in bins 6 and 15 (inside [6, 16)).
    bin_starts = np.arange(20) * 1000
    classifier.add_output(hand_made_output(bin_starts, [(3, 2, 1), (6, 1, 1), (15, 1, 2)]))

    windows = classifier.pop_windows()

    assert len(windows) == 1
    window = windows[0]
    assert (window.start_us, window.end_us) == (0, 10_000)
    assert window.foreground.tolist() == [True, True, False]
    assert window.output_bins == 10
    assert window.synaptic_ops.tolist() == [10] * 6


def test_classifier_sorts_late_events():
    # The binner accepts events up to its backward tolerance late, in a later chunk.
    classifier = WindowClassifier(4, 3, bin_us=1000, window_bins=10, output_delay_bins=6, num_layers=6)
    classifier.add_events(make_events([1, 2], [1, 1], [500, 4000], [1, 0]))
    classifier.add_events(make_events([3, 0], [2, 2], [3500, 9000], [1, 1]))
    classifier.add_output(hand_made_output(np.arange(16) * 1000, []))

    window = classifier.pop_windows()[0]

    assert window.events["t"].tolist() == [500, 3500, 4000, 9000]
    assert window.events["x"].tolist() == [1, 3, 2, 0]


def test_classifier_waits_for_delayed_bins():
    classifier = WindowClassifier(4, 3, bin_us=1000, window_bins=10, output_delay_bins=6, num_layers=6)
    classifier.add_events(make_events([1], [1], [500], [1]))
    classifier.add_output(hand_made_output(np.arange(15) * 1000, []))

    assert classifier.pop_windows() == []

    classifier.add_output(hand_made_output([15_000], []))
    assert len(classifier.pop_windows()) == 1


def test_classifier_flush_releases_every_event():
    classifier = WindowClassifier(4, 3, bin_us=1000, window_bins=5, output_delay_bins=2, num_layers=6)
    events = make_events([0, 1, 2, 3], [0, 0, 1, 2], [100, 5200, 11_000, 12_500], [1, 1, 0, 0])
    classifier.add_events(events)
    classifier.add_output(hand_made_output(np.arange(8) * 1000, []))

    windows = classifier.pop_windows(flush=True)

    released = np.concatenate([window.events for window in windows])
    np.testing.assert_array_equal(released, events)
