#!/usr/bin/env bash
# Three marmot nodes on loopback (127.0.0.2-4) as one cluster, a client on
# each, all in room "lobby": every client publishes one line, and every
# client prints every line, in the same order, with the same offsets.
#
#   examples/cluster/run.sh            # membership by automanaged
#   examples/cluster/run.sh etcd       # by a throwaway etcd (needs etcd-server)
#
# Everything it starts is stopped by PID at the end; logs are in $WORK.
set -euo pipefail
cd "$(dirname "$0")/../.."

provider=${1:-automanaged}
WORK=$(mktemp -d)
pids=()     # nodes and clients
etcd_pid="" # stopped last: the nodes leave the cluster through it
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	if [[ -n $etcd_pid ]]; then
		kill "$etcd_pid" 2>/dev/null || true
		wait "$etcd_pid" 2>/dev/null || true
	fi
}
trap cleanup EXIT
trap "exit 1" INT TERM

go build -o "$WORK/marmot" ./cmd/marmot

flags=(--cluster-provider "$provider")
if [[ $provider == etcd ]]; then
	etcd --name demo --data-dir "$WORK/etcd" \
		--listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 \
		--listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 \
		--initial-cluster demo=http://127.0.0.1:23800 >"$WORK/etcd.log" 2>&1 &
	etcd_pid=$!
	flags+=(--etcd-endpoints 127.0.0.1:23790)
else
	flags+=(--cluster-seeds 127.0.0.2:7011,127.0.0.3:7021,127.0.0.4:7031)
fi

# Node i: cluster traffic on 127.0.0.(i+1):70i1 (automanaged health on 70i2),
# WebSocket on 127.0.0.(i+1):8080.
for i in 1 2 3; do
	ip=127.0.0.$((i + 1))
	"$WORK/marmot" serve --mode rooms --addr "$ip:8080" \
		--cluster "demo-$$" --cluster-node "$i" --cluster-bind "$ip:70${i}1" "${flags[@]}" \
		>"$WORK/node$i.out" 2>"$WORK/node$i.log" &
	pids+=($!)
	node_pid[i]=$!
done
for i in 1 2 3; do
	until grep -q "members=1@.*2@.*3@" "$WORK/node$i.log" 2>/dev/null &&
		grep -q "marmot listening" "$WORK/node$i.out"; do
		if ! kill -0 "${node_pid[i]}" 2>/dev/null; then
			echo "node $i failed:" >&2
			cat "$WORK/node$i.log" >&2
			exit 1
		fi
		sleep 0.2
	done
done
echo "three nodes up: $(grep -o 'members=[^ ]*' "$WORK/node1.log" | tail -1)"

# A client on each node, joined to the lobby; each says hello once all are in.
for i in 1 2 3; do
	mkfifo "$WORK/in$i"
	"$WORK/marmot" connect --subprotocol marmot.v1 --join lobby "ws://127.0.0.$((i + 1)):8080/websocket" \
		<"$WORK/in$i" >"$WORK/client$i.out" 2>"$WORK/client$i.log" &
	pids+=($!)
	exec {fd}>"$WORK/in$i"
	eval "fd$i=$fd"
done
for i in 1 2 3; do
	until grep -q "connected to" "$WORK/client$i.log" 2>/dev/null; do sleep 0.2; done
done
sleep 1 # the joins' replies are on their way
for i in 1 2 3; do
	eval "echo '@lobby hello from a client of node $i' >&\$fd$i"
done
for i in 1 2 3; do
	until [[ $(grep -c '^\[lobby' "$WORK/client$i.out" 2>/dev/null) -ge 3 ]]; do sleep 0.2; done
done
for i in 1 2 3; do
	echo "--- client of node $i received:"
	grep '^\[lobby' "$WORK/client$i.out"
done
