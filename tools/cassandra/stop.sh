#!/usr/bin/env bash
# Stops a Cassandra started by tools/cassandra/start.sh.
#
# Usage: tools/cassandra/stop.sh [--port N | --dir DIR] [--purge]
#
# Sends SIGTERM to the pid recorded in DIR/cassandra.pid, waits up to 60 s,
# then SIGKILL. --purge also removes DIR (data, logs, keystore).
set -euo pipefail

PORT=9042
DIR=
PURGE=0
while [ $# -gt 0 ]; do
	case "$1" in
	--port) PORT=$2; shift 2 ;;
	--dir) DIR=$2; shift 2 ;;
	--purge) PURGE=1; shift ;;
	-h | --help) sed -n '2,7p' "$0"; exit 0 ;;
	*) echo "stop.sh: unknown argument $1 (see --help)" >&2; exit 1 ;;
	esac
done
DIR=${DIR:-${TMPDIR:-/tmp}/uptime-cassandra-$PORT}

if [ -f "$DIR/cassandra.pid" ]; then
	PID=$(cat "$DIR/cassandra.pid")
	if kill -0 "$PID" 2>/dev/null; then
		kill -TERM "$PID"
		for _ in $(seq 1 120); do
			kill -0 "$PID" 2>/dev/null || break
			sleep 0.5
		done
		if kill -0 "$PID" 2>/dev/null; then
			echo "stop.sh: pid $PID did not stop within 60 s; killing it" >&2
			kill -KILL "$PID" 2>/dev/null || true
		fi
		echo "stopped Cassandra (pid $PID)"
	else
		echo "Cassandra from $DIR is not running"
	fi
	rm -f "$DIR/cassandra.pid"
else
	echo "no pid file in $DIR; nothing to stop"
fi
if [ "$PURGE" = 1 ]; then
	rm -rf "$DIR"
fi
