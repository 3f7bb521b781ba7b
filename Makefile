# The two commands the README promises. Both set the machine up first (idempotent).
PY := .venv/bin/python
SCENARIO ?= mini

.PHONY: setup demo test unit

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/lasernet plan $(SCENARIO) --events runs/plan-$(SCENARIO)/events.csv -o runs/plan-$(SCENARIO)/plan.npz

test: setup
	$(PY) -m pytest -ra tests

unit: setup
	$(PY) -m pytest -ra tests/unit
