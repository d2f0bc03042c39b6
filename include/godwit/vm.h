/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_VM_H
#define GODWIT_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "godwit/boot.h"
#include "godwit/acpi.h"
#include "godwit/bus.h"
#include "godwit/console.h"
#include "godwit/kvm.h"
#include "godwit/memory.h"
#include "godwit/serial8250.h"
#include "godwit/tap.h"
#include "godwit/virtio_blk.h"
#include "godwit/virtio_net.h"
#include "godwit/util.h"

#define VM_MIN_MEMORY (64ULL * MiB)
#define VM_MAX_MEMORY (1024ULL * GiB)
#define VM_MAX_VCPUS 32

#define VM_MAX_DISKS 8
#define VM_MAX_NETS 8

struct vm_disk_cfg {
	char *spec; /* owned copy of the option, cut up in place */
	const char *path;
	bool readonly;
};

struct vm_net_cfg {
	char *spec;
	const char *tap;
	bool have_mac;
	uint8_t mac[6];
};

struct vm;
struct vm_control;
struct api_server;
struct migration;

/*
 * The host's side of a VM opened before the VM itself is built: `godwit receive` learns
 * the VM from the stream, but opens its --disk images, --net taps, --console file and
 * --api socket before it listens, so that a bad one fails at once, not once a source
 * has connected. vm__create takes each one it uses (its fd here becomes -1, api NULL);
 * vm__preopened_close() closes what is left.
 */
struct vm_preopened {
	int disk_fd[VM_MAX_DISKS];    /* disk__open_image */
	struct tap tap[VM_MAX_NETS];   /* tap__open, TAP_ATTACH */
	int console_fd;		       /* for CONSOLE_FILE */
	const struct vm_control *control; /* opened api, and closes it if unused */
	struct api_server *api;	       /* bound and listening, not serving yet */
};

/* Everything `godwit run` was asked for; validated by config__parse_run(). */
struct vm_config {
	const char *kernel;
	const char *initrd;
	char *cmdline; /* owned */
	uint64_t mem_size;
	unsigned int nr_cpus;
	const char *api_path;
	enum console_kind console;
	const char *console_path;
	bool incoming; /* godwit receive: RAM and state come from a stream */
	/* virtio-mmio devices: the disks first, then the NICs, in command-line order. */
	unsigned int nr_disks;
	struct vm_disk_cfg disks[VM_MAX_DISKS];
	unsigned int nr_nets;
	struct vm_net_cfg nets[VM_MAX_NETS];
	struct vm_preopened *pre; /* NULL: vm__create opens the backends itself */
};

enum vm_state { VM_CREATED, VM_RUNNING, VM_PAUSED, VM_STOPPING };

/* A virtio-mmio device in its slot: base VIRTIO_MMIO_BASE + slot * size, GSI base + slot. */
enum vdev_type { VDEV_BLK, VDEV_NET };

struct vdev {
	enum vdev_type type;
	unsigned int slot;
	unsigned int instance; /* index among devices of its type */
	int irq_fd;	       /* eventfd bound to the GSI with KVM_IRQFD */
	struct virtio_mmio *mmio;
	struct virtio_blk *blk;
	struct virtio_net *net;
	struct tap tap;
	bool tap_open;
};

/*
 * What drives the VM from outside (src/control/: the API's routes, and the outgoing
 * migration they start); the VM only says when. start runs in vm__create once all
 * that needs no KVM has been checked (so a bad API socket is reported alike on every
 * host), stop runs first in vm__destroy, and in vm__create when it fails after start.
 * preopen runs in vm__preopen, after the backends (it opens the API socket), and
 * preclose in vm__preopened_close, for what start did not take over.
 */
struct vm_control {
	int (*preopen)(struct vm_preopened *pre, const struct vm_config *cfg);
	void (*preclose)(struct vm_preopened *pre);
	int (*start)(struct vm *vm);
	void (*stop)(struct vm *vm);
};

struct vcpu {
	struct vm *vm;
	unsigned int id;
	struct kvm_vcpu_fd kfd;
	pthread_t thread;
	bool thread_started;
	pid_t tid; /* the thread's, once it runs (atomic): its nice value is its own */
	uint64_t exits;
	uint64_t completed_insns; /* kvm_pvm: instructions godwit completed for KVM */
	bool throttle_due; /* set by the throttle timer: sleep before the next KVM_RUN */
	uint32_t throttle_pct; /* auto-converge: share of its time this vCPU sleeps */
	uint64_t run_until_ns; /* throttled: when its run slice ends (CLOCK_MONOTONIC) */
	struct kvm_vcpu_stat faults; /* KVM's pf_fixed: with dirty logging, its writes */
	bool share_cpu;	     /* (atomic) leave the CPU to whoever waits at each kick */
	uint64_t cpu_shares; /* (atomic) how often it did since sharing began */
	bool share_timer_made;
	timer_t share_timer; /* kicks this thread every VCPU_SHARE_PERIOD_NS */
};

/* Why the VM ended, and the status `godwit run` exits with. */
struct vm_exit {
	bool requested;
	int code;
	char reason[128];
};

struct vm {
	struct vm_config cfg;
	struct kvm kvm;
	struct guest_mem mem;
	struct bus pio;
	struct bus mmio;
	struct serial8250 serial;
	unsigned int nr_vdevs;
	struct vdev vdevs[VM_MAX_DISKS + VM_MAX_NETS];
	int console_fd;
	struct vcpu vcpus[VM_MAX_VCPUS];
	unsigned int nr_vcpus;
	const struct vm_control *control; /* NULL: nothing drives it from outside */
	struct api_server *api;		  /* the control layer's */
	struct boot_setup boot;
	uint8_t uuid[16];
	uint32_t msr_indices[64];
	uint32_t nr_msr_indices;
	struct migration *mig; /* the outgoing migration's slot (src/migrate/), NULL when none */
	uint32_t throttle_pct; /* the highest vCPU throttle: the timer runs while not 0 */
	pthread_t throttle_thread;
	bool throttle_started; /* throttle_thread is to be joined */
	bool throttle_running; /* it has not left its loop (vm->lock) */
	uint64_t start_ns;
	/*
	 * The control layer's: held while it checks that nothing else moves the VM's
	 * state and starts a migration or a disk move, so that two never overlap.
	 */
	pthread_mutex_t control_lock;

	/* lock protects everything below; cond signals every change of it. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum vm_state state;
	bool pause_requested;
	unsigned int nr_paused;
	unsigned int nr_running; /* vCPU threads still in their loop */
	struct vm_exit exit;
	int event_fd; /* wakes the main thread when exit.requested is set */
	int input_stop_fd;
	pthread_t input_thread;
	bool input_started;
};

int __must_check vm__create(struct vm *vm, const struct vm_config *cfg,
			    const struct vm_control *control);
int __must_check vm__start(struct vm *vm);
/*
 * An incoming VM's vCPU threads, started parked before its state arrives, so that the
 * hand-over only wakes them: created at GO, their start-up was part of the pause.
 * The VM stays VM_CREATED (vm__resume() refuses it); its state may be set meanwhile.
 * vm__run_parked() lets them run and starts the console's input, as vm__start() does;
 * it does not wait for each thread to get a CPU (on a busy host one waits behind
 * another for milliseconds, and with it the destination's RESUMED).
 */
int __must_check vm__start_parked(struct vm *vm);
int __must_check vm__run_parked(struct vm *vm);
/* Blocks until the VM ends (guest exit, power-off, API shutdown, SIGINT/SIGTERM). */
int vm__wait(struct vm *vm);
void vm__destroy(struct vm *vm);

/* Acknowledged pause: returns once every vCPU is out of KVM_RUN and parked. */
int __must_check vm__pause(struct vm *vm);
int __must_check vm__resume(struct vm *vm);
/* Asks the VM to end with status code; safe from any thread. */
void vm__request_exit(struct vm *vm, int code, const char *reason);
/* Waits on vm->cond (vm->lock held) until woken or ns have passed. */
void vm__cond_wait_ns(struct vm *vm, uint64_t ns);

/*
 * Auto-converge: a throttled vCPU runs THROTTLE_SLICE_NS, then sleeps pct/(100-pct) of
 * that, so it runs (100-pct) % of the time. Every vCPU, or one; 0 stops it (the timer
 * ends when no vCPU is throttled; its thread is told, not waited for).
 * vm__stop_throttle also waits for that thread to end.
 */
#define THROTTLE_SLICE_NS 10000000ULL
void vm__set_throttle(struct vm *vm, uint32_t pct);
void vm__set_vcpu_throttle(struct vm *vm, unsigned int id, uint32_t pct);
void vm__stop_throttle(struct vm *vm);
/*
 * For a paused VM: no vCPU throttled, and nobody woken. Its vCPUs are parked, and the
 * throttle's thread ends at its next slice. Waking the threads that wait on vm->cond
 * takes the condition variable's own lock, which one of them, at ordinary priority
 * and without a CPU, may hold: a wait of up to 280 ms in a pause under load.
 */
void vm__drop_throttle(struct vm *vm);
const char *vm__state_name(enum vm_state s);

/* vcpu.c */
int __must_check vcpu__init(struct vm *vm, unsigned int id);
int __must_check vcpu__start(struct vcpu *vcpu);
void vcpu__kick(struct vcpu *vcpu);
void vcpu__exit(struct vcpu *vcpu);
/* Page faults KVM fixed for this vCPU so far; -ENOENT where KVM does not count them. */
int vcpu__faults(const struct vcpu *vcpu, uint64_t *n);
/* The vCPU thread's nice value; -ESRCH before the thread runs. */
int vcpu__nice(const struct vcpu *vcpu, int *nice);
int vcpu__set_nice(const struct vcpu *vcpu, int nice);
/* util__thread_realtime for the vCPU thread; -ESRCH before the thread runs. */
int vcpu__set_realtime(const struct vcpu *vcpu, bool on);
/*
 * on: the vCPU thread leaves its CPU to any thread waiting for it at least every
 * VCPU_SHARE_PERIOD_NS (a timer kicks it out of KVM_RUN, it calls sched_yield)
 * and cpu_shares counts from 0 how often it did; off: it runs as before (cpu_shares
 * keeps the count). -ESRCH before the thread runs.
 */
#define VCPU_SHARE_PERIOD_NS 1000000ULL
int vcpu__share_cpu(struct vcpu *vcpu, bool on);

/*
 * preopen.c: opens every backend cfg names (disks, taps, console file), then what
 * control opens early (the API socket); control may be NULL.
 */
int __must_check vm__preopen(struct vm_preopened *pre, const struct vm_config *cfg,
			     const struct vm_control *control);
void vm__preopened_close(struct vm_preopened *pre);

/* console.c: the serial port's backend (stdout or a file; stdin as input). */
int __must_check console__open_file(const char *path);
int __must_check console__init(struct vm *vm);
int __must_check console__start_input(struct vm *vm);
void console__exit(struct vm *vm);

/*
 * devices.c: the platform devices. devices__open creates the virtio devices and
 * opens their backends (disk images, taps), before KVM, so bad input shows
 * early; devices__init puts everything on the buses and connects interrupts
 * (irqfd) and notifications (ioeventfd) once KVM exists.
 */
int __must_check devices__open(struct vm *vm);
int __must_check devices__init(struct vm *vm);
void devices__exit(struct vm *vm);
/* The ACPI description of the virtio-mmio devices a config asks for; returns how many. */
unsigned int devices__acpi(const struct vm_config *cfg, struct acpi_virtio_mmio *out);
/* Migration: stop and restart device I/O around the final state, hand disks over. */
void devices__quiesce(struct vm *vm);
void devices__resume(struct vm *vm);
/*
 * Releases every disk's lock, or none: on failure the ones released are taken back.
 * Then, if one of those cannot be, devices__disks_locked() says false: the VM must not
 * run here (see docs/design.md, "Disks").
 */
int __must_check devices__release_disks(struct vm *vm);
int __must_check devices__take_disks(struct vm *vm);
bool devices__disks_locked(const struct vm *vm);
void devices__announce(struct vm *vm);
/* Disk id (0.. in command-line order), or NULL. */
struct virtio_blk *devices__disk(struct vm *vm, unsigned int id);
/* The id of a disk being moved (virtio_blk__move_start), or -1. */
int devices__disk_moving(struct vm *vm);
/* Makes every device look at its queues once (after a restore). */
void devices__kick(struct vm *vm);

/* config.c */
int __must_check config__parse_run(int argc, char **argv, struct vm_config *cfg);
void config__free(struct vm_config *cfg);
void config__usage_run(FILE *out);
/* --disk PATH[,readonly=on|off] and --net tap=NAME[,mac=MAC], shared with receive. */
int __must_check config__add_disk(struct vm_config *cfg, const char *arg);
int __must_check config__add_net(struct vm_config *cfg, const char *arg);
/* --console stdio | file:PATH, shared by run and receive; -EINVAL with a message. */
int __must_check config__parse_console(const char *arg, enum console_kind *kind,
				       const char **path);

#endif
