#!/usr/bin/env bash
# Run a command with a real /dev/kvm on a host that has none: boot a Debian
# kernel under QEMU's software emulator (TCG) with AMD SVM emulated, load
# kvm-amd there, and run the command chrooted into this machine's own
# filesystem (shared over virtio-9p). See docs/nested-kvm.md.
#
#   scripts/nested-kvm/run.sh [--mem 8G] [--smp 2] [--timeout SECS]
#                             [--cpu MODEL] [--kvm-amd OPTS] [--9p OPTS]
#                             [--host-tmp] [--verbose] -- COMMAND...
#
# One COMMAND word is a shell command line (sh -c); several are run as they are.
# It runs as root, in the caller's working directory, with the caller's PATH,
# HOME, LANG, TMPDIR, CI, GODWIT* and the variables named in $NESTED_KVM_ENV.
# Exit status: the command's; 124 on timeout; 125 when the rig itself failed.
set -euo pipefail

usage() { sed -n '7,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 125; }
die() { echo "nested-kvm: $*" >&2; exit 125; }

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache=${NESTED_KVM_CACHE:-$root/build/nested-kvm}

mem=8G smp=2 timeout=1800 cpu=max amdopts='' ninep=cache=mmap verbose='' hosttmp=''
while [ $# -gt 0 ]; do
	case $1 in
	--mem) mem=$2; shift 2 ;;
	--smp) smp=$2; shift 2 ;;
	--timeout) timeout=$2; shift 2 ;;
	--cpu) cpu=$2; shift 2 ;;
	--kvm-amd) amdopts=$2; shift 2 ;;
	--9p) ninep=$2; shift 2 ;;
	--verbose) verbose=1; shift ;;
	--host-tmp) hosttmp=1; shift ;;
	--) shift; break ;;
	-h|--help) usage ;;
	*) usage ;;
	esac
done
[ $# -gt 0 ] || usage
[[ $timeout =~ ^[0-9]+$ ]] || die "--timeout wants seconds"
[ "$(id -u)" = 0 ] || die "must run as root (9p passthrough of /)"
command -v qemu-system-x86_64 > /dev/null || die "qemu-system-x86_64 is missing (apt-get install qemu-system-x86)"

# ---------------------------------------------------------------- preparation
# Everything here is cached in $cache and redone only when missing or when the
# init script or this script changed.

# tun, veth and bridge: the test networks of the device tests (namespaces, taps).
modules_wanted="virtio_pci 9pnet_virtio 9p kvm_amd tun veth bridge"
prep_version=1 # bump when prepare() changes what it builds

fetch_kernel_deb() {
	local deb
	# shellcheck disable=SC2012 # Debian package file names are plain
	deb=$(ls "$cache"/debs/linux-image-*-amd64_*_amd64.deb 2> /dev/null | sort -V | tail -n 1 || true)
	if [ -n "$deb" ]; then echo "$deb"; return; fi
	mkdir -p "$cache/debs"
	local pkg
	pkg=$(apt-cache depends linux-image-amd64 2> /dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n 1)
	if [ -z "$pkg" ]; then
		echo "nested-kvm: apt lists look empty; running apt-get update" >&2
		apt-get update -qq >&2 || true
		pkg=$(apt-cache depends linux-image-amd64 2> /dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n 1)
	fi
	[ -n "$pkg" ] || die "cannot find the kernel package behind linux-image-amd64"
	echo "nested-kvm: downloading $pkg (Debian archive)" >&2
	(cd "$cache/debs" && apt-get download -q "$pkg" >&2) || die "apt-get download $pkg failed"
	deb=$(find "$cache/debs" -name "${pkg}_*_amd64.deb" | head -n 1)
	[ -f "$deb" ] || die "apt-get download left no .deb"
	echo "$deb"
}

# Print the modules in $1.. and their dependencies, dependencies first.
# $modroot is a lib/modules/VERSION directory.
declare -A seen=()
resolve() {
	local m f dep
	for m in "$@"; do
		m=${m//-/_}
		[ -n "${seen[$m]:-}" ] && continue
		seen[$m]=1
		f=$(find "$modroot" -name "$m.ko" -o -name "${m//_/-}.ko" | head -n 1)
		[ -n "$f" ] || die "module $m is not in the kernel package"
		for dep in $(modinfo -F depends "$f" | tr , ' '); do resolve "$dep"; done
		echo "$m $f"
	done
}

prepare() {
	local stamp want deb tmp ver
	want=$({ cat "$here/init.sh"; echo "$modules_wanted $prep_version"; } | sha256sum | cut -c1-16)
	stamp=$cache/prepared
	if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$cache/vmlinuz" ] && [ -f "$cache/initramfs.gz" ]; then
		return
	fi
	mkdir -p "$cache"
	deb=$(fetch_kernel_deb)
	echo "nested-kvm: preparing kernel and initramfs from $(basename "$deb")" >&2
	tmp=$(mktemp -d "$cache/prep.XXXXXX")
	# shellcheck disable=SC2064
	trap "rm -rf '$tmp'" EXIT
	dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --wildcards './boot/vmlinuz-*' './lib/modules/*/kernel/*'
	ver=$(basename "$(find "$tmp/lib/modules" -mindepth 1 -maxdepth 1 | head -n 1)")
	modroot=$tmp/lib/modules/$ver
	local ird=$tmp/initramfs
	mkdir -p "$ird"/{bin,dev,proc,sys,tmp,host,modules}
	[ -x /bin/busybox ] || die "/bin/busybox is missing (apt-get install busybox-static, or make deps)"
	cp /bin/busybox "$ird/bin/busybox"
	case $(LC_ALL=C ldd "$ird/bin/busybox" 2>&1 || true) in
	*"not a dynamic"*) ;;
	*) die "/bin/busybox is not static (apt-get install busybox-static)" ;;
	esac
	cp "$here/init.sh" "$ird/init"
	chmod 755 "$ird/init"
	local name path
	# shellcheck disable=SC2086
	resolve $modules_wanted > "$tmp/modules.list" || exit 125
	while read -r name path; do
		cp "$path" "$ird/modules/$name.ko"
		echo "$name" >> "$ird/modules/order"
	done < "$tmp/modules.list"
	(cd "$ird" && find . | busybox cpio -o -H newc 2> /dev/null | gzip -1) > "$cache/initramfs.gz.new"
	cp "$tmp"/boot/vmlinuz-* "$cache/vmlinuz.new"
	mv "$cache/initramfs.gz.new" "$cache/initramfs.gz"
	mv "$cache/vmlinuz.new" "$cache/vmlinuz"
	echo "$ver" > "$cache/kernel-version"
	rm -rf "$tmp"
	trap - EXIT
	echo "$want" > "$stamp"
}

prepare

# ---------------------------------------------------------------- the job
# The job script lives in $cache, which the guest sees at the same path.
case $cache in *[[:space:]]*) die "the cache path '$cache' has white space: set NESTED_KVM_CACHE" ;; esac
mkdir -p "$cache/jobs"
job=$(mktemp -d "$cache/jobs/XXXXXX")
qpid='' tailpid=''
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	if [ -n "$qpid" ]; then kill "$qpid" 2> /dev/null || true; fi
	if [ -n "$tailpid" ]; then kill "$tailpid" 2> /dev/null || true; fi
	rm -rf "$job"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sq() { printf "'%s'" "$(printf %s "$1" | sed "s/'/'\\\\''/g")"; }

{
	echo "# generated by scripts/nested-kvm/run.sh"
	for v in PATH HOME LANG LC_ALL TMPDIR CI ${NESTED_KVM_ENV:-} $(compgen -e | grep '^GODWIT' || true); do
		[ -n "${!v+x}" ] && echo "export $v=$(sq "${!v}")"
	done
	echo "cd $(sq "$PWD") || exit 125"
	if [ $# -eq 1 ]; then
		echo "sh -c $(sq "$1")"
	else
		line=
		for a in "$@"; do line+="$(sq "$a") "; done
		echo "$line"
	fi
} > "$job/job.sh"

append="console=ttyS0 panic=-1 rdinit=/init nkjob=$job/job.sh nk9p=$ninep"
[ -n "$amdopts" ] && append+=" nkamd=$amdopts"
[ -n "$hosttmp" ] && append+=" nkhosttmp"
# The caller's directory, when it can travel on the kernel command line (no blanks).
case "$PWD" in *[[:space:]]*) ;; *) append+=" nkcwd=$PWD" ;; esac
if [ -z "$verbose" ]; then append+=" quiet loglevel=0"; fi
append+=" ${NESTED_KVM_APPEND:-}"

log=$job/console.log
: > "$log"
start=$(date +%s)
# shellcheck disable=SC2086 # NESTED_KVM_QEMU_ARGS is a list of words
qemu-system-x86_64 \
	-accel tcg -cpu "$cpu" -m "$mem" -smp "$smp" \
	-kernel "$cache/vmlinuz" -initrd "$cache/initramfs.gz" -append "$append" \
	-virtfs local,path=/,mount_tag=hostroot,security_model=passthrough,multidevs=remap \
	-display none -monitor none -serial "file:$log" -no-reboot -nodefaults \
	${NESTED_KVM_QEMU_ARGS:-} \
	< /dev/null >> "$job/qemu.err" 2>&1 &
qpid=$!
qpid_saved=$qpid

# Stream the console (serial lines end in \r\n) until QEMU is gone.
tail -n +1 -f --pid="$qpid" "$log" \
	| sed -u -e 's/\r//g' -e '/^NESTED-KVM-EXIT=[0-9]*$/d' -e 's/NESTED-KVM-EXIT=[0-9]*$//' &
tailpid=$!

timed_out=
while kill -0 "$qpid" 2> /dev/null; do
	if [ $(($(date +%s) - start)) -ge "$timeout" ]; then
		timed_out=1
		kill "$qpid" 2> /dev/null || true
		sleep 2
		kill -9 "$qpid" 2> /dev/null || true
		break
	fi
	sleep 1
done
wait "$qpid" 2> /dev/null && qrc=0 || qrc=$?
qpid=
wait "$tailpid" 2> /dev/null || true
tailpid=

cp "$log" "$cache/last-console.log" 2> /dev/null || true
cp "$job/qemu.err" "$cache/last-qemu.err" 2> /dev/null || true
elapsed=$(($(date +%s) - start))
if [ -n "$timed_out" ]; then
	echo "nested-kvm: TIMEOUT after ${timeout}s; QEMU (pid $qpid_saved) killed. Console log: $cache/last-console.log" >&2
	exit 124
fi
rc=$(sed -n 's/^.*NESTED-KVM-EXIT=\([0-9]*\)\r*$/\1/p' "$log" | tail -n 1)
if [ -z "$rc" ]; then
	echo "nested-kvm: the VM stopped without reporting an exit code (QEMU status $qrc, ${elapsed}s)" >&2
	sed 's/^/nested-kvm: qemu: /' "$job/qemu.err" >&2 || true
	echo "nested-kvm: console log: $cache/last-console.log (rerun with --verbose for kernel messages)" >&2
	exit 125
fi
[ -n "${NESTED_KVM_QUIET:-}" ] || echo "nested-kvm: exit $rc after ${elapsed}s" >&2
exit "$rc"
