#!/usr/bin/env bash
# The full fault and load profile of tests/chaos (make chaos), on SQLite and on PostgreSQL.
#
#   scripts/chaos.sh                      both suites, both stores
#   CHAOS_STORES=postgres scripts/chaos.sh
#   CHAOS_SUITES=load CHAOS_LOAD_SECONDS=60 scripts/chaos.sh
#
# 1. starts a private RabbitMQ node and PostgreSQL cluster in var/chaos-stack (or reuses
#    the ones described by the environment, as scripts/test.sh leaves them) and sources
#    their env files;
# 2. runs `python -m chaos.faults --profile full` and `python -m chaos.load` (100 commands/s
#    for CHAOS_LOAD_SECONDS, default 300) for each store; each prints its table and
#    writes its JSON under var/chaos/;
# 3. prints one line per run and exits non-zero if any run failed (lost or duplicated
#    commands, errors, memory growth of 10% or more, a consumer left behind).
# The stack is stopped at the end if this script started it.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source-path=SCRIPTDIR/.. source=scripts/lib/common.sh
source scripts/lib/common.sh
PUMPURS_LOG_TAG=chaos.sh

STACK=${PUMPURS_CHAOS_STACK_DIR:-var/chaos-stack}
STORES=${CHAOS_STORES:-sqlite postgres}
SUITES=${CHAOS_SUITES:-faults load}
LOAD_SECONDS=${CHAOS_LOAD_SECONDS:-300}

make --no-print-directory -s .venv

started=()
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	local what
	for what in "${started[@]}"; do scripts/"$what".sh stop "$STACK" || true; done
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$STACK" var/chaos
for what in rabbitmq postgres; do
	if ! scripts/"$what".sh status "$STACK" >/dev/null 2>&1; then
		started+=("$what")
	fi
	scripts/"$what".sh start "$STACK"
	# shellcheck disable=SC1090
	source "$STACK/$what.env"
done

declare -a summary=()
failed=0
run() {
	local label=$1
	shift
	printf '\n==== %s ====\n' "$label"
	local start=$SECONDS rc=0
	.venv/bin/python -m "$@" || rc=$?
	if ((rc)); then
		summary+=("$label: FAILED (exit $rc, $((SECONDS - start))s)")
		failed=1
	else
		summary+=("$label: ok ($((SECONDS - start))s)")
	fi
}

for store in $STORES; do
	for suite in $SUITES; do
		case $suite in
			faults) run "faults, $store" chaos.faults --profile full --store "$store" ;;
			load) run "load, $store" chaos.load --seconds "$LOAD_SECONDS" --store "$store" ;;
			*) die 2 "unknown suite: $suite (faults or load)" ;;
		esac
	done
done

printf '\n==== summary ====\n'
printf '%s\n' "${summary[@]}"
exit "$failed"
