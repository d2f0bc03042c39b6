#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# mkinitramfs.sh STAGE KERNEL_TREE BUSYBOX_TREE BINDIR INIT OUT
# Fills STAGE (emptied first) with busybox and its applet links, the virtio modules of
# the kernel in KERNEL_TREE (with what they depend on, decompressed, and their load
# order in /lib/modules/order), our programs from BINDIR and INIT as /init; then writes
# OUT, an uncompressed newc cpio of it, the same bytes for the same inputs. Not
# compressed: where ring 0 is emulated (kvm_pvm) the kernel's gunzip of it would take
# minutes, and the 4.4 MB cost nothing to load.
set -eu

stage=$1 ktree=$2 bbtree=$3 bindir=$4 init=$5 out=$6
here=$(dirname "$0")
MODULES="virtio virtio_ring virtio_mmio virtio_blk virtio_net failover net_failover"

rm -rf "$stage"
mkdir -p "$stage"
for d in bin sbin usr/bin usr/sbin dev proc sys tmp run root etc lib/modules; do
	mkdir -p "$stage/$d"
done

# busybox and a link per applet (the list comes from the binary itself).
cp "$bbtree/bin/busybox" "$stage/bin/busybox"
"$bbtree/bin/busybox" --list-full | sort | while read -r applet; do
	[ "$applet" = bin/busybox ] && continue
	[ -e "$stage/$applet" ] && continue
	# Relative links, so that they resolve inside the guest's root.
	case $applet in
	*/*/*) ln -s ../../bin/busybox "$stage/$applet" ;;
	*/*) ln -s ../bin/busybox "$stage/$applet" ;;
	esac
done

for p in "$bindir"/*; do
	cp "$p" "$stage/bin/$(basename "$p")"
done
cp "$init" "$stage/init"
chmod 0755 "$stage/init"
echo "root:x:0:0:root:/root:/bin/sh" > "$stage/etc/passwd"
echo "root:x:0:" > "$stage/etc/group"

# Modules: the listed ones and their dependencies (modinfo -F depends), each placed
# after everything it depends on. .ko.xz/.ko.zst/.ko.gz are decompressed: busybox
# insmod takes a plain .ko.
find_ko() {
	f=$(find "$ktree/lib/modules" \( -name "$1.ko" -o -name "$1.ko.*" \) | sort | head -n 1)
	[ -n "$f" ] || { echo "mkinitramfs.sh: module $1 not in $ktree" >&2; return 1; }
	echo "$f"
}
plain_ko() {
	case $1 in
	*.ko) cat "$1" ;;
	*.ko.xz) xz -dc "$1" ;;
	*.ko.zst) zstd -dcq "$1" ;;
	*.ko.gz) gzip -dc "$1" ;;
	*) echo "mkinitramfs.sh: $1: unknown module compression" >&2; return 1 ;;
	esac
}
order=$stage/lib/modules/order
: > "$order"
# $1: module; $2: the chain that led here (to refuse a dependency cycle).
add_mod() {
	grep -qx "$1" "$order" && return 0
	case " $2 " in *" $1 "*) echo "mkinitramfs.sh: dependency cycle: $2 $1" >&2; return 1 ;; esac
	ko=$(find_ko "$1")
	plain_ko "$ko" > "$stage/lib/modules/$1.ko"
	# An assignment of its own, so that a failing modinfo stops the script (set -e).
	deps=$(/sbin/modinfo -F depends "$stage/lib/modules/$1.ko")
	for dep in $(echo "$deps" | tr ',' ' '); do
		add_mod "$dep" "$2 $1"
	done
	echo "$1" >> "$order"
}
for m in $MODULES; do
	add_mod "$m" ""
done

# Everything the same whatever the checkout's umask and times were.
find "$stage" -type d -exec chmod 0755 {} +
chmod 0700 "$stage/root"
chmod 1777 "$stage/tmp"
find "$stage" -type f -exec chmod go-w {} +

python3 "$here/mkcpio.py" "$stage" --nod /dev/console:0600:c:5:1 --nod /dev/null:0666:c:1:3 \
	> "$out.tmp"
mv "$out.tmp" "$out"
echo "  INITRD  $out ($(wc -c < "$out") bytes; modules: $(tr '\n' ' ' < "$order"))"
