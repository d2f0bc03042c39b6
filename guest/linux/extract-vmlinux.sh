#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# extract-vmlinux.sh BZIMAGE OUT: writes the uncompressed kernel ELF inside a bzImage.
#
# The x86 boot protocol (2.08+) says where the compressed kernel is: payload_offset
# (setup header, 0x248) counts from the start of the protected-mode code, which
# follows the (setup_sects + 1) * 512 bytes of real-mode setup (setup_sects at 0x1f1);
# payload_length is at 0x24c. The format is known from its magic. The kernel's build
# appends the uncompressed size (le32) after every format but gzip (whose own trailer
# carries it), so that tail is cut before decompressing and checked afterwards.
set -eu

in=$1
out=$2

u8() { od -An -tu1 -j "$1" -N1 "$in" | tr -d ' '; }
u16() { od -An -tu2 -j "$1" -N2 "$in" | tr -d ' '; }
u32() { od -An -tu4 -j "$1" -N4 "$in" | tr -d ' '; }
hex() { od -An -tx1 -j "$1" -N "$2" "$in" | tr -d ' \n'; }
die() { echo "extract-vmlinux.sh: $*" >&2; rm -f "$out.tmp"; exit 1; }

[ "$(hex 514 4)" = 48647253 ] || die "$in: no bzImage setup header (HdrS)"
[ "$(u16 518)" -ge 520 ] || die "$in: boot protocol older than 2.08 (no payload fields)"
setup_sects=$(u8 497)
[ "$setup_sects" -ne 0 ] || setup_sects=4
start=$(( (setup_sects + 1) * 512 + $(u32 584) ))
len=$(u32 588)
size=$(wc -c < "$in")
if [ "$len" -le 4 ] || [ $((start + len)) -gt "$size" ]; then
	die "$in: payload outside the file"
fi

payload() { tail -c +$((start + 1)) "$in" | head -c "$1"; }
magic=$(hex "$start" 6)
case $magic in
1f8b*) fmt=gzip; tool="gzip -dc" ;;
fd377a585a00) fmt=xz; tool="xz -dc" ;;
28b52ffd*) fmt=zstd; tool="zstd -dcq" ;;
02214c18*) fmt=lz4; tool="lz4 -dc" ;;
*) die "$in: unknown compression (magic $magic)" ;;
esac

if [ "$fmt" = gzip ]; then
	payload "$len" | $tool > "$out.tmp" || die "$tool failed"
else
	want=$(u32 $((start + len - 4)))
	payload $((len - 4)) | $tool > "$out.tmp" || die "$tool failed"
	got=$(wc -c < "$out.tmp")
	[ "$got" -eq "$want" ] || die "$fmt: got $got bytes, the image says $want"
fi
# An x86-64 ELF executable: \x7fELF, class 2 (64-bit), type 2 (EXEC), machine 0x3e.
[ "$(od -An -tx1 -N5 "$out.tmp" | tr -d ' \n')" = 7f454c4602 ] || die "not a 64-bit ELF"
[ "$(od -An -tu2 -j 18 -N2 "$out.tmp" | tr -d ' ')" = 62 ] || die "not an x86-64 ELF"
mv "$out.tmp" "$out"
echo "  VMLINUX $out ($fmt, $(wc -c < "$out") bytes)"
