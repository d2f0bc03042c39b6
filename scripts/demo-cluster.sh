#!/usr/bin/env bash
# A cluster on this machine (docs/cluster.md): etcd, three agents and a manager on
# loopback ports, four test-guest VMs, then host-a put into maintenance while you
# watch its VMs move away and keep running. Everything it starts it stops, by PID
# (the VMs, which outlive their agents by design, by the PIDs the agents wrote).
set -u
cd "$(dirname "$0")/.."
. scripts/kvm-usable.sh
GODWIT=${GODWIT:-$PWD/build/godwit}
GUEST=$PWD/build/guest/testguest.elf
work=$(mktemp -d /tmp/godwit-cluster.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	for f in "$work"/h-*/*.pid; do
		[ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null
	done
	sleep 1
	rm -rf "$work"
}
trap cleanup EXIT

if ! kvm_usable; then
	echo "godwit demo-cluster: this host has no usable /dev/kvm, so no VM can run here."
	exit 1
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== 1. etcd (one member), the cluster's certificates"
ep=$(free_port) pp=$(free_port)
etcd --name demo --data-dir "$work/etcd" --listen-client-urls "http://127.0.0.1:$ep" \
	--advertise-client-urls "http://127.0.0.1:$ep" --listen-peer-urls "http://127.0.0.1:$pp" \
	--initial-advertise-peer-urls "http://127.0.0.1:$pp" \
	--initial-cluster "demo=http://127.0.0.1:$pp" > "$work/etcd.log" 2>&1 &
pids+=($!)
"$GODWIT" cluster init --dir "$work/pki"
for _ in $(seq 100); do
	curl -s -m 1 -X POST "http://127.0.0.1:$ep/v3/kv/range" -d '{"key":"AA=="}' | grep -q header && break
	sleep 0.1
done

echo "== 2. three agents (host-a, host-b, host-c: 2 GiB and 8 vCPUs each) and a manager"
for h in host-a host-b host-c; do
	"$GODWIT" agent --etcd "http://127.0.0.1:$ep" --name $h --listen "127.0.0.1:$(free_port)" \
		--state-dir "$work/h-$h" --pki "$work/pki" --memory 2G --cpus 8 --ttl 5 \
		2> "$work/agent-$h.log" &
	pids+=($!)
done
mp=$(free_port)
"$GODWIT" manager --etcd "http://127.0.0.1:$ep" --listen "127.0.0.1:$mp" --pki "$work/pki" \
	--id m1 2> "$work/manager.log" &
pids+=($!)
export GODWIT_MANAGER=https://127.0.0.1:$mp GODWIT_PKI=$work/pki
for _ in $(seq 100); do
	[ "$("$GODWIT" cluster hosts --json 2>/dev/null | grep -c '"up": true')" = 3 ] && break
	sleep 0.2
done
"$GODWIT" cluster hosts

echo "== 3. four VMs on host-a (host-b and host-c held in maintenance meanwhile)"
"$GODWIT" cluster maintenance enter host-b >/dev/null
"$GODWIT" cluster maintenance enter host-c >/dev/null
for i in 1 2 3 4; do
	"$GODWIT" cluster create web$i --kernel "$GUEST" --memory 256M --cpus 2 \
		--cmdline 'heartbeat 10 ; memtouch 64M' || exit 1
done
"$GODWIT" cluster maintenance exit host-b >/dev/null
"$GODWIT" cluster maintenance exit host-c >/dev/null
sleep 3
"$GODWIT" cluster vms

echo "== 4. host-a enters maintenance (at most 2 migrations per host at once)"
"$GODWIT" cluster limits --per-host 2
"$GODWIT" cluster maintenance enter host-a --wait
rc=$?
"$GODWIT" cluster tasks --all
sleep 3
"$GODWIT" cluster hosts
"$GODWIT" cluster vms

echo "== 5. the guests go on where they are now"
for i in 1 2 3 4; do
	c=$(ls "$work"/h-*/web$i.console 2>/dev/null | while read -r f; do
		[ -f "${f%.console}.pid" ] && echo "$f"; done | head -1)
	echo "web$i ($(basename "$(dirname "$c")")): $(grep 'memtouch: pass' "$c" | tail -1)"
done
echo "== 6. what happened"
"$GODWIT" cluster events
[ $rc -eq 0 ] && echo "== done: host-a is empty and in maintenance; its VMs run elsewhere"
exit $rc
