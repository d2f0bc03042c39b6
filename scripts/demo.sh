#!/usr/bin/env bash
# The main job, end to end: boot the test guest (heartbeat + memtouch on two
# vCPUs), move it live to a second godwit process over loopback with a live
# progress line, print the summary, and show the guest's output going on from
# the destination. Everything it starts it stops, by PID.
set -u
cd "$(dirname "$0")/.."
. scripts/kvm-usable.sh
GODWIT=${GODWIT:-build/godwit}
GUEST=build/guest/testguest.elf
work=$(mktemp -d /tmp/godwit-demo.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT

if ! kvm_usable; then
	if [ "$(id -u)" -eq 0 ] && [ -z "${GODWIT_DEMO_NESTED:-}" ] && [ "${GODWIT_NO_NESTED:-0}" != 1 ]; then
		echo "godwit demo: this host has no usable /dev/kvm; running the demo inside a nested"
		echo "  VM under QEMU's emulator instead (docs/nested-kvm.md): slower, same steps."
		trap - EXIT
		rm -rf "$work"
		exec env GODWIT_DEMO_NESTED=1 scripts/nested-kvm/run.sh --timeout 900 -- scripts/demo.sh
	fi
	echo "godwit demo: this host has no usable /dev/kvm, so no VM can run here."
	exit 1
fi

port=$(( 20000 + RANDOM % 20000 ))
echo "== 1. a VM on the source: 2 vCPUs, 1 GiB, 'heartbeat 100 ; memtouch 128M 100' (100 MB/s of writes)"
"$GODWIT" run --kernel "$GUEST" --memory 1G --cpus 2 --cmdline 'heartbeat 100 ; memtouch 128M 100' \
	--api "$work/src.sock" --console "file:$work/src.log" 2> "$work/src.err" &
pids+=($!)
for _ in $(seq 600); do grep -q 'memtouch: pass 1 ok' "$work/src.log" 2>/dev/null && break; sleep 0.1; done
tail -n 4 "$work/src.log"

echo "== 2. a destination waiting on tcp:127.0.0.1:$port"
"$GODWIT" receive --listen "tcp:127.0.0.1:$port" --api "$work/dst.sock" \
	--console "file:$work/dst.log" 2> "$work/dst.err" &
pids+=($!)
for _ in $(seq 100); do grep -q 'waiting' "$work/dst.err" 2>/dev/null && break; sleep 0.05; done

echo "== 3. godwit migrate --verify (the VM keeps running throughout)"
"$GODWIT" migrate --api "$work/src.sock" --to "tcp:127.0.0.1:$port" --verify
rc=$?

echo "== 4. the guest goes on from the destination"
sleep 2
tail -n 6 "$work/dst.log"
if grep -q 'ERROR' "$work/dst.log"; then
	echo "godwit demo: the guest found a memory error after the move" >&2
	exit 1
fi
[ $rc -eq 0 ] && echo "== done: the VM moved and its memory checked out"
exit $rc
