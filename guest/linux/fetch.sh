#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Downloads (once) the Debian packages the Linux guest is made of into DIR:
# the kernel that linux-image-cloud-amd64 points at today, and busybox-static.
# Writes DIR/kernel.deb and DIR/busybox.deb as links to the downloaded files.
# Only the apt client is used (apt-cache depends, apt-get download).
set -eu

dir=$1
mkdir -p "$dir"
cd "$dir"

apt_opts=
# apt drops to the _apt user to download, who cannot write into a root-owned
# build tree: as root, download as root (a documented apt option) to avoid the warning.
if [ "$(id -u)" = 0 ]; then
	apt_opts="-o APT::Sandbox::User=root"
fi

# The meta package depends on exactly one versioned image package.
kpkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
	sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' | head -n 1)
if [ -z "$kpkg" ]; then
	echo "fetch.sh: apt-cache knows no linux-image-cloud-amd64 (run apt-get update?)" >&2
	exit 1
fi

# $1: package name; $2: link name. Downloads only when no .deb of it is here.
get() {
	ver=$(apt-cache policy "$1" | sed -n 's/^ *Candidate: //p')
	if [ -z "$ver" ] || [ "$ver" = "(none)" ]; then
		echo "fetch.sh: no candidate version for $1" >&2
		exit 1
	fi
	# apt-get names the file NAME_VERSION_ARCH.deb with ':' written as %3a.
	file="$1_$(echo "$ver" | sed 's/:/%3a/')_amd64.deb"
	if [ ! -s "$file" ]; then
		echo "  APT     $1 $ver"
		# shellcheck disable=SC2086
		apt-get -q $apt_opts download "$1=$ver" >/dev/null
	fi
	[ -s "$file" ] || { echo "fetch.sh: $file missing after download" >&2; exit 1; }
	ln -sf "$file" "$2"
}

get "$kpkg" kernel.deb
get busybox-static busybox.deb
echo "$kpkg" > kernel-package
