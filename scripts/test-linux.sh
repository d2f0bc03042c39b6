#!/usr/bin/env bash
# The Linux tier: tests marked `linux` (they need KVM: directly, or in the nested VM
# where this host has none or has only kvm_pvm, which cannot run Linux user space; see
# scripts/test.sh for the same rule).
#
# In the nested VM, pytest records each test's outcome on the host as the test ends
# (GODWIT_TEST_RESULTS, tests/integration/conftest.py). The rig's kernel can wedge or
# power off mid-run (docs/nested-kvm.md), so this script does not trust the VM to report:
# a test that was running when the VM stopped, timed out or went silent is reported as
# "did not finish", the tests not yet started get a fresh VM, and every test's outcome is
# printed at the end. Exit status: 0 only if every test passed or was skipped.
#
#   GODWIT_LINUX_BOOTS         nested VMs to spend on one run (default 3)
#   GODWIT_LINUX_VM_TIMEOUT    bound on one nested VM, boot included (s, default 2400)
#   GODWIT_LINUX_STALL         stop a nested VM when no test has ended for this long
#                              (s, default 900)
#   GODWIT_LINUX_OUT           where outcomes, failure reports and consoles go
#                              (default build/test-linux, emptied first)
#   GODWIT_LINUX_TESTDIR       the tests' directory, with its pytest.ini (default
#                              tests/integration)
#   NESTED_KVM_RUN             the rig (default scripts/nested-kvm/run.sh); when set, it
#                              is used whatever this host has (for testing this script)
set -u
cd "$(dirname "$0")/.."
. scripts/kvm-usable.sh
PYTHON=${PYTHON:-/usr/bin/python3}
want_nested() { [ "${GODWIT_NESTED:-0}" = 1 ] && [ "$(id -u)" -eq 0 ]; }
pytest_args=(-q -rfEs -p no:cacheprovider)
nested=''
if [ -n "${NESTED_KVM_RUN:-}" ]; then
	nested=1
elif ! kvm_usable; then
	if ! want_nested; then
		echo "Linux tier skipped: no usable /dev/kvm (GODWIT_NESTED=1 runs it in a nested VM)"
		exit 0
	fi
	nested=1
elif [ -d /sys/module/kvm_pvm ] && [ "${GODWIT_LINUX_FORCE:-0}" != 1 ]; then
	if ! want_nested; then
		echo "Linux tier not run: on kvm_pvm a Linux guest's user space cannot make system calls"
		echo "(ring-3 syscall stays in ring 3; docs/linux-guests.md, \"On a kvm_pvm host\")."
		echo "GODWIT_NESTED=1 runs it in a nested VM (scripts/nested-kvm); GODWIT_LINUX_FORCE=1"
		echo "runs it on kvm_pvm anyway (a boot takes ~12 minutes, then init dies)."
		exit 0
	fi
	nested=1
fi
testdir=${GODWIT_LINUX_TESTDIR:-tests/integration}
[ -n "$nested" ] || exec "$PYTHON" -m pytest "${pytest_args[@]}" "$testdir" -m linux

boots=${GODWIT_LINUX_BOOTS:-3}
vm_timeout=${GODWIT_LINUX_VM_TIMEOUT:-2400}
stall=${GODWIT_LINUX_STALL:-900}
rig=${NESTED_KVM_RUN:-scripts/nested-kvm/run.sh}
cache=${NESTED_KVM_CACHE:-build/nested-kvm}
out=${GODWIT_LINUX_OUT:-build/test-linux}
# The nested VM writes each outcome there, but sees its own /tmp, /run and /dev/shm
# (scripts/nested-kvm/init.sh), not the host's: an outcomes file there never fills.
[ -n "${NESTED_KVM_RUN:-}" ] || case $(realpath -m "$out") in
/tmp | /tmp/* | /run | /run/* | /dev/shm | /dev/shm/*)
	echo "test-linux: GODWIT_LINUX_OUT=$out: the nested VM cannot write to the host's" \
		"/tmp, /run or /dev/shm; choose a directory elsewhere (default build/test-linux)" >&2
	exit 2
	;;
esac
rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Node ids relative to $testdir (pytest's rootdir: its pytest.ini is there).
mapfile -t tests < <("$PYTHON" -m pytest --collect-only -q -p no:cacheprovider \
	"$testdir" -m linux 2> /dev/null | grep '::')
if [ ${#tests[@]} -eq 0 ]; then
	echo "test-linux: collecting the Linux tier found no tests:" >&2
	"$PYTHON" -m pytest --collect-only -q -p no:cacheprovider "$testdir" -m linux >&2
	exit 1
fi

declare -A outcome=() # node id -> passed|failed|error|skipped|xfailed|xpassed|"unfinished: WHY"

# Reads boot $1's outcomes file into `outcome`; a test it started and never ended gets $2.
read_outcomes() {
	local file=$out/boot-$1/outcomes what id
	local -A started=()
	[ -f "$file" ] || return 0
	while IFS=$'\t' read -r what id; do
		[ -n "$id" ] || continue # a line the VM's death cut short
		case $what in
		start) started[$id]=1 ;;
		passed | failed | error | skipped | xfailed | xpassed)
			outcome[$id]=$what
			unset "started[$id]"
			;;
		esac
	done < "$file"
	for id in "${!started[@]}"; do outcome[$id]=$2; done
}

# Runs run.sh ($@) in the background; stops it (by PID: run.sh then kills its QEMU) when
# the outcomes file $1 has not grown for $stall seconds. Returns run.sh's status, 86 for
# a stall.
run_watched() {
	local file=$1 pid last now size prev=-1 rc
	shift
	"$@" &
	pid=$!
	last=$(date +%s)
	while kill -0 "$pid" 2> /dev/null; do
		sleep 5
		size=$(stat -c %s "$file" 2> /dev/null || echo 0)
		now=$(date +%s)
		if [ "$size" != "$prev" ]; then
			prev=$size last=$now
		elif [ $((now - last)) -ge "$stall" ]; then
			echo "test-linux: no test ended for ${stall}s: stopping the nested VM (run.sh pid $pid)" >&2
			kill "$pid" 2> /dev/null
			wait "$pid" 2> /dev/null
			return 86
		fi
	done
	wait "$pid"
	rc=$?
	return $rc
}

boot=0
while [ "$boot" -lt "$boots" ]; do
	todo=()
	for id in "${tests[@]}"; do [ -n "${outcome[$id]:-}" ] || todo+=("$testdir/$id"); done
	[ ${#todo[@]} -gt 0 ] || break
	boot=$((boot + 1))
	dir=$out/boot-$boot
	mkdir -p "$dir"
	: > "$dir/outcomes"
	echo "test-linux: nested VM $boot of at most $boots: ${#todo[@]} tests" >&2
	GODWIT_TEST_RESULTS=$dir run_watched "$dir/outcomes" \
		"$rig" --timeout "$vm_timeout" -- \
		"$PYTHON" -m pytest "${pytest_args[@]}" "${todo[@]}"
	rc=$?
	cp "$cache/last-console.log" "$dir/console.log" 2> /dev/null
	cp "$cache/last-qemu.err" "$dir/qemu.err" 2> /dev/null
	case $rc in
	0 | 1) why="pytest ended (status $rc) without an outcome for it" ;;
	86) why="no test ended for ${stall}s; the nested VM was stopped" ;;
	124) why="the nested VM timed out (${vm_timeout}s)" ;;
	*) why="the nested VM stopped (run.sh status $rc)" ;;
	esac
	before=${#outcome[@]}
	read_outcomes "$boot" "unfinished: $why"
	# pytest ran to its end, or the VM got no test going: another VM would do the same.
	if [ "$rc" -le 1 ] || [ ${#outcome[@]} -eq "$before" ]; then break; fi
done

echo
echo "Linux tier (nested VM; per-boot outcomes, failure reports and consoles in $out):"
bad=0
declare -A count=()
for id in "${tests[@]}"; do
	o=${outcome[$id]:-not-run}
	case $o in
	passed | skipped | xfailed) ;;
	*) bad=$((bad + 1)) ;;
	esac
	count[${o%%:*}]=$((${count[${o%%:*}]:-0} + 1))
	printf '  %-10s %s\n' "${o%%:*}" "$id"
	[ "${o%%:*}" = "$o" ] || printf '             (did not finish: %s)\n' "${o#*: }"
	for f in "$out"/boot-*/[0-9]*.txt; do
		[ -f "$f" ] && [ "$(head -n 1 "$f")" = "$o $id" ] && printf '             report: %s\n' "$f"
	done
done
summary=''
for o in "${!count[@]}"; do summary+="${summary:+, }${count[$o]} $o"; done
echo "Linux tier: $summary, in $boot nested VM(s)"
[ "$bad" -eq 0 ]
