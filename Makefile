# godwit: GNU make only. `make` builds build/godwit and the test guest.
# SAN=1 builds everything with AddressSanitizer and UBSan into build/san/.
# V=1 shows the commands.

SAN ?= 0
V ?= 0
CC ?= gcc
CLANG ?= clang
PYTHON ?= /usr/bin/python3

ifeq ($(SAN),1)
BUILD := build/san
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
else
BUILD := build
SANFLAGS :=
endif

ifeq ($(V),1)
Q :=
else
Q := @
endif

WARNINGS := -Wall -Wextra -Werror -Wformat=2 -Winit-self -Wmissing-prototypes \
	-Wstrict-prototypes -Wold-style-definition -Wundef -Wwrite-strings -Wvla
CFLAGS := -std=gnu11 -O2 -g -D_GNU_SOURCE $(WARNINGS) -Iinclude -MMD -MP $(SANFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := $(SANFLAGS)
LDLIBS := -lm -lpthread -lmicrohttpd -ljansson -lxxhash -llz4 -lzstd -lcurl -levent_openssl -levent -lssl -lcrypto

LIB_SRC := $(sort $(filter-out src/main.c,$(shell find src -name '*.c')))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%)
KVMTEST_SRC := $(sort $(wildcard tests/kvm/test_*.c))
KVMTEST_BIN := $(KVMTEST_SRC:tests/kvm/%.c=$(BUILD)/tests/kvm/%)
# C programs the cluster's pytest files run against a real etcd they start.
CLUSTERTEST_SRC := $(sort $(wildcard tests/cluster/*.c))
CLUSTERTEST_BIN := $(CLUSTERTEST_SRC:tests/cluster/%.c=$(BUILD)/tests/cluster/%)

.PHONY: all deps demo test test-linux unit test-kvm integration fuzz fuzz-run san clean format guest guest-linux

all: $(BUILD)/godwit guest build/bench/stamper $(CLUSTERTEST_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<

# The web console's files go into the binary as they are (.incbin in manager_console.c).
CONSOLE_FILES := $(wildcard src/cluster/console/*)
$(BUILD)/src/cluster/manager_console.o build/fuzz/obj/src/cluster/manager_console.o: $(CONSOLE_FILES)

$(BUILD)/libgodwit.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/godwit: $(BUILD)/src/main.o $(BUILD)/libgodwit.a
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The benchmark's console stamper (bench/procmon.py starts it), never sanitized.
build/bench/stamper: bench/stamper.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $@")
	$(Q)$(CC) -std=gnu11 -O2 -D_GNU_SOURCE $(WARNINGS) -o $@ $<

$(BUILD)/tests/unit/%: tests/unit/%.c $(BUILD)/libgodwit.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  TEST    $@")
	$(Q)$(CC) $(CFLAGS) -Itests -o $@ $< $(BUILD)/libgodwit.a $(LDFLAGS) $(UNIT_LDFLAGS) $(LDLIBS) -lcmocka

# Makes one disk's lock fail to release on cue (tests/unit/test_devices.c).
$(BUILD)/tests/unit/test_devices: UNIT_LDFLAGS := -Wl,--wrap=fcntl
# Counts the disk writer's and flushing helper's calls, fails them on cue (test_disk_receive.c).
$(BUILD)/tests/unit/test_disk_receive: UNIT_LDFLAGS := -Wl,--wrap=fdatasync,--wrap=pwritev

$(BUILD)/tests/cluster/%: tests/cluster/%.c $(BUILD)/libgodwit.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CLTEST  $@")
	$(Q)$(CC) $(CFLAGS) -Itests -o $@ $< $(BUILD)/libgodwit.a $(LDFLAGS) $(LDLIBS)

$(BUILD)/tests/kvm/%: tests/kvm/%.c $(BUILD)/libgodwit.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  KVMTEST $@")
	$(Q)$(CC) $(CFLAGS) -Itests -o $@ $< $(BUILD)/libgodwit.a $(LDFLAGS) $(LDLIBS)

# The test guest is freestanding and always built the same way (never sanitized).
include guest/testguest/guest.mk
# The Linux guest (Debian's stock cloud kernel + our initramfs): make guest-linux.
include guest/linux/linux.mk

# libFuzzer targets: clang, with the library compiled again for coverage.
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=build/fuzz/%)
FUZZ_CFLAGS := -std=gnu11 -O1 -g -D_GNU_SOURCE -Iinclude -Wall -Wextra -Werror \
	-MMD -MP -fsanitize=fuzzer-no-link,address,undefined
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=build/fuzz/obj/%.o)

build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -c -o $@ $<

build/fuzz/libgodwit.a: $(FUZZ_LIB_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^

build/fuzz/%: fuzz/%.c build/fuzz/libgodwit.a
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  FUZZ    $@")
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LDLIBS)

fuzz: $(FUZZ_BIN)

# Runs every fuzz target for a bounded time on its seed corpus (FUZZ_SECONDS each).
FUZZ_SECONDS ?= 30
fuzz-run: fuzz
	$(Q)scripts/fuzz-run.sh $(FUZZ_SECONDS) $(FUZZ_BIN)

deps:
	$(Q)scripts/deps.sh

unit: $(UNIT_BIN)
	$(Q)scripts/run-unit.sh $(UNIT_BIN)

test-kvm: $(KVMTEST_BIN)
	$(Q)scripts/run-unit.sh $(KVMTEST_BIN)

san:
	$(Q)$(MAKE) --no-print-directory SAN=1 build/san/godwit $(patsubst build/%,build/san/%,$(UNIT_BIN) $(KVMTEST_BIN) $(CLUSTERTEST_BIN))

# Everything a fresh Debian 12 machine needs, then every test tier. scripts/test.sh
# fails if any tier fails or if no test ran at all.
test: deps
	$(Q)$(MAKE) --no-print-directory all guest-linux
	$(Q)$(MAKE) --no-print-directory san
	$(Q)$(MAKE) --no-print-directory $(UNIT_BIN) $(KVMTEST_BIN) fuzz
	$(Q)PYTHON=$(PYTHON) FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/test.sh

# The Linux tier (Debian's stock kernel; slow on software KVM): see docs/linux-guests.md.
test-linux: deps
	$(Q)$(MAKE) --no-print-directory all guest-linux
	$(Q)scripts/test-linux.sh

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)scripts/demo.sh

# A cluster on this machine: etcd, three agents, a manager, four VMs, one host put
# into maintenance while you watch (docs/cluster.md).
.PHONY: demo-cluster
demo-cluster: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)scripts/demo-cluster.sh

# Live migration side by side with QEMU 7.2 on KVM (docs/bench.md); writes
# bench/results/RESULTS.md and plots. BENCH_RUNS (3), BENCH_CASES, BENCH_QUICK=1, ...
.PHONY: bench
bench: deps
	$(Q)bench/deps.sh
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(PYTHON) bench/bench.py

# Disk and network throughput of the test guest, godwit and QEMU side by side, with the
# VMM's CPU cost (docs/devices.md, "Throughput"); writes bench/results/DEVICES.md.
# DEVICES_DISK_MIB (1024), DEVICES_NET_SECONDS (5), DEVICES_RUNS (3), DEVICES_VMMS.
.PHONY: bench-devices
bench-devices: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(PYTHON) bench/devices.py

# Moving a disk: godwit's mirror against cp --sparse=always and QEMU's blockdev-mirror
# (docs/devices.md, "Moving a disk"); writes bench/results/DISK_MOVE.md.
# DISK_MOVE_MIB (1024), DISK_MOVE_RUNS (3), DISK_MOVE_VMMS.
.PHONY: bench-disk-move
bench-disk-move: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(PYTHON) bench/disk_move.py

# Emptying a host through the cluster one, two and eight moves per host at a time, side
# by side, over namespace hosts on a bridge shaped to 1 Gbit/s, against the link's lower
# bound, with the guests' pauses (docs/bench.md, "Emptying a host"; bench/cluster.py
# --help). CLUSTER_VMS (8), CLUSTER_MIB (256), CLUSTER_MBPS (20), CLUSTER_MBIT (1000),
# CLUSTER_LINK (netns or loopback), CLUSTER_LIMITS (1,2,8), LINK_MIB (512), CLUSTER_SINGLES
# (--vms: single moves the pauses are held against).
.PHONY: bench-cluster
bench-cluster: deps
	$(Q)$(MAKE) --no-print-directory all
	$(Q)$(PYTHON) bench/cluster.py

# Balancing on simulated clusters of 64 and 1,000 hosts: the cost-aware scheduler and an
# hbal-style baseline side by side, with a lower bound (docs/drs.md, "Measured"); writes
# bench/results/DRS.md. DRS_SIZES (64x2000,1000x30000), DRS_SEEDS (1), DRS_SKEW (0.5).
.PHONY: bench-drs
bench-drs:
	$(Q)$(MAKE) --no-print-directory $(BUILD)/godwit
	$(Q)GODWIT=$(BUILD)/godwit $(PYTHON) bench/drs.py

format:
	$(Q)clang-format -i $$(find src include tests guest fuzz -name '*.[ch]')

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(BUILD)/src/main.d $(FUZZ_LIB_OBJ:.o=.d)
