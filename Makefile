# The two commands the README promises. Both set the machine up first (idempotent).
PY := .venv/bin/python
SCENARIO ?= mini
DURATION ?= 20

# The live part needs root (network namespaces). Run by a user (the Vagrant VM's, a workstation's), it goes
# through sudo, taking the environment's LASERNET_* settings along (sudo would drop them); as root it runs as is.
AS_ROOT := $(if $(filter 0,$(shell id -u)),,sudo $(foreach v,$(filter LASERNET_%,$(.VARIABLES)),$(v)=$($(v))))

.PHONY: setup demo test unit

setup:
	bash scripts/setup.sh

# Plan as the user, emulate as root; a run made through sudo is handed back to the user (runs/ is theirs).
demo: setup
	mkdir -p runs/plan-$(SCENARIO)
	.venv/bin/lasernet plan $(SCENARIO) --events runs/plan-$(SCENARIO)/events.csv -o runs/plan-$(SCENARIO)/plan.npz
	$(AS_ROOT) .venv/bin/lasernet up $(SCENARIO) --duration $(DURATION); rc=$$?; \
	$(if $(AS_ROOT),sudo chown -R "$$(id -u):$$(id -g)" runs;) exit $$rc

# Through sudo, pytest writes no cache and no bytecode into the user's checkout (they would be root's).
test: setup
	$(AS_ROOT) $(if $(AS_ROOT),PYTHONDONTWRITEBYTECODE=1) $(PY) -m pytest $(if $(AS_ROOT),-p no:cacheprovider) \
	    -ra --durations=25 tests

unit: setup
	$(PY) -m pytest -ra tests/unit
