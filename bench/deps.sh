#!/usr/bin/env bash
# What `make bench` needs from Debian beyond `make deps`: QEMU 7.2 (qemu-system-x86,
# also in scripts/deps.sh) and python3-matplotlib for the plots. Installs only what is
# missing (apt-get, as root); without root it says what is missing and goes on (the
# benchmark then runs without plots, or stops if QEMU is missing).
set -euo pipefail

PKGS=(qemu-system-x86 python3-matplotlib)
missing=()
for p in "${PKGS[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing+=("$p")
	fi
done
if [ ${#missing[@]} -ne 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "bench: not root, cannot install: ${missing[*]} (sudo apt-get install ${missing[*]})" >&2
	else
		echo "bench: installing missing Debian packages: ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}"
	fi
fi
v=$(dpkg-query -W -f='${Version}' qemu-system-x86 2>/dev/null || true)
case "$v" in
	*:7.2*) ;;
	"") ;;
	*) echo "bench: warning: qemu-system-x86 is $v, not 7.2 (the comparison is meant against Debian 12's QEMU 7.2)" >&2 ;;
esac
