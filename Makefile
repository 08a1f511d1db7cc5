# make demo  - set everything up, start a demo target on loopback, scan it through every front door
# make test  - set everything up, run the linters, ansible-test and the whole test suite
# make bench - the benchmarks (portscan vs nmap and friends), figures for the README

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
COMPILED := $(VENV)/.compiled
# nmap, ndiff, libxml2-utils (xmllint): reference tools of the benchmarks and the XML report
# checks; iproute2, nftables, iptables: the test network (namespaces, firewall rules, NFQUEUE
# latency); util-linux: prlimit for the low-ulimit test; chromium: renders the HTML report;
# dnsmasq-base, snmpd, chrony: the UDP lab's services (DNS, SNMP, NTP); gcc: mypyc's build of
# the probe loop (setup.py).
APT_PACKAGES := nmap ndiff libxml2-utils iproute2 nftables iptables util-linux procps chromium \
	dnsmasq-base snmpd chrony gcc
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.ansible/collections
export ANSIBLE_HOME := $(CURDIR)/.ansible

.PHONY: setup system-deps demo test lint sanity bench clean

setup: system-deps $(STAMP) $(COMPILED) $(ANSIBLE_COLLECTIONS_PATH)/ansible_collections/nornir_portscan/portscan

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "note: Debian packages missing:$$missing (the tests that need them skip)"; fi; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# The probe loop compiled in place with mypyc (setup.py), again whenever the engine or the
# modules beside it change: a compiled module is never older than the code it was built from.
$(COMPILED): $(STAMP) setup.py $(wildcard nornir_portscan/*.py nornir_portscan/engine/*.py)
	rm -f nornir_portscan__mypyc*.so nornir_portscan/engine/*.so  # new files: a running scan keeps the old
	$(PY) setup.py -q build_ext --inplace --force
	touch $@

# The repo root is the collection: resolve it from the working tree, no install step.
$(ANSIBLE_COLLECTIONS_PATH)/ansible_collections/nornir_portscan/portscan:
	mkdir -p $(@D)
	ln -sfn $(CURDIR) $@

demo: setup
	$(PY) examples/demo.py

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check nornir_portscan
	$(VENV)/bin/mypy

# ansible-test on the collection as built (see tests/ansible/run_ansible_test.py)
sanity: setup
	$(PY) tests/ansible/run_ansible_test.py sanity
	$(PY) tests/ansible/run_ansible_test.py units

test: lint sanity
	$(PY) -m pytest

bench: setup
	$(PY) benchmarks/bench_engine.py
	$(PY) benchmarks/bench_lab.py
	$(PY) benchmarks/bench_nornir.py
	$(PY) benchmarks/bench_ansible.py
	$(PY) benchmarks/bench_fleet.py

clean:
	rm -rf $(VENV) .ansible .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
	find . -name '*.so' -not -path './.venv/*' -delete
