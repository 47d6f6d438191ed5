"""Benchmarks of the streaming network, the node and the decoders (``spikems bench``).

Timings are for reports, never for tests: the test suite only checks that each
benchmark runs and reports consistent counts.
"""
