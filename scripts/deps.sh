#!/usr/bin/env bash
# Installs the Debian packages godwit needs, if any is missing. Nothing else is
# downloaded. A no-op (one dpkg-query) when everything is there.
set -euo pipefail

PKGS=(
	gcc make binutils clang libclang-rt-14-dev   # build, sanitizers, libFuzzer
	libcmocka-dev                                 # unit tests
	libmicrohttpd-dev libjansson-dev              # API: HTTP server, JSON
	libcurl4-openssl-dev                          # API: HTTP client (godwit migrate)
	libssl-dev openssl                            # TLS on migration streams and the cluster; tests make certificates
	libevent-dev                                  # cluster: HTTPS server (mTLS)
	etcd-server                                   # cluster: the store (tests, demo-cluster)
	libxxhash-dev                                 # stream checksums
	liblz4-dev                                    # stream compression (RAM_LZ4)
	libzstd-dev                                   # stream compression on long links (RAM_ZSTD)
	acpica-tools                                  # iasl -d checks the ACPI tables
	python3 python3-pytest python3-cryptography  # integration tests (and their TLS certificates)
	qemu-system-x86                               # boots the test guest under TCG; bench
	curl iproute2                                 # API by hand; test networks
	chromium chromium-driver python3-selenium     # the web console's tests: a real browser,
	libnss3-tools                                 # headless, trusting the cluster's CA (certutil)
	kmod lz4 xz-utils zstd                        # guest-linux: modinfo, vmlinux payload
)

missing=()
for p in "${PKGS[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing+=("$p")
	fi
done
# scripts/nested-kvm puts /bin/busybox in its initramfs. busybox-static conflicts with
# busybox: installed only when neither provides /bin/busybox.
[ -x /bin/busybox ] || missing+=(busybox-static)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "godwit: installing missing Debian packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
	echo "godwit: error: need root to install packages (run: sudo make deps)" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
