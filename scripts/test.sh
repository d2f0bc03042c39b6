#!/usr/bin/env bash
# The test tiers, in order. Each tier runs even if an earlier one failed, so one
# run shows every failure; the exit status is non-zero if any tier failed or if
# no test ran at all.
set -u
cd "$(dirname "$0")/.."
. scripts/kvm-usable.sh
PYTHON=${PYTHON:-/usr/bin/python3}
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
failed=()

tier() {
	local name=$1
	shift
	echo "=== $name"
	if ! "$@"; then
		failed+=("$name")
	fi
}

tier "unit tests" scripts/run-unit.sh build/tests/unit/test_*
tier "unit tests under ASan+UBSan" scripts/run-unit.sh build/san/tests/unit/test_*
# The KVM tiers need a usable /dev/kvm. Where there is none they are skipped with
# the reason, unless GODWIT_NESTED=1 runs them inside a Linux VM under QEMU's
# emulator whose KVM works (scripts/nested-kvm, slow). Not the default: that
# nested KVM (SVM emulated by TCG) now and then wedges in the kernel (about one run
# in four of a test that creates 21 VMs), which says nothing about godwit.
kvm_run=()
if ! kvm_usable; then
	if [ "${GODWIT_NESTED:-0}" = 1 ] && [ "$(id -u)" -eq 0 ]; then
		kvm_run=(scripts/nested-kvm/run.sh --timeout 1500 --)
		echo "=== no usable /dev/kvm here: KVM tiers run in a nested VM (docs/nested-kvm.md)"
	else
		kvm_run=(skip)
	fi
fi
if [ "${kvm_run[0]:-}" = skip ]; then
	echo "=== KVM tiers SKIPPED: this host has no usable /dev/kvm (GODWIT_NESTED=1 runs them in a nested VM)"
else
	tier "KVM tests" "${kvm_run[@]}" scripts/run-unit.sh build/tests/kvm/test_* build/san/tests/kvm/test_*
	if [ "${GODWIT_KVM_PYTEST:-1}" = 1 ]; then
		tier "integration tests on KVM" "${kvm_run[@]}" "$PYTHON" -m pytest -q -rfs \
			-p no:cacheprovider tests/integration -m 'kvm and not linux'
	fi
fi
# scripts/test-linux.sh itself declines on kvm_pvm, where Linux user space cannot run
# (docs/linux-guests.md, "On a kvm_pvm host").
if [ -f build/guest/vmlinux ] && [ "${kvm_run[0]:-}" != skip ]; then
	tier "Linux guests (make test-linux)" scripts/test-linux.sh
fi
if compgen -G 'build/fuzz/fuzz_*' > /dev/null; then
	tier "fuzzing (${FUZZ_SECONDS}s per target)" scripts/fuzz-run.sh "$FUZZ_SECONDS" build/fuzz/fuzz_*
fi
tier "integration tests" "$PYTHON" -m pytest -q -rs tests/integration -m 'not linux and not kvm'
tier "integration tests against the ASan+UBSan build" env GODWIT=build/san/godwit \
	"$PYTHON" -m pytest -q -rs tests/integration -m 'not linux and not slow and not qemu and not kvm'

if [ ${#failed[@]} -ne 0 ]; then
	echo "FAILED tiers: ${failed[*]}"
	exit 1
fi
echo "all test tiers passed"
