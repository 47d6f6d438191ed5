# Set-up, demo and tests. `make setup` is idempotent and fast when nothing changed.
SHELL := /bin/bash
VENV := .venv
ACTIVATE := . $(VENV)/bin/activate

.PHONY: setup demo test bench clean

setup:
	bash tools/setup.sh

demo: setup
	$(ACTIVATE) && spikems demo

test: setup
	$(ACTIVATE) && python -m pytest -q test

bench: setup
	$(ACTIVATE) && pip install --quiet -r requirements/bench.txt && spikems bench stream && spikems bench decode

clean:
	rm -rf build install test_interfaces/install .pytest_cache
