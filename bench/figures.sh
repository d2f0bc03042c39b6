#!/usr/bin/env bash
# godwit's own figures (issues 2 and 3), on this host: time to the test guest's
# first line, the VMM's own memory (RSS minus guest RAM, which is shared memory),
# memtouch dirtying rate with 1 and 2 vCPUs, and live migration over loopback
# (total, downtime, guest-observed pause) for idle and busy guests, RUNS times each.
# Prints a Markdown report on stdout. Side-by-side with QEMU is bench/ (issue 6).
# Usage: bench/figures.sh [RUNS] [--no-migration]
#        (needs /dev/kvm, or run it in scripts/nested-kvm)
set -u
cd "$(dirname "$0")/.."
RUNS=${1:-3}
MIGRATION=1
[ "${2:-}" = --no-migration ] && MIGRATION=0
G=build/godwit
GUEST=build/guest/testguest.elf
W=$(mktemp -d /tmp/godwit-figures.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$W"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }

wait_line() { # FILE REGEX TIMEOUT_S
	local end=$(( $(now_ms) + $3 * 1000 ))
	while [ "$(now_ms)" -lt $end ]; do
		grep -qE "$2" "$1" 2>/dev/null && return 0
		sleep 0.01
	done
	return 1
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "-"}'; }

first_line() {
	local t0 p
	t0=$(now_ms)
	$G run --kernel $GUEST --memory 1G --cmdline 'heartbeat 100' --console "file:$W/fl.log" 2>/dev/null &
	p=$!
	wait_line "$W/fl.log" '^testguest:' 30 && echo $(( $(now_ms) - t0 ))
	kill $p; wait $p 2>/dev/null
	rm -f "$W/fl.log"
}

vmm_memory() { # prints "VmRSS-RssShmem" in KiB after 3 s of memtouch 256M
	local p
	$G run --kernel $GUEST --memory 1G --cpus 2 --cmdline 'heartbeat 100 ; memtouch 256M' \
		--console "file:$W/mem.log" 2>/dev/null &
	p=$!
	wait_line "$W/mem.log" 'memtouch: pass 2 ok' 60
	awk '/^VmRSS/ {r=$2} /^RssShmem/ {s=$2} END {print r - s, r, s}' /proc/$p/status
	kill $p; wait $p 2>/dev/null
}

memtouch_rate() { # CPUS: median of the per-vCPU rates printed by memtouch
	local cpus=$1 cmd="memtouch 256M" p
	[ "$cpus" = 2 ] && cmd="memtouch 256M ; memtouch 256M"
	$G run --kernel $GUEST --memory 1G --cpus "$cpus" --cmdline "$cmd" \
		--console "file:$W/mt.log" 2>/dev/null &
	p=$!
	wait_line "$W/mt.log" 'memtouch: pass 6 ' 120
	kill $p; wait $p 2>/dev/null
	grep -oE 'rate=[0-9]+' "$W/mt.log" | tail -n 8 | cut -d= -f2 | median
	rm -f "$W/mt.log"
}

migrate_once() { # MEMORY CMDLINE -> "total downtime guest_pause"
	local port=$(( 20000 + RANDOM % 20000 )) s d out
	$G run --kernel $GUEST --memory "$1" --cpus 2 --cmdline "$2" --api "$W/s.sock" \
		--console "file:$W/s.log" 2>/dev/null &
	s=$!
	$G receive --listen "tcp:127.0.0.1:$port" --api "$W/d.sock" --console "file:$W/d.log" \
		2>"$W/d.err" &
	d=$!
	wait_line "$W/s.log" '^hb 20 ' 60
	wait_line "$W/d.err" 'waiting' 10
	out=$($G migrate --api "$W/s.sock" --to "tcp:127.0.0.1:$port" --json --timeout 600)
	wait_line "$W/d.log" '^hb [0-9]+ [0-9]+$' 30
	sleep 1
	kill $d $s 2>/dev/null; wait $d $s 2>/dev/null
	/usr/bin/python3 - "$out" "$W/s.log" "$W/d.log" <<'PY'
import json, re, sys
o = json.loads(sys.argv[1])
text = open(sys.argv[2]).read() + open(sys.argv[3]).read()
ns = [int(n) for _, n in re.findall(r"^hb (\d+) (\d+)$", text, re.M)]
gap = max((b - a for a, b in zip(ns, ns[1:])), default=0) / 1e6 - 10
print(o["total_ms"], o["downtime_ms"], f"{gap:.1f}", o["status"])
PY
	rm -f "$W"/s.* "$W"/d.*
}

echo "# godwit figures on $(hostname), $(date -u +%Y-%m-%d)"
echo
echo "KVM: $( [ -d /sys/module/kvm_pvm ] && echo kvm_pvm || ls -d /sys/module/kvm_amd /sys/module/kvm_intel 2>/dev/null | xargs -n1 basename | head -1); $(nproc) CPUs; runs: $RUNS (medians)"
echo
fl=$(for i in $(seq "$RUNS"); do first_line; done | median)
echo "- time from \`godwit run\` to the test guest's first line: **${fl} ms**"
mem=$(vmm_memory)
own=${mem%% *} rest=${mem#* }
rss=${rest%% *} shm=${rest#* }
echo "- VMM's own memory (VmRSS - RssShmem, 2 vCPUs, memtouch 256M running): **$((own / 1024)) MiB** (RSS $((rss / 1024)) MiB, of which guest RAM $((shm / 1024)) MiB)"
echo "- memtouch dirtying rate, 1 vCPU: **$(memtouch_rate 1) MB/s**; 2 vCPUs: **$(memtouch_rate 2) MB/s** per vCPU"
[ $MIGRATION = 1 ] || exit 0
echo
echo "| guest | workload | total_ms | downtime_ms | guest-seen pause (ms) |"
echo "|---|---|---|---|---|"
for mem in 1G 4G; do
	for wl in idle busy; do
		cmd='heartbeat 10'
		[ $wl = busy ] && cmd='heartbeat 10 ; memtouch 256M'
		res=$(for i in $(seq "$RUNS"); do migrate_once $mem "$cmd"; done)
		t=$(echo "$res" | awk '{print $1}' | median)
		dt=$(echo "$res" | awk '{print $2}' | median)
		gp=$(echo "$res" | awk '{print $3}' | median)
		echo "| $mem | $wl | $t | $dt | $gp |"
	done
done
