#!/usr/bin/env bash
# Run the test suite against real RabbitMQ and PostgreSQL, once per event store.
#
#   scripts/test.sh [PYTEST ARGS...]      e.g. scripts/test.sh tests/unit -x -k budget
#
# 1. makes sure .venv is up to date (make .venv), and the deployment tests' tools
#    (scripts/tools.sh);
# 2. starts a private RabbitMQ node and PostgreSQL cluster in var/test-stack
#    (scripts/rabbitmq.sh, scripts/postgres.sh) and sources their env files
#    (AMQP_URI, PUMPURS_RABBITMQ_*, POSTGRES_*, PUMPURS_POSTGRES_ADMIN_DSN);
# 3. runs pytest with PUMPURS_TEST_STORE=sqlite, then with PUMPURS_TEST_STORE=postgres,
#    each with the same arguments and a fresh PUMPURS_DATA_DIR under var/test-stack;
# 4. prints one summary line per store and a total line (also written to
#    var/test-stack/summary.txt) and exits non-zero if either run failed
#    (pytest's "no tests collected", exit 5, counts as a failure).
# The stack is stopped at the end if this script started it; KEEP_STACK=1 leaves it
# running (the next run reuses it, and then leaves it running too).
# PUMPURS_TEST_STORES="sqlite" (or "postgres") runs only those stores.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source-path=SCRIPTDIR/.. source=scripts/lib/common.sh
source scripts/lib/common.sh
PUMPURS_LOG_TAG=test.sh

STACK=${PUMPURS_TEST_STACK_DIR:-var/test-stack}
STORES=${PUMPURS_TEST_STORES:-sqlite postgres}
KEEP_STACK=${KEEP_STACK:-0}

make --no-print-directory -s .venv
# The deployment tests' tools (tests/deploy): kubectl, checkov, promtool ... If they cannot
# be installed, the other suites still run; the deployment tests then fail saying what is missing.
scripts/tools.sh || log "warning: scripts/tools.sh failed (exit $?); tests/deploy will fail"

started_rabbitmq=0
started_postgres=0
# shellcheck disable=SC2317  # invoked by trap
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ "$KEEP_STACK" == 1 ]]; then
		if ((started_rabbitmq + started_postgres)); then
			log "KEEP_STACK=1: leaving the test stack in $STACK running"
		fi
	else
		if ((started_postgres)); then scripts/postgres.sh stop "$STACK" || true; fi
		if ((started_rabbitmq)); then scripts/rabbitmq.sh stop "$STACK" || true; fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$STACK"
if ! scripts/rabbitmq.sh status "$STACK" >/dev/null 2>&1; then
	started_rabbitmq=1
	scripts/rabbitmq.sh start "$STACK"
else
	scripts/rabbitmq.sh start "$STACK" # already up: only rewrites the env file
fi
if ! scripts/postgres.sh status "$STACK" >/dev/null 2>&1; then
	started_postgres=1
	scripts/postgres.sh start "$STACK"
else
	scripts/postgres.sh start "$STACK"
fi
# shellcheck disable=SC1091
source "$STACK/rabbitmq.env"
# shellcheck disable=SC1091
source "$STACK/postgres.env"

# counts JUNIT_XML: print "P F S" (passed, failed incl. errors, skipped), or nothing.
counts() {
	[[ -s "$1" ]] || return 0
	.venv/bin/python - "$1" <<'PY' 2>/dev/null || true
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
t = f = e = s = 0
for su in suites:
    t += int(su.get("tests", 0)); f += int(su.get("failures", 0))
    e += int(su.get("errors", 0)); s += int(su.get("skipped", 0))
print(t - f - e - s, f + e, s)
PY
}

declare -a summary=()
failed=0
total_p=0 total_f=0 total_s=0
for store in $STORES; do
	data_dir="$STACK/data-$store"
	junit="$STACK/junit-$store.xml"
	rm -rf "$data_dir" "$junit"
	mkdir -p "$data_dir"
	printf '\n==== pytest, PUMPURS_TEST_STORE=%s ====\n' "$store"
	start=$SECONDS
	rc=0
	# Tests that open no store run with the first store only (tests/conftest.py).
	store_free=$([[ "$store" == "${STORES%% *}" ]] && echo 1 || echo 0)
	PUMPURS_TEST_STORE=$store PUMPURS_DATA_DIR="$PWD/$data_dir" PUMPURS_TEST_STORE_FREE=$store_free \
		.venv/bin/python -m pytest --junitxml="$junit" "$@" || rc=$?
	secs=$((SECONDS - start))
	read -r p f s < <(counts "$junit"; echo) || true
	if [[ -n "${p:-}" ]]; then
		total_p=$((total_p + p)) total_f=$((total_f + f)) total_s=$((total_s + s))
		line="$store: $p passed, $f failed, $s skipped"
	else
		line="$store: no result counts"
	fi
	case $rc in
		0) line="$line  (ok, ${secs}s)" ;;
		5) line="$line  (FAILED: pytest collected no tests, exit 5, ${secs}s)"; failed=1 ;;
		*) line="$line  (FAILED: pytest exit $rc, ${secs}s)"; failed=1 ;;
	esac
	summary+=("$line")
done

# Also kept in STACK/summary.txt (.ci/run prints it again as its last lines).
{
	printf '%s\n' "${summary[@]}"
	printf 'total: %d passed, %d failed, %d skipped\n' "$total_p" "$total_f" "$total_s"
} >"$STACK/summary.txt"
printf '\n==== summary ====\n'
cat "$STACK/summary.txt"
exit "$failed"
