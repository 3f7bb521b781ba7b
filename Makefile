# The two commands the README promises. Both set the machine up first (idempotent).
PY := .venv/bin/python
SCENARIO ?= mini
DURATION ?= 20

.PHONY: setup demo test unit

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/lasernet plan $(SCENARIO) --events runs/plan-$(SCENARIO)/events.csv -o runs/plan-$(SCENARIO)/plan.npz
	.venv/bin/lasernet up $(SCENARIO) --duration $(DURATION)

test: setup
	$(PY) -m pytest -ra --durations=25 tests

unit: setup
	$(PY) -m pytest -ra tests/unit
