"""Segmentation pipeline: event accounting, time jumps, boxes and tracking, rendering."""

import numpy as np
import pytest
import torch

from spikems_ros.events.dtype import make_events
from spikems_ros.pipeline import BoxTracker, Box, PipelineConfig, SegmentationPipeline, find_boxes, render_overlay
from spikems_ros.snn.network import SpikeMSNetwork


def active_network():
    generator = torch.Generator().manual_seed(1)
    network = SpikeMSNetwork()
    with torch.no_grad():
        for layer in network.layers:
            bound = 0.6 / layer.geometry.in_channels**0.5
            layer.weight.copy_(bound * (2 * torch.rand(layer.weight.shape, generator=generator) - 0.6))
    return network


def random_events(count, width, height, duration_us, seed, start_us=0):
    rng = np.random.default_rng(seed)
    return make_events(
        rng.integers(0, width, count), rng.integers(0, height, count),
        np.sort(rng.integers(start_us, start_us + duration_us, count)), rng.integers(0, 2, count),
    )


def run_pipeline(pipeline, chunks):
    results = []
    for chunk in chunks:
        results += pipeline.push_events(chunk)
    return results + pipeline.flush()


def test_pipeline_accounts_for_every_event():
    events = random_events(20_000, 40, 30, 60_000, seed=2)
    pipeline = SegmentationPipeline(active_network(), 40, 30, PipelineConfig(chunk_bins=4))

    results = run_pipeline(pipeline, np.array_split(events, 13))

    released = sum(result.window.events.shape[0] for result in results)
    counters = pipeline.counters
    assert released == events.shape[0]
    assert counters.events_foreground + counters.events_background == events.shape[0]
    assert counters.events_foreground > 0


def test_pipeline_output_independent_of_chunking():
    events = random_events(10_000, 40, 30, 40_000, seed=3)
    network = active_network()

    whole = run_pipeline(SegmentationPipeline(network, 40, 30, PipelineConfig(tracking=False)), [events])
    chunked = run_pipeline(
        SegmentationPipeline(network, 40, 30, PipelineConfig(tracking=False)), np.array_split(events, 17)
    )

    assert [result.window.start_us for result in whole] == [result.window.start_us for result in chunked]
    for first, second in zip(whole, chunked):
        np.testing.assert_array_equal(first.window.foreground, second.window.foreground)


def test_pipeline_resets_on_backward_jump():
    first = random_events(5000, 40, 30, 50_000, seed=4, start_us=1_000_000)
    second = random_events(5000, 40, 30, 50_000, seed=5, start_us=0)
    pipeline = SegmentationPipeline(active_network(), 40, 30)

    results = run_pipeline(pipeline, [first, second])

    assert pipeline.counters.time_resets == 1
    released = sum(result.window.events.shape[0] for result in results)
    assert released == 10_000
    starts = [result.window.start_us for result in results]
    assert starts.index(0) > 0


def test_pipeline_rejects_mismatched_bin_width():
    with pytest.raises(ValueError, match="bin_width_us"):
        SegmentationPipeline(SpikeMSNetwork(), 10, 10, PipelineConfig(bin_width_us=500))


def test_find_boxes_separates_blobs_and_drops_noise():
    pixels = np.zeros((30, 40), dtype=bool)
    pixels[2:8, 3:9] = True
    pixels[20:26, 25:35] = True
    pixels[15, 15] = True  # isolated noise pixel

    boxes = find_boxes(pixels, PipelineConfig(box_min_pixels=5))

    coordinates = sorted((box.x_min, box.y_min, box.x_max, box.y_max) for box in boxes)
    assert coordinates == [(3, 2, 8, 7), (25, 20, 34, 25)]


def test_tracker_keeps_identity_of_moving_box():
    tracker = BoxTracker(PipelineConfig())
    identities = []
    for step in range(6):
        box = Box(10 + 2 * step, 10, 20 + 2 * step, 18, pixels=50)
        tracked = tracker.update([box])
        assert len(tracked) == 1
        identities.append(tracked[0].track_id)
    assert len(set(identities)) == 1


def test_tracker_drops_lost_track():
    tracker = BoxTracker(PipelineConfig(track_max_missed_windows=2))
    tracker.update([Box(0, 0, 5, 5, pixels=20)])
    tracker.update([])
    tracker.update([])
    tracked = tracker.update([Box(0, 0, 5, 5, pixels=20)])
    assert tracked[0].track_id == 1


def test_render_overlay_colours():
    events = random_events(100, 40, 30, 5000, seed=6)
    pipeline = SegmentationPipeline(active_network(), 40, 30)
    result = run_pipeline(pipeline, [events])[0]

    image = render_overlay(result.window, (Box(1, 1, 10, 10, pixels=4),), 40, 30)

    assert image.shape == (30, 40, 3)
    assert tuple(image[1, 5]) == (0, 255, 0)
