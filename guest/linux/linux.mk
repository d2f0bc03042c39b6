# godwit Linux guest (included by the top Makefile). `make guest-linux` builds
# build/guest/vmlinux (the uncompressed kernel of Debian's linux-image-cloud-amd64) and
# build/guest/initramfs.cpio (busybox-static, the kernel's virtio modules, our init
# and static programs), from Debian's packages only, downloaded once into
# build/guest/linux/debs/ (`make guest-linux-refresh` downloads what apt has now).
# Built the same way whatever SAN says.

LINUX_DIR := guest/linux
LINUX_OUT := build/guest/linux
LINUX_DEBS := $(LINUX_OUT)/debs
LINUX_VMLINUX := build/guest/vmlinux
LINUX_INITRD := build/guest/initramfs.cpio
LINUX_CC ?= gcc
LINUX_PROGS := godwit-exit godwit-args hb
LINUX_BINS := $(LINUX_PROGS:%=$(LINUX_OUT)/bin/%)
LINUX_CFLAGS := -std=gnu11 -Os -static -s -D_GNU_SOURCE -Wall -Wextra -Werror -Wformat=2 \
	-Winit-self -Wmissing-prototypes -Wstrict-prototypes -Wold-style-definition -Wundef \
	-Wwrite-strings -Wvla -Wl,--gc-sections -ffunction-sections -fdata-sections

.PHONY: guest-linux guest-linux-refresh

guest-linux: $(LINUX_VMLINUX) $(LINUX_INITRD)

guest-linux-refresh:
	$(Q)rm -f $(LINUX_DEBS)/stamp
	$(Q)$(MAKE) --no-print-directory guest-linux

# Downloads only when the stamp is missing (or fetch.sh changed); fetch.sh itself
# skips packages already downloaded at apt's current version.
$(LINUX_DEBS)/stamp: $(LINUX_DIR)/fetch.sh
	$(Q)$(LINUX_DIR)/fetch.sh $(LINUX_DEBS)
	$(Q)touch $@

$(LINUX_OUT)/unpacked.stamp: $(LINUX_DEBS)/stamp
	$(Q)rm -rf $(LINUX_OUT)/kernel $(LINUX_OUT)/busybox
	$(Q)dpkg-deb -x $(LINUX_DEBS)/kernel.deb $(LINUX_OUT)/kernel
	$(Q)dpkg-deb -x $(LINUX_DEBS)/busybox.deb $(LINUX_OUT)/busybox
	$(Q)touch $@

$(LINUX_VMLINUX): $(LINUX_OUT)/unpacked.stamp $(LINUX_DIR)/extract-vmlinux.sh
	$(Q)$(LINUX_DIR)/extract-vmlinux.sh $$(ls $(LINUX_OUT)/kernel/boot/vmlinuz-* | head -n 1) $@

$(LINUX_OUT)/bin/%: $(LINUX_DIR)/%.c $(LINUX_DIR)/linux.mk
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(LINUX_CC) $(LINUX_CFLAGS) -o $@ $<

$(LINUX_INITRD): $(LINUX_OUT)/unpacked.stamp $(LINUX_BINS) $(LINUX_DIR)/init \
		$(LINUX_DIR)/mkinitramfs.sh $(LINUX_DIR)/mkcpio.py
	$(Q)$(LINUX_DIR)/mkinitramfs.sh $(LINUX_OUT)/root $(LINUX_OUT)/kernel \
		$(LINUX_OUT)/busybox $(LINUX_OUT)/bin $(LINUX_DIR)/init $@
