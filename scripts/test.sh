#!/usr/bin/env bash
# The test tiers, in order. Each tier runs even if an earlier one failed, so one
# run shows every failure; the exit status is non-zero if any tier failed or if
# no test ran at all.
set -u
cd "$(dirname "$0")/.."
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
if compgen -G 'build/tests/kvm/test_*' > /dev/null; then
	tier "KVM tests" scripts/run-unit.sh build/tests/kvm/test_*
	tier "KVM tests under ASan+UBSan" scripts/run-unit.sh build/san/tests/kvm/test_*
fi
if compgen -G 'build/fuzz/fuzz_*' > /dev/null; then
	tier "fuzzing (${FUZZ_SECONDS}s per target)" scripts/fuzz-run.sh "$FUZZ_SECONDS" build/fuzz/fuzz_*
fi
tier "integration tests" "$PYTHON" -m pytest -q -rs tests/integration -m 'not linux'
tier "integration tests against the ASan+UBSan build" env GODWIT=build/san/godwit \
	"$PYTHON" -m pytest -q -rs tests/integration -m 'not linux and not slow and not qemu'

if [ ${#failed[@]} -ne 0 ]; then
	echo "FAILED tiers: ${failed[*]}"
	exit 1
fi
echo "all test tiers passed"
