#!/usr/bin/env bash
# A private RabbitMQ node for local runs and tests.
#
#   scripts/rabbitmq.sh start  STATE_DIR   start (or find running) and write STATE_DIR/rabbitmq.env
#   scripts/rabbitmq.sh stop   STATE_DIR   stop this node and its private epmd, nothing else
#   scripts/rabbitmq.sh status STATE_DIR   exit 0 when up, 3 when not
#   scripts/rabbitmq.sh kill   STATE_DIR   SIGKILL the node's Erlang VM (fault tests); `start`
#                                          brings it back on the same ports
#   scripts/rabbitmq.sh ctl    STATE_DIR ARGS...   rabbitmqctl against this node
#   scripts/rabbitmq.sh diag   STATE_DIR ARGS...   rabbitmq-diagnostics against this node
#
# Everything lives under STATE_DIR/rabbitmq (mnesia, logs, config, the Erlang
# cookie in a private HOME). The node name is pumpurs-<hash>@localhost where
# <hash> comes from STATE_DIR's absolute path, so several stacks can run side
# by side. AMQP, distribution, epmd and management ports are picked free at the
# first start, recorded in STATE_DIR/rabbitmq.ports, and reused by later starts
# while they are still free (always after `kill`, so clients can reconnect).
# AMQP and management listen on 127.0.0.1 only; guest/guest keeps RabbitMQ's
# default (loopback connections only).
#
# STATE_DIR/rabbitmq.env (shell `export` lines):
#   AMQP_URI                       amqp://guest:guest@127.0.0.1:PORT/
#   PUMPURS_RABBITMQ_API           http://127.0.0.1:MGMTPORT (management HTTP API)
#   PUMPURS_RABBITMQ_API_USER/_PASSWORD   guest / guest
#   PUMPURS_RABBITMQ_NODE          pumpurs-<hash>@localhost
#   PUMPURS_RABBITMQ_AMQP_PORT, PUMPURS_RABBITMQ_MGMT_PORT
#   PUMPURS_RABBITMQ_EPMD_PORT     the node's private epmd (ERL_EPMD_PORT for rabbitmqctl)
#   PUMPURS_RABBITMQ_ERLANG_HOME   HOME holding the node's .erlang.cookie (for rabbitmqctl)
#   PUMPURS_RABBITMQ_STATE_DIR     absolute STATE_DIR
#   PUMPURS_RABBITMQ_CTL           command prefix: "<repo>/scripts/rabbitmq.sh ctl <STATE_DIR>"
# The Erlang variables are deliberately not exported under their own names, so
# sourcing the file does not redirect unrelated Erlang programs.
#
# Environment knobs: PUMPURS_RABBITMQ_START_TIMEOUT (seconds, default 60).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
PUMPURS_LOG_TAG=rabbitmq.sh

RMQ_BIN=/usr/lib/rabbitmq/bin
START_TIMEOUT=${PUMPURS_RABBITMQ_START_TIMEOUT:-60}

usage() {
	sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 64
}

ensure_installed() {
	[[ -x "$RMQ_BIN/rabbitmq-server" && -x "$RMQ_BIN/rabbitmqctl" ]] && return 0
	if is_root; then
		ensure_debian_packages rabbitmq-server
		[[ -x "$RMQ_BIN/rabbitmq-server" ]] || die 2 "rabbitmq-server installed but $RMQ_BIN/rabbitmq-server is missing"
	else
		die 2 "RabbitMQ is not installed: as root run 'apt-get install -y rabbitmq-server' (Debian package), then retry"
	fi
}

# Sets STATE NODE HASH MARKER PORTS_FILE ENV_FILE; DATA and friends via setup_data_dir.
init_paths() {
	local state_arg=${1:-} cmd=$2
	[[ -n "$state_arg" ]] || usage
	if [[ ! -d "$state_arg" ]]; then
		case "$cmd" in
			start) (umask 022 && mkdir -p "$state_arg") ;;
			stop | kill) log "$state_arg does not exist: nothing to do"; exit 0 ;;
			*) echo "rabbitmq: no stack in $state_arg"; exit 3 ;;
		esac
	fi
	STATE=$(abs_dir "$state_arg")
	HASH=$(state_hash "$STATE")
	NODE="pumpurs-$HASH@localhost"
	MARKER="rabbitmq-$HASH"
	PORTS_FILE="$STATE/rabbitmq.ports"
	ENV_FILE="$STATE/rabbitmq.env"
	if is_root; then RUN_USER=rabbitmq; else RUN_USER=$(id -un); fi
	AMQP_PORT='' DIST_PORT='' EPMD_PORT='' MGMT_PORT=''
	if [[ -f "$PORTS_FILE" ]]; then
		# shellcheck disable=SC1090
		source "$PORTS_FILE"
	fi
}

# The folder the node writes to (may be a symlink target under /tmp, see service_dir).
setup_data_dir() {
	if is_root; then
		id -u rabbitmq >/dev/null 2>&1 || die 2 "user 'rabbitmq' is missing (reinstall the rabbitmq-server package)"
	fi
	DATA=$(service_dir "$STATE" rabbitmq "$RUN_USER")
	set_data_paths
}

set_data_paths() {
	ERL_HOME="$DATA/home"
	MNESIA_BASE="$DATA/mnesia"
	LOG_BASE="$DATA/log"
	CONF_FILE="$DATA/rabbitmq.conf"
	PLUGINS_FILE="$DATA/enabled_plugins"
	ADV_FILE="$DATA/advanced.config"
	CONF_ENV="$DATA/rabbitmq-env.conf"
	PID_FILE="$DATA/rabbitmq.pid"
	STARTUP_LOG="$DATA/log/startup.log"
}

# Data paths without creating anything (for stop/status/kill/ctl).
find_data_dir() {
	if [[ -e "$STATE/rabbitmq" ]]; then
		DATA=$(abs_dir "$STATE/rabbitmq")
	else
		DATA="$STATE/rabbitmq"
	fi
	set_data_paths
}

# rabbitmqctl (or another CLI tool) against this node.
cli() {
	local tool=$1; shift
	[[ -n "$EPMD_PORT" ]] || die 3 "no node recorded in $STATE (start it first)"
	epmd_up || die 3 "node $NODE is not running (start it first: $0 start $STATE)"
	cli_env
	"${CLI_ENV[@]}" "$RMQ_BIN/$tool" -n "$NODE" "$@"
}

# Environment for the CLI tools: the node's cookie (HOME) and epmd port.
# The CLI starts an epmd when none answers on that port (and it would outlive
# the CLI), so we only call it once the node's own epmd is up (epmd_up), and
# mark its processes anyway so that `stop` finds any such epmd.
cli_env() {
	CLI_ENV=(env -i PATH="$PUMPURS_SYS_PATH" LANG=C.UTF-8 LC_ALL=C.UTF-8 HOME="$ERL_HOME"
		PUMPURS_STACK_ID="$MARKER-cli"
		ERL_EPMD_PORT="$EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1
		RABBITMQ_CONF_ENV_FILE="$CONF_ENV")
}

# Something listens on our epmd port (normally the epmd our node started).
epmd_up() { [[ -n "$EPMD_PORT" ]] && ! ports_free "$EPMD_PORT"; }

# Our epmd processes (started by the node, or by a CLI run).
epmd_pids() {
	pids_with_marker "$MARKER" epmd
	pids_with_marker "$MARKER-cli" epmd
}

node_up() {
	[[ -n "$EPMD_PORT" && -f "$ERL_HOME/.erlang.cookie" ]] || return 1
	epmd_up || return 1
	cli rabbitmqctl -q await_startup --timeout "${1:-5}" >/dev/null 2>&1
}

beam_pids() { pids_with_marker "$MARKER" beam.smp; }

write_env() {
	local tmp="$ENV_FILE.tmp.$$"
	cat >"$tmp" <<EOF
# Written by scripts/rabbitmq.sh for node $NODE. Source it: . $ENV_FILE
export AMQP_URI='amqp://guest:guest@127.0.0.1:$AMQP_PORT/'
export PUMPURS_RABBITMQ_API='http://127.0.0.1:$MGMT_PORT'
export PUMPURS_RABBITMQ_API_USER='guest'
export PUMPURS_RABBITMQ_API_PASSWORD='guest'
export PUMPURS_RABBITMQ_NODE='$NODE'
export PUMPURS_RABBITMQ_AMQP_PORT='$AMQP_PORT'
export PUMPURS_RABBITMQ_MGMT_PORT='$MGMT_PORT'
export PUMPURS_RABBITMQ_EPMD_PORT='$EPMD_PORT'
export PUMPURS_RABBITMQ_ERLANG_HOME='$ERL_HOME'
export PUMPURS_RABBITMQ_STATE_DIR='$STATE'
export PUMPURS_RABBITMQ_CTL='$PUMPURS_SCRIPTS_DIR/rabbitmq.sh ctl $STATE'
EOF
	chmod 644 "$tmp"
	mv -f "$tmp" "$ENV_FILE"
}

# Keep the recorded ports if they can still be used; pick new ones otherwise.
choose_ports() {
	if [[ -n "$AMQP_PORT" && -n "$DIST_PORT" && -n "$EPMD_PORT" && -n "$MGMT_PORT" ]]; then
		local epmd_ok=0
		if ports_free "$EPMD_PORT"; then
			epmd_ok=1
		elif [[ -n "$(epmd_pids)" ]]; then
			epmd_ok=1 # our own epmd, still up from an earlier run
		fi
		if ((epmd_ok)) && ports_free "$AMQP_PORT" "$DIST_PORT" "$MGMT_PORT"; then
			return 0
		fi
		log "recorded ports ($AMQP_PORT $DIST_PORT $EPMD_PORT $MGMT_PORT) are taken by something else: picking new ones"
	fi
	read -r AMQP_PORT DIST_PORT EPMD_PORT MGMT_PORT < <(free_ports 4)
	[[ -n "$MGMT_PORT" ]] || die "could not find free ports"
	cat >"$PORTS_FILE" <<EOF
AMQP_PORT=$AMQP_PORT
DIST_PORT=$DIST_PORT
EPMD_PORT=$EPMD_PORT
MGMT_PORT=$MGMT_PORT
EOF
}

write_config() {
	mkdir -p "$ERL_HOME" "$MNESIA_BASE" "$LOG_BASE"
	if [[ ! -s "$ERL_HOME/.erlang.cookie" ]]; then
		(umask 077; pumpurs_python -c 'import secrets; print(secrets.token_hex(20).upper(), end="")' >"$ERL_HOME/.erlang.cookie")
	fi
	chmod 400 "$ERL_HOME/.erlang.cookie"
	cat >"$CONF_FILE" <<EOF
# Written by scripts/rabbitmq.sh on each start.
management.tcp.ip = 127.0.0.1
management.tcp.port = $MGMT_PORT
vm_memory_high_watermark.relative = 0.2
disk_free_limit.absolute = 50MB
log.console = false
log.file.level = info
EOF
	echo '[rabbitmq_management].' >"$PLUGINS_FILE"
	echo '[].' >"$ADV_FILE"
	: >"$CONF_ENV" # an empty one, so /etc/rabbitmq/rabbitmq-env.conf is not read
	if is_root; then
		chown -R "$RUN_USER:" "$DATA"
	fi
}

tail_logs() {
	local f
	for f in "$STARTUP_LOG" "$LOG_BASE/$NODE.log"; do
		if [[ -s "$f" ]]; then
			log "---- last lines of $f"
			tail -n 25 "$f" >&2 || true
		fi
	done
}

cmd_start() {
	ensure_installed
	setup_data_dir
	if node_up 3; then
		write_env
		log "node $NODE already running (amqp 127.0.0.1:$AMQP_PORT, management $MGMT_PORT)"
		return 0
	fi
	if [[ -n "$(beam_pids)" ]]; then
		# A VM of ours exists but does not answer (still booting, or wedged).
		log "node $NODE has a VM that does not answer yet; waiting up to ${START_TIMEOUT}s"
		if node_up "$START_TIMEOUT"; then
			write_env
			return 0
		fi
		log "node $NODE does not answer: killing it and starting afresh"
		kill_marker KILL "$MARKER" beam.smp >/dev/null
		wait_marker_gone "$MARKER" 10 || true
	fi
	choose_ports
	write_config
	rm -f "$PID_FILE"

	local -a launch=(env -i PATH="$PUMPURS_SYS_PATH" LANG=C.UTF-8 LC_ALL=C.UTF-8
		HOME="$ERL_HOME"
		PUMPURS_STACK_ID="$MARKER"
		ERL_EPMD_PORT="$EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1
		RABBITMQ_NODENAME="$NODE"
		RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
		RABBITMQ_NODE_PORT="$AMQP_PORT"
		RABBITMQ_DIST_PORT="$DIST_PORT"
		RABBITMQ_MNESIA_BASE="$MNESIA_BASE"
		RABBITMQ_LOG_BASE="$LOG_BASE"
		RABBITMQ_PID_FILE="$PID_FILE"
		RABBITMQ_CONFIG_FILE="$CONF_FILE"
		RABBITMQ_ADVANCED_CONFIG_FILE="$ADV_FILE"
		RABBITMQ_ENABLED_PLUGINS_FILE="$PLUGINS_FILE"
		RABBITMQ_CONF_ENV_FILE="$CONF_ENV"
		"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-kernel inet_dist_use_interface {127,0,0,1}"
		"$RMQ_BIN/rabbitmq-server")
	if is_root; then
		launch=(runuser -u "$RUN_USER" -- "${launch[@]}")
	fi
	log "starting node $NODE (amqp $AMQP_PORT, dist $DIST_PORT, epmd $EPMD_PORT, management $MGMT_PORT)"
	(cd "$DATA" && exec setsid "${launch[@]}" >"$STARTUP_LOG" 2>&1 </dev/null) &
	local launcher=$!
	echo "$launcher" >"$STATE/rabbitmq.launcher.pid"

	local deadline=$((SECONDS + START_TIMEOUT)) up=0
	while ((SECONDS < deadline)); do
		if node_up 5; then
			up=1
			break
		fi
		if ! kill -0 "$launcher" 2>/dev/null && [[ -z "$(beam_pids)" ]]; then
			log "node $NODE exited during start-up"
			tail_logs
			kill_marker KILL "$MARKER" >/dev/null
			exit 1
		fi
		sleep 1
	done
	if ((!up)); then
		log "node $NODE did not start within ${START_TIMEOUT}s"
		tail_logs
		kill_marker KILL "$MARKER" >/dev/null
		exit 1
	fi
	# await_startup covers the plugins; make sure the HTTP API answers too.
	local i
	for ((i = 0; i < 50; i++)); do
		http_ok "http://127.0.0.1:$MGMT_PORT/api/overview" guest guest && break
		sleep 0.2
	done
	((i < 50)) || log "warning: management API on port $MGMT_PORT does not answer yet"
	write_env
	log "node $NODE is up: amqp://guest:guest@127.0.0.1:$AMQP_PORT/ management http://127.0.0.1:$MGMT_PORT (env: $ENV_FILE)"
}

cmd_stop() {
	find_data_dir
	if [[ -z "$(pids_with_marker "$MARKER")$(pids_with_marker "$MARKER-cli")" ]]; then
		log "node $NODE is not running"
		return 0
	fi
	if [[ -n "$(beam_pids)" ]] && [[ -f "$ERL_HOME/.erlang.cookie" ]]; then
		log "stopping node $NODE"
		cli_env
		timeout 60 "${CLI_ENV[@]}" "$RMQ_BIN/rabbitmqctl" -n "$NODE" -q shutdown >/dev/null 2>&1 ||
			log "rabbitmqctl shutdown failed; killing the node"
	fi
	# The VM may take a moment to exit after shutdown returns.
	local i
	for ((i = 0; i < 50; i++)); do
		[[ -z "$(beam_pids)" ]] && break
		sleep 0.2
	done
	kill_marker KILL "$MARKER" beam.smp >/dev/null
	# Now the private epmd (and any other leftover carrying our marker, CLI runs included).
	local m
	for m in "$MARKER" "$MARKER-cli"; do
		kill_marker TERM "$m" >/dev/null
		if ! wait_marker_gone "$m" 5; then
			kill_marker KILL "$m" >/dev/null
			wait_marker_gone "$m" 5 || die "processes of node $NODE survive SIGKILL: $(pids_with_marker "$m" | tr '\n' ' ')"
		fi
	done
	rm -f "$STATE/rabbitmq.launcher.pid" "$PID_FILE" 2>/dev/null || true
	log "node $NODE stopped"
}

cmd_kill() {
	find_data_dir
	local n
	n=$(kill_marker KILL "$MARKER" beam.smp)
	if [[ "$n" == 0 ]]; then
		log "node $NODE has no running VM"
		return 0
	fi
	local i
	for ((i = 0; i < 50; i++)); do
		[[ -z "$(beam_pids)" ]] && break
		sleep 0.1
	done
	log "node $NODE killed (SIGKILL); its epmd stays up; '$0 start $STATE' restarts it on the same ports"
}

cmd_status() {
	find_data_dir
	if node_up 5; then
		echo "rabbitmq $NODE running: amqp://127.0.0.1:$AMQP_PORT/ management http://127.0.0.1:$MGMT_PORT epmd $EPMD_PORT"
		return 0
	fi
	if [[ -n "$(beam_pids)" ]]; then
		echo "rabbitmq $NODE: VM running but the node does not answer"
	else
		echo "rabbitmq $NODE stopped"
	fi
	return 3
}

main() {
	local cmd=${1:-}
	[[ $# -ge 2 ]] || usage
	shift
	init_paths "$1" "$cmd"
	shift
	case "$cmd" in
		start) cmd_start ;;
		stop) cmd_stop ;;
		status) cmd_status ;;
		kill) cmd_kill ;;
		ctl) find_data_dir; cli rabbitmqctl "$@" ;;
		diag) find_data_dir; cli rabbitmq-diagnostics "$@" ;;
		*) usage ;;
	esac
}

main "$@"
