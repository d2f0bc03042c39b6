#!/usr/bin/env bash
# The Linux tier: tests marked `linux` (they need KVM: directly, or in the nested VM
# where this host has none or has only kvm_pvm, which cannot run Linux user space; see
# scripts/test.sh for the same rule).
set -u
cd "$(dirname "$0")/.."
. scripts/kvm-usable.sh
PYTHON=${PYTHON:-/usr/bin/python3}
nested=(scripts/nested-kvm/run.sh --timeout 2400 --)
want_nested() { [ "${GODWIT_NESTED:-0}" = 1 ] && [ "$(id -u)" -eq 0 ]; }
run=()
if ! kvm_usable; then
	if ! want_nested; then
		echo "Linux tier skipped: no usable /dev/kvm (GODWIT_NESTED=1 runs it in a nested VM)"
		exit 0
	fi
	run=("${nested[@]}")
elif [ -d /sys/module/kvm_pvm ] && [ "${GODWIT_LINUX_FORCE:-0}" != 1 ]; then
	if ! want_nested; then
		echo "Linux tier not run: on kvm_pvm a Linux guest's user space cannot make system calls"
		echo "(ring-3 syscall stays in ring 3; docs/linux-guests.md, \"On a kvm_pvm host\")."
		echo "GODWIT_NESTED=1 runs it in a nested VM (scripts/nested-kvm); GODWIT_LINUX_FORCE=1"
		echo "runs it on kvm_pvm anyway (a boot takes ~12 minutes, then init dies)."
		exit 0
	fi
	run=("${nested[@]}")
fi
"${run[@]}" "$PYTHON" -m pytest -q -rfs -p no:cacheprovider tests/integration -m linux
