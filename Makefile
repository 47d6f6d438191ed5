# Set-up, demo and tests. `make setup` is idempotent and fast when nothing changed.
SHELL := /bin/bash
VENV := .venv
ACTIVATE := . $(VENV)/bin/activate

.PHONY: setup demo test bench fuzz clean

setup:
	bash tools/setup.sh

demo: setup
	$(ACTIVATE) && spikems demo

test: setup
	$(ACTIVATE) && python -m pytest -q test

bench: setup
	$(ACTIVATE) && pip install --quiet -r requirements/bench.txt && spikems bench stream && spikems bench decode

# Coverage-guided fuzzing of the event decoders for 10 minutes (atheris); the test
# suite runs a shorter, seeded Hypothesis fuzz.
fuzz: setup
	$(ACTIVATE) && pip install --quiet -r requirements/fuzz.txt && mkdir -p runs/fuzz_corpus && python tools/fuzz_decoders.py -max_total_time=600 runs/fuzz_corpus

clean:
	rm -rf build install test_interfaces/install .pytest_cache
