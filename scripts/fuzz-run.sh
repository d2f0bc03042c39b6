#!/usr/bin/env bash
# fuzz-run.sh SECONDS TARGET...: runs each libFuzzer target for SECONDS on its seed
# corpus (fuzz/corpus/NAME, copied so the tree is never written) and fails on any crash.
set -eu
secs=$1
shift
mkdir -p build/fuzz-logs
for t in "$@"; do
	case $t in *.a | */obj) continue ;; esac
	[ -x "$t" ] && [ -f "$t" ] || continue
	name=$(basename "$t")
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	if [ -d "fuzz/corpus/$name" ]; then
		cp -r "fuzz/corpus/$name/." "$work/"
	fi
	echo "fuzz: $name for ${secs}s"
	"$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=0 \
		-artifact_prefix="build/fuzz-logs/$name-" "$work" 2> "build/fuzz-logs/$name.log" ||
		{ tail -50 "build/fuzz-logs/$name.log"; echo "fuzz: $name FAILED (log: build/fuzz-logs/$name.log)"; exit 1; }
	grep -E '^#[0-9]+.*DONE|Done [0-9]+ runs' "build/fuzz-logs/$name.log" | tail -1 || true
	rm -rf "$work"
	trap - EXIT
done
