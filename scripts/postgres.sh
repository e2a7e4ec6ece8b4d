#!/usr/bin/env bash
# A private PostgreSQL cluster for local runs and tests.
#
#   scripts/postgres.sh start  STATE_DIR   initdb on first use, start (or find running), write STATE_DIR/postgres.env
#   scripts/postgres.sh stop   STATE_DIR   fast shutdown of this cluster only
#   scripts/postgres.sh status STATE_DIR   exit 0 when it accepts connections, 3 when not
#   scripts/postgres.sh kill   STATE_DIR   SIGKILL the postmaster and its backends (fault tests);
#                                          `start` brings it back (crash recovery) on the same port
#   scripts/postgres.sh psql   STATE_DIR ARGS...   psql as the superuser, database postgres
#
# The cluster lives in STATE_DIR/pg (data/, log/, run/ for the Unix socket),
# owned by the `postgres` user when we are root (PostgreSQL refuses root), or
# by the calling user otherwise. It listens on 127.0.0.1 only, on a free port
# picked at the first start and recorded in STATE_DIR/postgres.port (reused
# while free). Superuser `postgres`.
# Authentication: TCP (127.0.0.1) needs the password (scram-sha-256); the
# password is generated at initdb and kept in STATE_DIR/postgres.password
# (mode 600). The Unix socket (mode 0700, so only the cluster's owner can use
# it) is trusted. fsync, synchronous_commit and full_page_writes are off: this
# is a disposable local/test cluster, never a place for real data.
#
# STATE_DIR/postgres.env (mode 600, shell `export` lines):
#   POSTGRES_HOST=127.0.0.1  POSTGRES_PORT  POSTGRES_USER=postgres  POSTGRES_PASSWORD
#   PUMPURS_POSTGRES_ADMIN_DSN   postgresql://postgres:PASSWORD@127.0.0.1:PORT/postgres
#   PUMPURS_POSTGRES_STATE_DIR   absolute STATE_DIR
#
# Environment knobs: PUMPURS_PG_BINDIR (default /usr/lib/postgresql/15/bin, else
# the newest installed), PUMPURS_POSTGRES_START_TIMEOUT (seconds, default 60).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
PUMPURS_LOG_TAG=postgres.sh

START_TIMEOUT=${PUMPURS_POSTGRES_START_TIMEOUT:-60}
PG_SUPERUSER=postgres

usage() {
	sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 64
}

find_bindir() {
	if [[ -n "${PUMPURS_PG_BINDIR:-}" ]]; then
		printf '%s\n' "$PUMPURS_PG_BINDIR"
		return
	fi
	if [[ -x /usr/lib/postgresql/15/bin/initdb ]]; then
		echo /usr/lib/postgresql/15/bin
		return
	fi
	local d
	d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
	[[ -n "$d" && -x "$d/initdb" ]] && printf '%s\n' "$d"
	return 0
}

ensure_installed() {
	BIN=$(find_bindir)
	[[ -n "$BIN" && -x "$BIN/initdb" && -x "$BIN/pg_ctl" ]] && return 0
	if is_root; then
		ensure_debian_packages postgresql
		BIN=$(find_bindir)
		[[ -n "$BIN" && -x "$BIN/initdb" ]] || die 2 "postgresql installed but no initdb under /usr/lib/postgresql/*/bin"
	else
		die 2 "PostgreSQL server is not installed: as root run 'apt-get install -y postgresql' (Debian package), then retry"
	fi
}

init_paths() {
	local state_arg=${1:-} cmd=$2
	[[ -n "$state_arg" ]] || usage
	if [[ ! -d "$state_arg" ]]; then
		case "$cmd" in
			start) (umask 022 && mkdir -p "$state_arg") ;;
			stop | kill) log "$state_arg does not exist: nothing to do"; exit 0 ;;
			*) echo "postgres: no stack in $state_arg"; exit 3 ;;
		esac
	fi
	STATE=$(abs_dir "$state_arg")
	HASH=$(state_hash "$STATE")
	MARKER="pg-$HASH"
	PORT_FILE="$STATE/postgres.port"
	PW_FILE="$STATE/postgres.password"
	ENV_FILE="$STATE/postgres.env"
	if is_root; then RUN_USER=postgres; else RUN_USER=$(id -un); fi
	PORT=''
	if [[ -f "$PORT_FILE" ]]; then PORT=$(tr -dc 0-9 <"$PORT_FILE"); fi
	BIN=$(find_bindir)
}

set_data_paths() {
	PGDATA_DIR="$DATA/data"
	LOG_FILE="$DATA/log/postgres.log"
	SOCK_DIR="$DATA/run"
}

setup_data_dir() {
	if is_root; then
		id -u postgres >/dev/null 2>&1 || die 2 "user 'postgres' is missing (reinstall the postgresql package)"
	fi
	DATA=$(service_dir "$STATE" pg "$RUN_USER")
	set_data_paths
}

find_data_dir() {
	if [[ -e "$STATE/pg" ]]; then
		DATA=$(abs_dir "$STATE/pg")
	else
		DATA="$STATE/pg"
	fi
	set_data_paths
}

# Run a PostgreSQL program as the cluster's owner, in a clean environment
# carrying our marker (the postmaster and its backends inherit it).
pg_as_owner() {
	as_user "$RUN_USER" env -i PATH="$BIN:$PUMPURS_SYS_PATH" LANG=C.UTF-8 LC_ALL=C.UTF-8 \
		PUMPURS_STACK_ID="$MARKER" "$@"
}

# Live processes of this cluster: those sitting in its data directory.
cluster_pids() {
	[[ -d "$PGDATA_DIR" ]] || return 0
	pids_in_dir "$PGDATA_DIR"
}

# kill_cluster SIGNAL: signal them all; print how many.
kill_cluster() {
	local pids
	pids=$(cluster_pids)
	if [[ -n "$pids" ]]; then
		# shellcheck disable=SC2086
		kill "-$1" $pids 2>/dev/null || true
	fi
	printf '%s\n' "$pids" | grep -c . || true
}

wait_cluster_gone() {
	local i
	for ((i = 0; i < $1 * 5; i++)); do
		[[ -z "$(cluster_pids)" ]] && return 0
		sleep 0.2
	done
	return 1
}

# Lock files (postmaster.pid, the socket's .lock) whose process is gone are
# stale. PostgreSQL removes those itself, but not while the dead postmaster is
# still a zombie waiting for init to reap it, as happens right after `kill`
# on machines whose init reaps lazily; then it refuses to start.
remove_stale_pidfile() {
	[[ -z "$(cluster_pids)" ]] || return 0
	local f pid
	for f in "$PGDATA_DIR/postmaster.pid" "$SOCK_DIR"/.s.PGSQL.*.lock; do
		[[ -f "$f" ]] || continue
		pid=$(head -n 1 "$f" | tr -dc 0-9)
		if [[ -n "$pid" ]] && ! pid_alive "$pid"; then
			rm -f "$f"
			[[ "$f" == *.lock ]] && rm -f "${f%.lock}"
		fi
	done
	return 0
}

accepting() {
	[[ -n "$PORT" && -n "$BIN" ]] || return 1
	"$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -t 2 >/dev/null 2>&1
}

password() { cat "$PW_FILE"; }

write_env() {
	local pw tmp="$ENV_FILE.tmp.$$"
	pw=$(password)
	(
		umask 077
		cat >"$tmp" <<EOF
# Written by scripts/postgres.sh for the cluster in $DATA. Source it: . $ENV_FILE
export POSTGRES_HOST='127.0.0.1'
export POSTGRES_PORT='$PORT'
export POSTGRES_USER='$PG_SUPERUSER'
export POSTGRES_PASSWORD='$pw'
export PUMPURS_POSTGRES_ADMIN_DSN='postgresql://$PG_SUPERUSER:$pw@127.0.0.1:$PORT/postgres'
export PUMPURS_POSTGRES_STATE_DIR='$STATE'
EOF
	)
	mv -f "$tmp" "$ENV_FILE"
}

tail_log() {
	if [[ -s "$LOG_FILE" ]]; then
		log "---- last lines of $LOG_FILE"
		tail -n 25 "$LOG_FILE" >&2 || true
	fi
}

do_initdb() {
	log "creating a cluster in $PGDATA_DIR ($("$BIN/postgres" --version 2>/dev/null || echo postgres))"
	if [[ ! -s "$PW_FILE" ]]; then
		(umask 077 && pumpurs_python -c 'import secrets; print(secrets.token_hex(24))' >"$PW_FILE")
	fi
	chmod 600 "$PW_FILE"
	# initdb reads the password from a file the cluster's owner can read.
	local pwtmp="$DATA/initdb.pw"
	(umask 077 && cp "$PW_FILE" "$pwtmp")
	if is_root; then chown "$RUN_USER:" "$pwtmp"; fi
	local rc=0
	pg_as_owner "$BIN/initdb" -D "$PGDATA_DIR" -U "$PG_SUPERUSER" --pwfile="$pwtmp" \
		--auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --no-locale \
		--no-instructions >"$DATA/log/initdb.log" 2>&1 || rc=$?
	rm -f "$pwtmp"
	if ((rc)); then
		log "initdb failed (exit $rc)"
		tail -n 25 "$DATA/log/initdb.log" >&2 || true
		exit 1
	fi
	echo "include_if_exists = 'pumpurs.conf'" >>"$PGDATA_DIR/postgresql.conf"
}

write_config() {
	local sock="$SOCK_DIR"
	# A Unix socket path must fit in 107 bytes; with a deep STATE_DIR do without.
	if ((${#SOCK_DIR} + 20 > 100)); then
		log "socket folder path too long for a Unix socket; TCP only"
		sock=''
	fi
	local tmp="$DATA/pumpurs.conf.tmp"
	cat >"$tmp" <<EOF
# Written by scripts/postgres.sh on each start; included from postgresql.conf.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$sock'
unix_socket_permissions = 0700
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
password_encryption = 'scram-sha-256'
logging_collector = off
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
EOF
	if is_root; then chown "$RUN_USER:" "$tmp"; fi
	chmod 600 "$tmp"
	mv -f "$tmp" "$PGDATA_DIR/pumpurs.conf"
}

choose_port() {
	if [[ -n "$PORT" ]] && ports_free "$PORT"; then
		return 0
	fi
	if [[ -n "$PORT" ]]; then log "recorded port $PORT is taken by something else: picking a new one"; fi
	PORT=$(free_ports 1)
	[[ -n "$PORT" ]] || die "could not find a free port"
	echo "$PORT" >"$PORT_FILE"
}

postmaster_running() {
	[[ -n "$BIN" && -f "$PGDATA_DIR/PG_VERSION" ]] || return 1
	remove_stale_pidfile
	[[ -n "$(cluster_pids)" ]] && pg_as_owner "$BIN/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1
}

cmd_start() {
	ensure_installed
	setup_data_dir
	if [[ -n "$PORT" ]] && accepting && postmaster_running; then
		write_env
		log "cluster already running on 127.0.0.1:$PORT"
		return 0
	fi
	if postmaster_running; then
		log "a postmaster of this cluster runs but does not answer on port ${PORT:-?}: restarting it"
		pg_as_owner "$BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 30 stop >/dev/null 2>&1 ||
			kill_cluster KILL >/dev/null
		wait_cluster_gone 10 || true
	fi
	if [[ -n "$(cluster_pids)" ]]; then
		log "leftover processes of this cluster (after a kill?): waiting for them to exit"
		wait_cluster_gone 10 || { kill_cluster KILL >/dev/null; wait_cluster_gone 5 || true; }
	fi
	remove_stale_pidfile
	mkdir -p "$DATA/log" "$SOCK_DIR"
	if is_root; then chown "$RUN_USER:" "$DATA/log" "$SOCK_DIR"; fi
	if [[ ! -f "$PGDATA_DIR/PG_VERSION" ]]; then
		rm -rf "$PGDATA_DIR"
		do_initdb
	fi
	[[ -s "$PW_FILE" ]] || die "$PW_FILE is missing: the cluster's password is lost (remove $DATA to start afresh)"
	choose_port
	write_config
	log "starting PostgreSQL on 127.0.0.1:$PORT (data $PGDATA_DIR)"
	local rc=0
	# pg_ctl detaches the postmaster (its own session); -w waits until it accepts connections.
	(cd "$DATA" && pg_as_owner setsid "$BIN/pg_ctl" -D "$PGDATA_DIR" -l "$LOG_FILE" -w \
		-t "$START_TIMEOUT" -s start </dev/null >/dev/null 2>&1) || rc=$?
	if ((rc)) || ! accepting; then
		log "PostgreSQL did not start (pg_ctl exit $rc)"
		tail_log
		kill_cluster KILL >/dev/null
		exit 1
	fi
	write_env
	log "PostgreSQL is up on 127.0.0.1:$PORT (env: $ENV_FILE)"
}

cmd_stop() {
	find_data_dir
	if [[ -z "$(cluster_pids)" ]]; then
		log "cluster in $STATE is not running"
		return 0
	fi
	log "stopping PostgreSQL on 127.0.0.1:${PORT:-?}"
	if [[ -n "$BIN" && -f "$PGDATA_DIR/postmaster.pid" ]]; then
		pg_as_owner "$BIN/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 30 -s stop >/dev/null 2>&1 ||
			log "pg_ctl stop failed; killing the cluster's processes"
	fi
	if ! wait_cluster_gone 2; then
		kill_cluster TERM >/dev/null
		if ! wait_cluster_gone 5; then
			kill_cluster KILL >/dev/null
			wait_cluster_gone 5 || die "processes of the cluster survive SIGKILL: $(cluster_pids | tr '\n' ' ')"
		fi
	fi
	log "PostgreSQL stopped"
}

cmd_kill() {
	find_data_dir
	local n
	n=$(kill_cluster KILL)
	if [[ "$n" == 0 ]]; then
		log "cluster in $STATE is not running"
		return 0
	fi
	wait_cluster_gone 10 || true
	# Give init a moment to reap them (see remove_stale_pidfile).
	local pid i
	pid=$(head -n 1 "$PGDATA_DIR/postmaster.pid" 2>/dev/null | tr -dc 0-9 || true)
	for ((i = 0; i < 50; i++)); do
		[[ -n "$pid" && -e "/proc/$pid" ]] || break
		sleep 0.1
	done
	log "PostgreSQL killed (SIGKILL, $n processes); '$0 start $STATE' restarts it on port $PORT"
}

cmd_status() {
	find_data_dir
	if accepting; then
		echo "postgres running on 127.0.0.1:$PORT (data $PGDATA_DIR)"
		return 0
	fi
	if [[ -n "$(cluster_pids)" ]]; then
		echo "postgres: processes running but not accepting connections on 127.0.0.1:${PORT:-?}"
	else
		echo "postgres stopped"
	fi
	return 3
}

cmd_psql() {
	find_data_dir
	accepting || die 3 "cluster in $STATE is not running"
	PGPASSWORD=$(password) exec "$BIN/psql" -X -h 127.0.0.1 -p "$PORT" -U "$PG_SUPERUSER" -d postgres "$@"
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
		psql) cmd_psql "$@" ;;
		*) usage ;;
	esac
}

main "$@"
