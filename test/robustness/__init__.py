"""Robustness tests: decoder fuzzing, fault injection and interrupted outputs."""
