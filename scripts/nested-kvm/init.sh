#!/bin/busybox sh
# PID 1 of the nested-kvm initramfs (see docs/nested-kvm.md). It is copied into
# the initramfs by scripts/nested-kvm/run.sh, together with a static busybox and
# the kernel modules listed in /modules/order.
#
# Kernel command line words it reads:
#   nkjob=PATH        a shell script on the host filesystem to run chrooted
#   nkamd=OPT[,OPT]   parameters for kvm-amd, e.g. nkamd=npt=0
#   nk9p=OPTS         extra 9p mount options, e.g. nk9p=cache=loose
#   nkhosttmp         keep the host's /tmp (over 9p) instead of a fresh tmpfs
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

say() { echo "nested-kvm: $*" > /dev/console; }

JOB='' CWD='' AMD='' NINEP=cache=mmap HOSTTMP=''
# shellcheck disable=SC2013 # words, not lines
for w in $(cat /proc/cmdline); do
	case $w in
	nkjob=*) JOB=${w#nkjob=} ;;
	nkcwd=*) CWD=${w#nkcwd=} ;;
	nkamd=*) AMD=$(echo "${w#nkamd=}" | tr , ' ') ;;
	nk9p=*) NINEP=${w#nk9p=} ;;
	nkhosttmp) HOSTTMP=1 ;;
	esac
done

finish() {
	rc=$1
	sync
	echo "NESTED-KVM-EXIT=$rc" > /dev/console
	umount -a -r > /dev/null 2>&1
	poweroff -f
	sleep 60
}

while read -r m; do
	params=
	[ "$m" = kvm_amd ] && params=$AMD
	# shellcheck disable=SC2086
	if ! insmod "/modules/$m.ko" $params; then
		say "insmod $m failed"
		[ "$m" = kvm_amd ] && dmesg | grep -iE 'kvm|svm' > /dev/console
		finish 125
	fi
done < /modules/order
[ -c /dev/kvm ] || { say "no /dev/kvm after loading kvm-amd"; dmesg | grep -iE 'kvm|svm' > /dev/console; finish 125; }

ip link set lo up

mkdir -p /host
if ! mount -t 9p -o "trans=virtio,version=9p2000.L,msize=512000,access=any,$NINEP" hostroot /host; then
	say "mounting the host filesystem (9p) failed"
	finish 125
fi
mount --rbind /proc /host/proc
mount --rbind /sys /host/sys
mount --rbind /dev /host/dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /host/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /host/dev/shm
# /run of the host is not ours to write into: give the chroot its own.
mount -t tmpfs -o mode=755 tmpfs /host/run
# A guest-local /tmp by default: 9p cannot truncate or chmod a file that is open
# but unlinked (Python's TemporaryFile, hence pytest's capture, does that). A
# checkout that itself lives under the host's /tmp (the job file is inside it) is
# bound back over the tmpfs, so the command still finds its tree.
if [ -z "$HOSTTMP" ]; then
	KEEP=
	for p in "$JOB" "$CWD"; do
		case "$p" in /tmp/*/*) rest=${p#/tmp/}; KEEP=/tmp/${rest%%/*} ;; esac
	done
	if [ -n "$KEEP" ]; then
		mkdir -p /keep
		mount --bind "/host$KEEP" /keep
	fi
	mount -t tmpfs -o mode=1777 tmpfs /host/tmp
	if [ -n "$KEEP" ]; then
		mkdir -p "/host$KEEP"
		mount --bind /keep "/host$KEEP"
	fi
fi

if [ -z "$JOB" ]; then
	say "no nkjob= on the kernel command line"
	finish 125
fi
chroot /host /bin/sh "$JOB" < /dev/null > /dev/console 2>&1
finish $?
