#!/usr/bin/env bash
# Runs C test binaries (cmocka unit tests, KVM tests). Exit status 77 means the
# binary skipped itself (e.g. no /dev/kvm); it is reported, not failed.
# Prints "N passed, N failed, N skipped" counting binaries.
set -u
pass=0 fail=0 skip=0
for t in "$@"; do
	case $t in *.d | *.o) continue ;; esac
	"$t"
	rc=$?
	case $rc in
	0) pass=$((pass + 1)) ;;
	77) skip=$((skip + 1)); echo "SKIPPED: $t" ;;
	*) fail=$((fail + 1)); echo "FAILED: $t (exit $rc)" ;;
	esac
done
echo "binaries: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ] && [ $((pass + skip)) -gt 0 ]
