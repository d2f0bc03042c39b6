#!/usr/bin/env bash
# fuzz-run.sh SECONDS TARGET...: runs each libFuzzer target for SECONDS on its seed
# corpus (fuzz/corpus/NAME, copied so the tree is never written) and fails on any crash.
set -eu
secs=$1
shift
for t in "$@"; do
	name=$(basename "$t")
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	if [ -d "fuzz/corpus/$name" ]; then
		cp -r "fuzz/corpus/$name/." "$work/"
	fi
	echo "fuzz: $name for ${secs}s"
	"$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=0 \
		-artifact_prefix="build/fuzz/$name-" "$work" 2> "build/fuzz/$name.log" ||
		{ tail -50 "build/fuzz/$name.log"; echo "fuzz: $name FAILED (log: build/fuzz/$name.log)"; exit 1; }
	grep -E '^#[0-9]+.*DONE|Done [0-9]+ runs' "build/fuzz/$name.log" | tail -1 || true
	rm -rf "$work"
	trap - EXIT
done
