#!/usr/bin/env bash
# Run the whole system locally: RabbitMQ + the four services. Ctrl-C stops everything.
#
#   scripts/run-local.sh          (or: make run)
#
# - Unless AMQP_URI is already set, starts a private RabbitMQ node in var/stack
#   (scripts/rabbitmq.sh) and uses it; that node is stopped again on exit if this
#   script started it.
# - PUMPURS_DATA_DIR defaults to var/data (SQLite files).
# - Starts `pumpurs serve NAME` for identification, planning, provisioning and
#   reporting on HTTP ports 8001..8004 (PUMPURS_HTTP_PORT_BASE, default 8000, shifts
#   them), logs in var/log/NAME.log, and waits for GET /health/ready to answer 200
#   (PUMPURS_READY_TIMEOUT seconds, default 60).
# - Seeds demo data with `pumpurs seed --demo` when that command exists (it prints the
#   ESF report, the audit verification and the URLs; a failed seed leaves the system running).
# - Exports PUMPURS_<SERVICE>_URL (e.g. PUMPURS_PLANNING_URL) for the seed command.
# On Ctrl-C (or SIGTERM) each service gets SIGTERM, then SIGKILL after 10 s.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source-path=SCRIPTDIR/.. source=scripts/lib/common.sh
source scripts/lib/common.sh
PUMPURS_LOG_TAG=run-local

SERVICES=(identification planning provisioning reporting)
PORT_BASE=${PUMPURS_HTTP_PORT_BASE:-8000}
READY_TIMEOUT=${PUMPURS_READY_TIMEOUT:-60}
STACK=var/stack
PUMPURS=${PUMPURS_BIN:-.venv/bin/pumpurs}
LOG_DIR=var/log

if [[ -z "${PUMPURS_BIN:-}" ]]; then
	make --no-print-directory -s .venv
fi
[[ -x "$PUMPURS" ]] || die "$PUMPURS not found (make venv)"

declare -A PIDS=() PORTS=()
started_rabbitmq=0
stopping=0

port_of() { echo $((PORT_BASE + $1 + 1)); }

stop_services() {
	local name pid any=0 i
	for name in "${!PIDS[@]}"; do
		pid=${PIDS[$name]}
		if kill -0 "$pid" 2>/dev/null; then
			log "stopping $name (pid $pid)"
			kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
			any=1
		fi
	done
	((any)) || return 0
	# An idle nameko HTTP service may only notice SIGTERM when a request comes in.
	for name in "${!PIDS[@]}"; do
		http_ok "http://127.0.0.1:${PORTS[$name]}/health/live" >/dev/null 2>&1 &
	done
	for ((i = 0; i < 100; i++)); do
		any=0
		for name in "${!PIDS[@]}"; do
			kill -0 "${PIDS[$name]}" 2>/dev/null && any=1
		done
		((any)) || break
		sleep 0.1
	done
	for name in "${!PIDS[@]}"; do
		pid=${PIDS[$name]}
		if kill -0 "$pid" 2>/dev/null; then
			log "$name did not stop within 10 s: SIGKILL"
			kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
		fi
	done
	wait 2>/dev/null || true
}

shutdown() {
	local rc=$1
	((stopping)) && return 0
	stopping=1
	trap '' INT TERM
	stop_services
	if ((started_rabbitmq)); then
		scripts/rabbitmq.sh stop "$STACK" || true
	fi
	log "stopped"
	exit "$rc"
}
trap 'shutdown 0' INT TERM
trap 'shutdown $?' EXIT

tail_log() {
	log "---- last lines of $LOG_DIR/$1.log"
	tail -n 40 "$LOG_DIR/$1.log" >&2 || true
}

# RabbitMQ
if [[ -z "${AMQP_URI:-}" ]]; then
	if ! scripts/rabbitmq.sh status "$STACK" >/dev/null 2>&1; then
		started_rabbitmq=1
	fi
	scripts/rabbitmq.sh start "$STACK"
	# shellcheck disable=SC1091
	source "$STACK/rabbitmq.env"
else
	log "using AMQP_URI from the environment"
fi
export AMQP_URI

# Each service connects as its own broker user, with only what it needs
# (shared/brokeraccess.py); without the management API, all share AMQP_URI's user.
declare -A SERVICE_AMQP=()
if [[ -n "${PUMPURS_RABBITMQ_API:-}" ]]; then
	mkdir -p "$STACK"
	"$PUMPURS" broker-users apply --env-file "$STACK/broker-users.env" >/dev/null
	# shellcheck disable=SC1091
	source "$STACK/broker-users.env"
	for name in "${SERVICES[@]}"; do
		var="PUMPURS_AMQP_URI_$(tr '[:lower:]' '[:upper:]' <<<"$name")"
		SERVICE_AMQP[$name]=${!var}
	done
	log "each service connects as its own broker user (pumpurs.SERVICE)"
else
	log "no PUMPURS_RABBITMQ_API: every service connects as AMQP_URI's user"
fi

export PUMPURS_DATA_DIR=${PUMPURS_DATA_DIR:-var/data}
mkdir -p "$PUMPURS_DATA_DIR" "$LOG_DIR"

# Ports must be ours.
for i in "${!SERVICES[@]}"; do
	name=${SERVICES[$i]}
	PORTS[$name]=$(port_of "$i")
	if ! ports_free "${PORTS[$name]}"; then
		die "port ${PORTS[$name]} (for $name) is already in use; stop what uses it or set PUMPURS_HTTP_PORT_BASE"
	fi
	upper=$(tr '[:lower:]' '[:upper:]' <<<"$name")
	export "PUMPURS_${upper}_URL=http://127.0.0.1:${PORTS[$name]}"
done

for name in "${SERVICES[@]}"; do
	# Own session per service: Ctrl-C reaches only this script, which stops them in order.
	AMQP_URI=${SERVICE_AMQP[$name]:-$AMQP_URI} PUMPURS_HTTP_PORT=${PORTS[$name]} \
		setsid "$PUMPURS" serve "$name" >"$LOG_DIR/$name.log" 2>&1 </dev/null &
	PIDS[$name]=$!
	log "started $name (pid ${PIDS[$name]}, port ${PORTS[$name]}, log $LOG_DIR/$name.log)"
done

# Wait for readiness.
declare -A READY=()
deadline=$((SECONDS + READY_TIMEOUT))
while ((${#READY[@]} < ${#SERVICES[@]})); do
	for name in "${SERVICES[@]}"; do
		[[ -n "${READY[$name]:-}" ]] && continue
		if ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
			log "$name exited during start-up"
			tail_log "$name"
			exit 1
		fi
		if http_ok "http://127.0.0.1:${PORTS[$name]}/health/ready"; then
			READY[$name]=1
			log "$name ready on http://127.0.0.1:${PORTS[$name]} ($((SECONDS - deadline + READY_TIMEOUT))s)"
		fi
	done
	((${#READY[@]} == ${#SERVICES[@]})) && break
	if ((SECONDS >= deadline)); then
		for name in "${SERVICES[@]}"; do
			if [[ -z "${READY[$name]:-}" ]]; then
				log "$name not ready after ${READY_TIMEOUT}s"
				tail_log "$name"
			fi
		done
		exit 1
	fi
	waiting=()
	for name in "${SERVICES[@]}"; do [[ -n "${READY[$name]:-}" ]] || waiting+=("$name"); done
	log "waiting for ${waiting[*]} ($((deadline - SECONDS))s left)"
	sleep 1
done

# Demo data, when the seed command exists. It prints the ESF report, the audit verification
# and the services' URLs itself.
seeded=0
if "$PUMPURS" seed --help >/dev/null 2>&1; then
	log "seeding demo data (pumpurs seed --demo)"
	if "$PUMPURS" seed --demo; then
		seeded=1
	else
		log "warning: pumpurs seed --demo failed (exit $?); the services keep running"
	fi
fi

echo
if ((!seeded)); then
	for name in "${SERVICES[@]}"; do
		printf '  %-15s http://127.0.0.1:%s\n' "$name" "${PORTS[$name]}"
	done
fi
[[ -n "${PUMPURS_RABBITMQ_API:-}" ]] && printf '  %-15s %s (guest/guest)\n' "rabbitmq" "$PUMPURS_RABBITMQ_API"
echo "  logs in $LOG_DIR/; Ctrl-C stops everything"
echo

# Run until Ctrl-C, or until a service dies.
while true; do
	rc=0
	wait -n "${PIDS[@]}" || rc=$?
	for name in "${SERVICES[@]}"; do
		if ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
			log "$name exited unexpectedly (exit $rc); stopping everything"
			tail_log "$name"
			exit 1
		fi
	done
done
