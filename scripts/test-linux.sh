#!/usr/bin/env bash
# The Linux tier: tests marked `linux` (they need KVM: directly, or in the nested VM
# where this host has none; see scripts/test.sh for the same rule).
set -u
cd "$(dirname "$0")/.."
. scripts/kvm-usable.sh
PYTHON=${PYTHON:-/usr/bin/python3}
run=()
if ! kvm_usable; then
	if [ "${GODWIT_NESTED:-0}" != 1 ] || [ "$(id -u)" -ne 0 ]; then
		echo "Linux tier skipped: no usable /dev/kvm (GODWIT_NESTED=1 runs it in a nested VM)"
		exit 0
	fi
	run=(scripts/nested-kvm/run.sh --timeout 2400 --)
fi
"${run[@]}" "$PYTHON" -m pytest -q -rfs -p no:cacheprovider tests/integration -m linux
