# labkit — the two commands: `make demo` and `make test` (Debian 12, as root).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: fakepve gns3 deps venv demo test test-fast bench bench-labs bench-probes bench-enter bench-cohort bench-proof bench-bundle bench-agent bench-proxmox bench-gns3 bench-devices lint clean

deps:
	bash scripts/install-deps.sh
	bash scripts/build-node-image.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

venv: $(STAMP)

demo: deps venv
	bash scripts/demo.sh

# Three workers: the end-to-end lab tests mostly wait on daemons (convergence, timers,
# captures), so three side by side fit two cores; worksteal keeps the long ones spread.
PYTEST_WORKERS ?= 3

# fakepve (a fake Proxmox VE API, AGPL, test-only) in a venv of its own: the Proxmox provider's
# tests run it as a separate server process; labkit never imports it.
fakepve:
	bash scripts/fakepve-venv.sh >/dev/null

# gns3-server 3.0.6 (GPL-3.0, test-only) in a venv of its own: its pins clash with labkit's; the
# GNS3 provider's tests run it as a separate server inside a network namespace they make.
gns3:
	bash scripts/gns3-venv.sh >/dev/null

test: deps venv fakepve gns3
	$(VENV)/bin/python -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal

test-fast: venv
	$(VENV)/bin/python -m pytest -q -m "not slow"

lint: venv
	$(VENV)/bin/ruff check src graders tests bench
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

bench: deps venv
	$(VENV)/bin/python bench/run.py

bench-labs: deps venv
	$(VENV)/bin/python bench/labs.py

bench-probes: deps venv
	$(VENV)/bin/python bench/probes.py

bench-enter: deps venv
	$(VENV)/bin/python bench/enter.py

bench-cohort: deps venv
	$(VENV)/bin/python bench/cohort.py -n 30 --launch 2,4,6 --grade 10,30 --solve 6

bench-proof: deps venv
	$(VENV)/bin/python bench/proof_verify.py

bench-bundle: deps venv
	$(VENV)/bin/python bench/bundle.py

bench-agent: deps venv
	$(VENV)/bin/python bench/agent.py --pings 200 --lab routing-multisite

bench-proxmox: deps venv fakepve
	$(VENV)/bin/python bench/proxmox.py --netns

bench-gns3: deps venv gns3
	$(VENV)/bin/python bench/gns3.py

bench-devices: deps venv
	$(VENV)/bin/python bench/devices.py

clean:
	-$(VENV)/bin/labkit down --all
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
