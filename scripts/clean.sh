#!/usr/bin/env bash
# Stop every local stack under var/ (var/stack, var/test-stack, ...) and remove
# the folders they keep outside var/ (under /tmp, when the servers' users could
# not reach var/). `make clean` runs this, then removes var/ and .venv.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

shopt -s nullglob
for dir in var/*/; do
	dir=${dir%/}
	if [[ -e "$dir/rabbitmq.ports" || -e "$dir/rabbitmq" ]]; then
		scripts/rabbitmq.sh stop "$dir" || true
	fi
	if [[ -e "$dir/postgres.port" || -e "$dir/pg" ]]; then
		scripts/postgres.sh stop "$dir" || true
	fi
	for link in "$dir/rabbitmq" "$dir/pg"; do
		if [[ -L "$link" ]]; then
			target=$(readlink "$link")
			case "$target" in
				/tmp/pumpurs-*) rm -rf -- "$target" ;;
			esac
		fi
	done
done
