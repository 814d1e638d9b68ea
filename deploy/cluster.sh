#!/usr/bin/env bash
# cluster.sh: eventsrv's cluster mode from binaries, on one machine: a
# 3-node NATS cluster with JetStream (routes on loopback) and 3 eventsrv
# instances following one stream, R3 by default. Run it from anywhere in a
# checkout; it builds nats-server (the version in go.mod) and eventsrv
# unless told which binaries to use. The README's "Cluster mode" section
# walks through it, and deploy/cluster_test.go runs that walk-through.
#
#   deploy/cluster.sh                  start, print the URLs, wait for Ctrl-C
#   deploy/cluster.sh COMMAND [ARG...] start, run COMMAND, stop
#
# COMMAND sees the cluster in its environment, and so does a shell that
# sources $WORK/env (written at start; the script prints its path):
#   CLUSTER_LISTEN      the 3 listen URLs, comma-separated (POST /event)
#   CLUSTER_BROADCAST   the 3 broadcast URLs, comma-separated (WebSocket)
#   CLUSTER_NATS        the 3 NATS client URLs, comma-separated
#   CLUSTER_TOKEN_FILE  the tokens file (one token)
#   CLUSTER_EVENTSRV_PIDS, CLUSTER_NATS_PIDS   comma-separated pids
#   TOKEN               the token
#   LISTEN_1..3         instance i's listen server, http://127.0.0.1:port
#   BROADCAST_1..3      instance i's broadcast server, http://127.0.0.1:port
#                       (Server-Sent Events at /events)
#   EVENTSRV_PID_1..3, NATS_PID_1..3
# for example, with the load tool built as /tmp/bench:
#   deploy/cluster.sh sh -c '/tmp/bench -listen $CLUSTER_LISTEN \
#     -broadcast $CLUSTER_BROADCAST -token-file $CLUSTER_TOKEN_FILE -subs 1000'
#
# Settings (environment):
#   WORK=DIR          stores, tokens file, env file and logs; default: a new
#                     temporary directory, removed at exit (a DIR you give
#                     is kept, and its NATS stores are used again)
#   NATS_SERVER=PATH  nats-server binary; default: built from go.mod's module
#   EVENTSRV=PATH     eventsrv binary; default: built from this checkout
#   REPLICAS=3        the stream's replicas (NATS_REPLICAS)
#   NATS_PORT=4222    NATS node i (0-2) takes client port NATS_PORT+i,
#                     route port NATS_PORT+2000+i, monitoring NATS_PORT+4000+i
#   EVENTSRV_PORT=8080  instance i takes listen EVENTSRV_PORT+3i, broadcast
#                     +3i+1, metrics +3i+2 (and pprof 6060+i when built
#                     with -tags pprof)
#   LOG_LEVEL=warn    eventsrv's log level
#   NATS_GODEBUG=schedtrace=2147483647   the nats-servers' GODEBUG: by
#                     default the setting eventsrv gives itself, which keeps
#                     the Go runtime's sysmon from waking ~60 times after
#                     every idle gap (README, Configuration); empty: Go's
#                     default
# Everything started is stopped when the script exits, however it exits.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
replicas=${REPLICAS:-3}
nats_port=${NATS_PORT:-4222}
eventsrv_port=${EVENTSRV_PORT:-8080}
ready_timeout=60

if [ -n "${WORK:-}" ]; then
	work=$WORK
	mkdir -p "$work"
	keep=1
else
	work=$(mktemp -d /tmp/eventsrv-cluster.XXXXXX)
	keep=0
fi

# Stopped in this order: eventsrv (which drains from NATS) first.
pids=()
nats=()
stop() {
	local status=$?
	trap - EXIT INT TERM
	for group in pids nats; do
		local -n list=$group
		if [ ${#list[@]} -gt 0 ]; then
			kill "${list[@]}" 2>/dev/null || true
			wait "${list[@]}" 2>/dev/null || true
		fi
	done
	if [ "$keep" = 0 ]; then
		rm -rf "$work"
	else
		echo "cluster.sh: logs and stores kept in $work" >&2
	fi
	exit "$status"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { echo "cluster.sh: $*" >&2; }

# fail prints a log's end and exits (the EXIT trap stops everything).
fail() {
	log "$1"
	if [ -n "${2:-}" ] && [ -f "$2" ]; then
		tail -n 20 "$2" >&2
	fi
	exit 1
}

# logs maps the pid of each server started to its log file.
declare -A logs

# wait_ok URL LOG waits until URL answers 200; it fails, with the end of a
# log, as soon as a server started has exited, or with LOG's end when the
# time is up.
wait_ok() {
	local url=$1 logfile=$2 deadline=$((SECONDS + ready_timeout)) pid
	until curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
		for pid in "${!logs[@]}"; do
			if ! kill -0 "$pid" 2>/dev/null; then
				fail "${logs[$pid]%.log} exited (a port in use?)" "${logs[$pid]}"
			fi
		done
		if [ $SECONDS -ge $deadline ]; then
			fail "$url did not answer 200 within ${ready_timeout}s" "$logfile"
		fi
		sleep 0.2
	done
}

nats_server=${NATS_SERVER:-}
if [ -z "$nats_server" ]; then
	log "building nats-server from go.mod"
	(cd "$root" && go build -o "$work/nats-server" github.com/nats-io/nats-server/v2)
	nats_server=$work/nats-server
fi
eventsrv=${EVENTSRV:-}
if [ -z "$eventsrv" ]; then
	log "building eventsrv"
	(cd "$root" && go build -o "$work/eventsrv" ./cmd/eventsrv)
	eventsrv=$work/eventsrv
fi

# NATS: 3 nodes, each with routes to all three (its own is ignored).
routes=""
nats_urls=""
for i in 0 1 2; do
	routes+="${routes:+,}nats://127.0.0.1:$((nats_port + 2000 + i))"
	nats_urls+="${nats_urls:+,}nats://127.0.0.1:$((nats_port + i))"
done
nats_pids=""
for i in 0 1 2; do
	mkdir -p "$work/nats$i"
	GODEBUG=${NATS_GODEBUG-schedtrace=2147483647} "$nats_server" -n "n$i" -a 127.0.0.1 -p $((nats_port + i)) -m $((nats_port + 4000 + i)) \
		-js -sd "$work/nats$i" \
		--cluster_name eventsrv --cluster "nats://127.0.0.1:$((nats_port + 2000 + i))" --routes "$routes" \
		>"$work/nats$i.log" 2>&1 &
	nats+=($!)
	logs[$!]=$work/nats$i.log
	nats_pids+="${nats_pids:+,}$!"
done
for i in 0 1 2; do
	# /healthz turns 200 once JetStream is up and the node is current
	# with the cluster's metadata leader.
	wait_ok "http://127.0.0.1:$((nats_port + 4000 + i))/healthz" "$work/nats$i.log"
done
log "NATS cluster ready: $nats_urls"

# eventsrv: 3 instances sharing one token and one stream.
(umask 077 && "$eventsrv" token >"$work/tokens")
listen_urls=""
broadcast_urls=""
eventsrv_pids=""
for i in 0 1 2; do
	base=$((eventsrv_port + 3 * i))
	env BIND_ADDRESS=127.0.0.1 LISTEN_PORT=$base BROADCAST_PORT=$((base + 1)) \
		METRICS_ADDRESS=127.0.0.1:$((base + 2)) PPROF_ADDRESS=127.0.0.1:$((6060 + i)) \
		TOKENS_FILE="$work/tokens" LOG_LEVEL="${LOG_LEVEL:-warn}" \
		NATS_URL="$nats_urls" NATS_REPLICAS="$replicas" \
		"$eventsrv" >"$work/eventsrv$i.log" 2>&1 &
	pids+=($!)
	logs[$!]=$work/eventsrv$i.log
	eventsrv_pids+="${eventsrv_pids:+,}$!"
	listen_urls+="${listen_urls:+,}http://127.0.0.1:$base"
	broadcast_urls+="${broadcast_urls:+,}ws://127.0.0.1:$((base + 1))/"
done
for i in 0 1 2; do
	# /readyz turns 200 once the instance is connected and follows the
	# stream.
	wait_ok "http://127.0.0.1:$((eventsrv_port + 3 * i))/readyz" "$work/eventsrv$i.log"
done
log "eventsrv instances ready (stream EVENTSRV, R$replicas)"

export CLUSTER_LISTEN=$listen_urls CLUSTER_BROADCAST=$broadcast_urls CLUSTER_NATS=$nats_urls
export CLUSTER_TOKEN_FILE=$work/tokens CLUSTER_EVENTSRV_PIDS=$eventsrv_pids CLUSTER_NATS_PIDS=$nats_pids
export TOKEN
TOKEN=$(grep -v '^#' "$work/tokens" | head -n 1)
# The same, per instance, for people in another shell: . $work/env
{
	for v in CLUSTER_LISTEN CLUSTER_BROADCAST CLUSTER_NATS CLUSTER_TOKEN_FILE CLUSTER_EVENTSRV_PIDS CLUSTER_NATS_PIDS TOKEN; do
		printf 'export %s=%q\n' "$v" "${!v}"
	done
	for i in 1 2 3; do
		base=$((eventsrv_port + 3 * (i - 1)))
		printf 'export LISTEN_%d=http://127.0.0.1:%d BROADCAST_%d=http://127.0.0.1:%d EVENTSRV_PID_%d=%d NATS_PID_%d=%d\n' \
			"$i" "$base" "$i" $((base + 1)) "$i" "${pids[i - 1]}" "$i" "${nats[i - 1]}"
	done
} >"$work/env"
# shellcheck source=/dev/null
. "$work/env"

if [ $# -gt 0 ]; then
	"$@"
	exit $?
fi
cat <<EOF
listen     $CLUSTER_LISTEN
broadcast  $CLUSTER_BROADCAST
nats       $CLUSTER_NATS
token      $TOKEN  (in $CLUSTER_TOKEN_FILE)
eventsrv pids $CLUSTER_EVENTSRV_PIDS, nats-server pids $CLUSTER_NATS_PIDS
In another shell, . $work/env sets TOKEN, LISTEN_1..3, BROADCAST_1..3 and the pids.
Ctrl-C stops everything.
EOF
while true; do
	sleep 3600 &
	pids+=($!)
	wait $! || true
done
