#!/bin/bash
# One godwit move of an incompressible guest over loopback, with a profiler attached to
# the source and the destination processes (docs/bench.md, "Where the time goes on an
# incompressible move"; issue 17).
#
#   bench/profile_incompressible.sh MODE TOOL OUTDIR
#     MODE  dirty: 2 GiB, 2 vCPUs, `heartbeat 10 ; memtouch 1G random`, moved while it writes
#           idle:  the same guest, but after memtouch's pass 2 its vCPU (thread vcpu-1) is
#                  held to 1% of a CPU (cgroup v1 cpu controller, cfs_quota 1 ms per 100 ms),
#                  so 1 GiB of random pages moves while almost nothing dirties it (a paused
#                  VM cannot be migrated). The cgroup is removed at the end.
#     TOOL  none | perf (perf record -a -g, system-wide) | stat (perf stat --per-thread,
#           each process; this VM has no hardware counters: task-clock and switches)
#           | strace (strace -c -f, each process)
#     OUTDIR where the consoles, -v logs, the migrate JSON and the tool output go
#
# Defaults of godwit migrate (compress auto, downtime 50 ms, one connection). Every
# process is started here and stopped by its PID. Run from the repository root after
# `make -j2 all`; needs root for perf and strace on the processes.
set -u
MODE=${1:?mode}; TOOL=${2:?tool}; OUT=${3:?outdir}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
GODWIT=${GODWIT:-$ROOT/build/godwit}
GUEST=$ROOT/build/guest/testguest.elf
mkdir -p "$OUT"; rm -f "$OUT"/*.sock
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PIDS=()
CG=
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	if [ -n "${CG:-}" ]; then
		for t in $(cat "$CG/tasks" 2>/dev/null); do echo "$t" >/sys/fs/cgroup/cpu/tasks; done
		sleep 0.5; rmdir "$CG"
	fi
}
trap cleanup EXIT

"$GODWIT" receive -v --listen tcp:127.0.0.1:$PORT --api "$OUT/dst.sock" \
	--console file:"$OUT/dst.console" 2>"$OUT/dst.log" & DST=$!; PIDS+=($DST)
"$GODWIT" run -v --kernel "$GUEST" --memory 2G --cpus 2 \
	--cmdline 'heartbeat 10 ; memtouch 1G random' --api "$OUT/src.sock" \
	--console file:"$OUT/src.console" 2>"$OUT/src.log" & SRC=$!; PIDS+=($SRC)

for i in $(seq 600); do
	grep -q 'memtouch: pass 2 ok' "$OUT/src.console" 2>/dev/null && break; sleep 0.1
done
grep -q 'memtouch: pass 2 ok' "$OUT/src.console" || { echo "guest did not warm up"; exit 1; }
grep -q waiting "$OUT/dst.log" || sleep 1
if [ "$MODE" = idle ]; then
	CG=/sys/fs/cgroup/cpu/godwit-prof-$$
	mkdir "$CG" && echo 100000 >"$CG/cpu.cfs_period_us" && echo 1000 >"$CG/cpu.cfs_quota_us"
	for t in /proc/$SRC/task/*; do
		[ "$(cat "$t/comm")" = vcpu-1 ] && echo "$(basename "$t")" >"$CG/tasks"
	done
	sleep 1
	tail -1 "$OUT/src.console" >"$OUT/idle.mark"
fi

TOOLPIDS=()
echo "$SRC $DST" >"$OUT/pids"
case $TOOL in
perf)	# system-wide, so that threads born during the move (the migration thread, the
	# destination's vCPUs) are sampled; `perf report --pid` separates the two processes
	perf record -a -g -F 999 -o "$OUT/perf.data" 2>"$OUT/perf.log" & TOOLPIDS+=($!);;
strace)
	strace -c -f -S calls -p $SRC -o "$OUT/src.strace" 2>/dev/null & TOOLPIDS+=($!)
	strace -c -f -S calls -p $DST -o "$OUT/dst.strace" 2>/dev/null & TOOLPIDS+=($!);;
esac
sleep 0.5
cat /proc/loadavg >"$OUT/loadavg.before"; head -1 /proc/stat >"$OUT/stat.before"
T0=$(date +%s.%N)
NSRC=$(ls /proc/$SRC/task | wc -l)
"$GODWIT" migrate --api "$OUT/src.sock" --to tcp:127.0.0.1:$PORT --json >"$OUT/migrate.json" 2>"$OUT/migrate.log" &
MIG=$!
# Each thread's /proc schedstat (ns on a CPU, ns runnable but waiting for one, slices)
# every 0.1 s while the move runs: bench/schedstat_delta.py turns it into CPU and wait
# per thread.
( while kill -0 $MIG 2>/dev/null; do
	for p in $SRC $DST; do for t in /proc/$p/task/*; do
		echo "$(date +%s.%N) $p ${t##*/} $(cat $t/comm 2>/dev/null) $(cat $t/schedstat 2>/dev/null)"
	done; done; sleep 0.1
  done >"$OUT/schedstat.log" 2>/dev/null ) &
if [ "$TOOL" = stat ]; then
	# perf stat -p counts the threads that exist when it attaches (a later thread's counts
	# go to its creator): attach once the migration thread and the destination's vCPU
	# threads exist, about 0.1-0.3 s into the move
	for i in $(seq 100); do
		[ "$(ls /proc/$SRC/task | wc -l)" -gt "$NSRC" ] && [ "$(ls /proc/$DST/task 2>/dev/null | wc -l)" -ge 4 ] && break
		sleep 0.02
	done
	for side in src dst; do
		[ $side = src ] && P=$SRC || P=$DST
		perf stat --per-thread -e task-clock,context-switches,cpu-migrations,page-faults \
			-p $P -o "$OUT/$side.stat" & TOOLPIDS+=($!)
	done
fi
wait $MIG
RC=$?
T1=$(date +%s.%N)
cat /proc/loadavg >"$OUT/loadavg.after"; head -1 /proc/stat >"$OUT/stat.after"
for p in "${TOOLPIDS[@]}"; do kill -INT "$p" 2>/dev/null; done
for p in "${TOOLPIDS[@]}"; do wait "$p" 2>/dev/null; done
echo "migrate rc=$RC wall=$(echo "$T1 - $T0" | bc) s"
tail -1 "$OUT/migrate.json"
sleep 4
grep -c 'memtouch: pass .* ok' "$OUT/dst.console" 2>/dev/null | sed 's/^/dst memtouch ok lines: /'
grep -E 'FAILED|ERROR|exception' "$OUT/dst.console" "$OUT/src.console" && echo "GUEST REPORTED ERRORS"
exit $RC
