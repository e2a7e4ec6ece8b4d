# shellcheck shell=bash
# shellcheck disable=SC2034  # variables used by the scripts that source this
# Helpers shared by scripts/rabbitmq.sh, scripts/postgres.sh and friends.
# Source it; it defines functions only (plus a few read-only variables).

PUMPURS_SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# A clean PATH for the servers we start (they get `env -i`).
PUMPURS_SYS_PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

log() { printf '%s: %s\n' "${PUMPURS_LOG_TAG:-pumpurs}" "$*" >&2; }
die() {
	local code=1
	if [[ "${1:-}" =~ ^[0-9]+$ ]]; then code=$1; shift; fi
	log "error: $*"
	exit "$code"
}

is_root() { [[ "$(id -u)" == 0 ]]; }

# Python for the small helpers below: any python3 will do (stdlib only).
pumpurs_python() {
	local py
	for py in python3 python3.11; do
		if command -v "$py" >/dev/null 2>&1; then
			"$py" "$@"
			return
		fi
	done
	die "python3 is needed by the stack scripts (apt-get install -y python3)"
}

# Absolute, symlink-free path of an existing directory.
abs_dir() { (cd "$1" && pwd -P); }

# Short stable id of a state folder: first 8 hex digits of sha1(absolute path).
state_hash() { printf '%s' "$1" | sha1sum | cut -c1-8; }

# Run a command as USER: directly when we already are that user, else runuser (root only).
as_user() {
	local user=$1; shift
	if [[ "$(id -un)" == "$user" ]]; then
		"$@"
	else
		runuser -u "$user" -- "$@"
	fi
}

# free_ports N [PORT...]: print N distinct TCP ports that nothing listens on
# (IPv4 and IPv6 wildcard), outside the kernel's ephemeral range (so an outgoing
# connection can't grab them while our server is down) and outside the default
# range rabbitmqctl uses for its own distribution listener (35672-35682).
# Ports given after N are excluded.
free_ports() {
	pumpurs_python - "$@" <<'PY'
import errno, random, socket, sys

n = int(sys.argv[1])
exclude = {int(p) for p in sys.argv[2:]}
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        eph_lo, eph_hi = map(int, f.read().split())
except OSError:
    eph_lo, eph_hi = 32768, 60999

def usable(p):
    return not (eph_lo <= p <= eph_hi) and not (35660 <= p <= 35700) and p not in exclude

def free(p):
    for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            s = socket.socket(fam, socket.SOCK_STREAM)
        except OSError:
            continue  # no IPv6 here
        try:
            # SO_REUSEADDR: a port whose old connections sit in TIME_WAIT is free
            # for a listener; one that somebody listens on is not.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((addr, p))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return False
        finally:
            s.close()
    return True

cands = [p for p in range(20000, 32000) if usable(p)]
if len(cands) < 1000:
    cands = [p for p in range(10000, 65000) if usable(p)]
random.shuffle(cands)
out = []
for p in cands:
    if free(p):
        out.append(p)
        if len(out) == n:
            break
if len(out) < n:
    sys.exit("no free TCP ports found")
print(" ".join(map(str, out)))
PY
}

# ports_free PORT...: succeed when every port is free for a listener.
ports_free() {
	pumpurs_python - "$@" <<'PY'
import errno, socket, sys
for p in map(int, sys.argv[1:]):
    for fam, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        try:
            s = socket.socket(fam, socket.SOCK_STREAM)
        except OSError:
            continue
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind((addr, p))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                sys.exit(1)
        finally:
            s.close()
PY
}

# pids_with_marker MARKER [EXE]: pids of processes whose environment holds
# PUMPURS_STACK_ID=MARKER (every server process we start gets one, and its
# children inherit it), optionally only those whose executable is named EXE.
pids_with_marker() {
	pumpurs_python - "$@" <<'PY'
import os, sys
marker = b"PUMPURS_STACK_ID=" + sys.argv[1].encode()
exe = sys.argv[2] if len(sys.argv) > 2 else None
me = os.getpid()
for d in os.listdir("/proc"):
    if not d.isdigit() or int(d) == me:
        continue
    try:
        with open(f"/proc/{d}/environ", "rb") as f:
            env = f.read().split(b"\0")
        if marker not in env:
            continue
        if exe is not None:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv0 = f.read().split(b"\0")[0].decode(errors="replace")
            if os.path.basename(argv0) != exe:
                continue
        with open(f"/proc/{d}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                continue  # zombie: already dead
        print(d)
    except OSError:
        continue
PY
}

# kill_marker SIGNAL MARKER [EXE]: send SIGNAL to those processes; print how many.
kill_marker() {
	local sig=$1 marker=$2 exe=${3:-} pids
	pids=$(pids_with_marker "$marker" ${exe:+"$exe"})
	if [[ -n "$pids" ]]; then
		# shellcheck disable=SC2086
		kill "-$sig" $pids 2>/dev/null || true
	fi
	printf '%s\n' "$pids" | grep -c . || true
}

# wait_marker_gone MARKER SECONDS: wait until no process carries MARKER.
wait_marker_gone() {
	local marker=$1 secs=$2 i
	for ((i = 0; i < secs * 5; i++)); do
		[[ -z "$(pids_with_marker "$marker")" ]] && return 0
		sleep 0.2
	done
	return 1
}

# ensure_debian_packages PKG...: install missing Debian packages (root only).
# Services that packages try to start on install (a default RabbitMQ node,
# the "main" PostgreSQL cluster) are kept from starting with a temporary
# policy-rc.d, so nothing listens on the default ports because of us.
ensure_debian_packages() {
	local missing=() p
	for p in "$@"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
			missing+=("$p")
		fi
	done
	((${#missing[@]})) || return 0
	if ! is_root; then
		die 2 "missing Debian package(s): ${missing[*]}; install them as root: apt-get install -y ${missing[*]}"
	fi
	command -v apt-get >/dev/null 2>&1 || die 2 "missing package(s) ${missing[*]} and no apt-get to install them"
	log "installing ${missing[*]} (apt-get)"
	local policy=/usr/sbin/policy-rc.d made_policy=0
	if [[ ! -e "$policy" ]]; then
		printf '#!/bin/sh\n# temporary, from pumpurs scripts: no service starts during install\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		made_policy=1
	fi
	local rc=0
	{
		DEBIAN_FRONTEND=noninteractive apt-get update -q &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
	} >&2 || rc=$?
	((made_policy)) && rm -f "$policy"
	((rc == 0)) || die 2 "apt-get install ${missing[*]} failed (exit $rc)"
	# Belt and braces: if a package still started its default service, stop it.
	for p in "${missing[@]}"; do
		case "$p" in
			rabbitmq-server | postgresql)
				if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
					systemctl stop "$p" >/dev/null 2>&1 || true
				elif command -v service >/dev/null 2>&1; then
					if service "$p" status >/dev/null 2>&1; then service "$p" stop >/dev/null 2>&1 || true; fi
				fi
				;;
		esac
	done
}

# service_dir STATE_DIR NAME USER: print the folder where a server running as
# USER keeps its files: STATE_DIR/NAME, owned by USER. If USER cannot reach
# STATE_DIR (say the clone lives under /root, mode 700), the folder is made in
# /tmp instead and STATE_DIR/NAME becomes a symlink to it.
service_dir() {
	local state=$1 name=$2 user=$3 dir target
	dir="$state/$name"
	if [[ "$(id -un)" == "$user" ]]; then
		mkdir -p "$dir"
		chmod 700 "$dir"
		abs_dir "$dir"
		return
	fi
	# We are root and the server runs as another user.
	if [[ -L "$dir" ]]; then
		target=$(readlink "$dir")
		if [[ -d "$target" && "$(stat -c %U "$target")" == "$user" ]]; then
			printf '%s\n' "$target"
			return
		fi
		rm -f "$dir"
	fi
	if runuser -u "$user" -- test -x "$state" 2>/dev/null; then
		mkdir -p "$dir"
		chown "$user:" "$dir"
		chmod 700 "$dir"
		abs_dir "$dir"
		return
	fi
	log "user $user cannot reach $state; keeping $name files under /tmp (linked from $dir)"
	rm -rf "$dir"
	target=$(mktemp -d "/tmp/pumpurs-$name-XXXXXXXX")
	chown "$user:" "$target"
	chmod 700 "$target"
	ln -s "$target" "$dir"
	printf '%s\n' "$target"
}

# http_ok URL [USER PASSWORD]: succeed when GET URL answers 2xx within 3 s.
http_ok() {
	pumpurs_python - "$@" <<'PY'
import base64, sys, urllib.request
req = urllib.request.Request(sys.argv[1])
if len(sys.argv) > 3:
    tok = base64.b64encode(f"{sys.argv[2]}:{sys.argv[3]}".encode()).decode()
    req.add_header("Authorization", "Basic " + tok)
try:
    with urllib.request.urlopen(req, timeout=3) as r:
        sys.exit(0 if 200 <= r.status < 300 else 1)
except Exception:
    sys.exit(1)
PY
}

# pids_in_dir DIR: pids of live processes whose working directory is DIR
# (PostgreSQL's postmaster and every backend sit in the data directory; their
# environment is not usable for this, as they rewrite it for their titles).
pids_in_dir() {
	pumpurs_python - "$1" <<'PY'
import os, sys
target = os.path.realpath(sys.argv[1])
for d in os.listdir("/proc"):
    if not d.isdigit() or int(d) == os.getpid():
        continue
    try:
        if os.readlink(f"/proc/{d}/cwd") != target:
            continue
        with open(f"/proc/{d}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                continue
        print(d)
    except OSError:
        continue
PY
}

# pid_alive PID: the process exists and is not a zombie.
pid_alive() {
	local state
	[[ -r "/proc/$1/stat" ]] || return 1
	state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
	[[ -n "$state" && "$state" != Z ]]
}
