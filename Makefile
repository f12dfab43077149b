# hostvigil: `make run` starts the agent, `make test` runs every check.
# Both bootstrap a virtualenv in .venv on a fresh Debian 12 box.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
LISTEN ?= 127.0.0.1:10091
# The editable install is a tree of symlinks (so that mypy sees the hostvigil
# package): edits show at once, but a module added or removed needs a
# re-install, which a change of the folders' mtimes triggers.
SOURCES := pyproject.toml $(shell find agent collectors -type d -not -name __pycache__)

.PHONY: run test lint typecheck pytest fuzz bench bench-fleet dashboards deb test-debian-libs clean

run: $(VENV)/.installed
	$(BIN)/hostvigil run --listen $(LISTEN) $(ARGS)

test: lint typecheck pytest

lint: $(VENV)/.installed
	$(BIN)/ruff check agent collectors grafana tests bench

typecheck: $(VENV)/.installed
	$(BIN)/mypy

pytest: $(VENV)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Every parser fed FUZZ_INPUTS (default 100,000) mutated real samples, fresh randomness each run, a count per parser
# printed at the end (about 35 min on 2 cores); `make test` runs the same tests on a short, repeatable budget.
fuzz: $(VENV)/.installed
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -p no:cacheprovider tests/fuzz $(PYTEST_ARGS)

# One table of the figures a user reads, each against an anchor measured in the same run (bench/run.py; ARGS go
# to it, e.g. ARGS=--quick for a run under 3 minutes; about 17 minutes in full). Root for the kernel-event rows;
# Debian's prometheus-node-exporter, -smokeping-prober, -ipmi-exporter, -blackbox-exporter and
# -node-exporter-collectors as the anchors. More detail, each on its own: bench/scrape.py, bench/kmsg.py (root),
# bench/probes.py (root: network namespaces), bench/mail.py (a real Dovecot), run with .venv/bin/python.
bench: $(VENV)/.installed
	$(BIN)/python bench/run.py $(ARGS)

# grafana/*.json and packaging/prometheus/hostvigil-recording-rules.yml from grafana/dashboards.py (a test fails
# while the committed files differ from what it writes).
dashboards: $(VENV)/.installed
	$(BIN)/python -m grafana.dashboards

# The fleet dashboard's queries on a real Prometheus holding FLEET_HOSTS (default 500) hosts (Debian's prometheus).
bench-fleet: $(VENV)/.installed
	$(BIN)/python bench/fleet.py --hosts $(or $(FLEET_HOSTS),500)

# dist/hostvigil_VERSION_all.deb with dh-python over Debian's python3-* libraries (apt-get install debhelper
# dh-python pybuild-plugin-pyproject python3-all python3-setuptools, and the libraries debian/control names).
deb:
	@# Built in a copy of the tree: pybuild's clean would remove build/, where the editable install keeps its links.
	rm -rf dist/src && mkdir -p dist/src
	git ls-files -co --exclude-standard | tar -cf - -T - | tar -xf - -C dist/src
	cd dist/src && PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg-buildpackage -us -uc -b
	rm -rf dist/src

# The suite on Debian 12's own libraries (the lower bounds pyproject.toml declares), as the .deb runs.
test-debian-libs:
	@[ -x .venv-debian/bin/python ] || /usr/bin/python3 -m venv --system-site-packages .venv-debian
	.venv-debian/bin/python -m pip install -q --disable-pip-version-check --no-deps -e . \
	  --config-settings editable_mode=strict
	@# prometheus-client is the tests' yardstick for the exposition, not a library the agent runs on: pyproject's dev pin.
	.venv-debian/bin/python -m pip install -q --disable-pip-version-check "pytest>=7.4" "hypothesis>=6.60" \
	  "grafana-foundation-sdk==1769699379!11.6.0" "matplotlib>=3.6" "prometheus-client>=0.26"
	.venv-debian/bin/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

$(VENV)/.installed: $(SOURCES)
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv; \
	  else echo "make: python3-venv is missing: run 'sudo apt-get install python3-venv'" >&2; exit 1; fi; }
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]' --config-settings editable_mode=strict
	@touch $@

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
