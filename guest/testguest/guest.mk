# godwit test guest (included by the top Makefile). `make guest` builds
# build/guest/testguest.elf: a freestanding x86-64 PVH ELF. It is always built the same
# way, whatever SAN says: no sanitizers, no SSE/x87 (kvm_pvm's emulator runs ring 0).

GUEST_DIR := guest/testguest
GUEST_OUT := build/guest
GUEST_ELF := $(GUEST_OUT)/testguest.elf
GUEST_CC ?= gcc
GUEST_SRC := $(sort $(wildcard $(GUEST_DIR)/*.c) $(wildcard $(GUEST_DIR)/*.S))
GUEST_OBJ := $(patsubst $(GUEST_DIR)/%,$(GUEST_OUT)/%.o,$(GUEST_SRC))
GUEST_LDS := $(GUEST_DIR)/testguest.ld

GUEST_CFLAGS := -std=gnu11 -O2 -g -ffreestanding -fno-builtin -nostdlib -static \
	-fno-pic -fno-pie -mcmodel=small -march=x86-64 -mtune=generic \
	-mgeneral-regs-only -mno-mmx -mno-sse -mno-sse2 -mno-avx -mno-popcnt -mno-red-zone \
	-fno-stack-protector -fcf-protection=none -fno-asynchronous-unwind-tables \
	-fno-unwind-tables -fno-tree-loop-distribute-patterns -fno-omit-frame-pointer \
	-Wall -Wextra -Werror -Wformat=2 -Wmissing-prototypes -Wstrict-prototypes \
	-Wold-style-definition -Wundef -Wwrite-strings -Wvla \
	-I$(GUEST_DIR) -MMD -MP
GUEST_LDFLAGS := -nostdlib -static -no-pie -Wl,-T,$(GUEST_LDS) -Wl,--build-id=none \
	-Wl,-z,max-page-size=4096 -Wl,-z,noexecstack -Wl,--no-warn-rwx-segments

guest: $(GUEST_ELF)

$(GUEST_ELF): $(GUEST_OBJ) $(GUEST_LDS) $(GUEST_DIR)/guest.mk
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(GUEST_CC) $(GUEST_CFLAGS) $(GUEST_LDFLAGS) -o $@ $(GUEST_OBJ)

$(GUEST_OUT)/%.c.o: $(GUEST_DIR)/%.c $(GUEST_DIR)/guest.mk
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(GUEST_CC) $(GUEST_CFLAGS) -c -o $@ $<

$(GUEST_OUT)/%.S.o: $(GUEST_DIR)/%.S $(GUEST_DIR)/guest.mk
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  AS      $<")
	$(Q)$(GUEST_CC) $(GUEST_CFLAGS) -c -o $@ $<

-include $(GUEST_OBJ:.o=.d)
