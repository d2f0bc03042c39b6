// SPDX-License-Identifier: GPL-2.0
/* The VM's lifecycle: create, start, pause/resume, wait for its end, destroy. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "godwit/acpi.h"
#include "godwit/boot.h"
#include "godwit/emulate.h"
#include "godwit/log.h"
#include "godwit/vm.h"
#include "godwit/x86_state.h"

const char *vm__state_name(enum vm_state s)
{
	static const char *const names[] = {
		[VM_CREATED] = "created",
		[VM_RUNNING] = "running",
		[VM_PAUSED] = "paused",
		[VM_STOPPING] = "stopping",
	};

	return (unsigned int)s < ARRAY_SIZE(names) ? names[s] : "unknown";
}

void vm__request_exit(struct vm *vm, int code, const char *reason)
{
	uint64_t one = 1;
	unsigned int i;

	pthread_mutex_lock(&vm->lock);
	if (!vm->exit.requested) {
		vm->exit.requested = true;
		vm->exit.code = code;
		snprintf(vm->exit.reason, sizeof(vm->exit.reason), "%s", reason);
		vm->state = VM_STOPPING;
		for (i = 0; i < vm->nr_vcpus; i++)
			vcpu__kick(&vm->vcpus[i]);
		pthread_cond_broadcast(&vm->cond);
		if (write(vm->event_fd, &one, sizeof(one)) < 0)
			pr_debug("cannot wake the main thread");
	}
	pthread_mutex_unlock(&vm->lock);
}

/*
 * A pausing thread at real-time priority (migration's switchover) waits on the vCPU
 * threads, so they run at its priority until they park, as a priority-inheriting lock
 * would have them: on a busy host a kicked vCPU thread otherwise waits for a CPU behind
 * every ordinary thread before it can park, and the guest's pause with it. They are
 * back at the ordinary policy before anything can wake them. A thread that cannot be
 * raised parks at its own priority.
 */
static void lend_priority(struct vm *vm, bool on)
{
	unsigned int i;

	for (i = 0; i < vm->nr_vcpus; i++)
		if (vcpu__set_realtime(&vm->vcpus[i], on) && on)
			pr_debug("vCPU %u parks at its own priority", i);
}

int vm__pause(struct vm *vm)
{
	bool lend = util__is_realtime();
	unsigned int i;
	int ret = 0;

	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_PAUSED)
		goto out;
	if (vm->state != VM_RUNNING) {
		ret = -EBUSY;
		goto out;
	}
	vm->pause_requested = true;
	if (lend)
		lend_priority(vm, true);
	/* A throttled vCPU sleeps on vm->cond (up to 990 ms at 99 %): wake it to park. */
	pthread_cond_broadcast(&vm->cond);
	for (i = 0; i < vm->nr_vcpus; i++)
		vcpu__kick(&vm->vcpus[i]);
	while (vm->nr_paused < vm->nr_running && !vm->exit.requested)
		pthread_cond_wait(&vm->cond, &vm->lock);
	if (lend)
		lend_priority(vm, false);
	if (vm->exit.requested)
		ret = -ESHUTDOWN;
	else
		vm->state = VM_PAUSED;
out:
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

/*
 * Called with vm->lock held. wait: until every vCPU thread has left its park. A thread
 * that has not yet left it when the VM is paused again simply stays parked.
 */
static void unpark(struct vm *vm, bool wait)
{
	vm->pause_requested = false;
	pthread_cond_broadcast(&vm->cond);
	while (wait && vm->nr_paused > 0 && !vm->exit.requested)
		pthread_cond_wait(&vm->cond, &vm->lock);
	vm->state = VM_RUNNING;
}

int vm__resume(struct vm *vm)
{
	int ret = 0;

	pthread_mutex_lock(&vm->lock);
	if (vm->state == VM_RUNNING)
		goto out;
	if (vm->state != VM_PAUSED) {
		ret = -EBUSY;
		goto out;
	}
	unpark(vm, true);
out:
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

static bool throttling(struct vm *vm)
{
	return __atomic_load_n(&vm->throttle_pct, __ATOMIC_RELAXED);
}

void vm__cond_wait_ns(struct vm *vm, uint64_t ns)
{
	uint64_t at = util__now_ns() + ns;
	struct timespec ts = { .tv_sec = (time_t)(at / 1000000000ULL),
			       .tv_nsec = (long)(at % 1000000000ULL) };

	pthread_cond_timedwait(&vm->cond, &vm->lock, &ts);
}

/*
 * Kicks each throttled vCPU when its run slice ends; the vCPU then sleeps and
 * sets the end of its next slice (vcpu.c, throttle_sleep). Slices are per vCPU:
 * one 10 ms timer for all once woke a vCPU that slept whole periods (75 %: 30 ms)
 * at the very tick that sent it back to sleep, so it ran ~1 % instead of 25 %,
 * and the other vCPU spun on a guest lock it held. It waits on vm->cond so that
 * it ends as soon as it is told, and it is not waited for then (throttle_timer()).
 */
static void *throttle_thread(void *arg)
{
	struct vm *vm = arg;
	unsigned int i;

	pthread_mutex_lock(&vm->lock);
	while (throttling(vm)) {
		uint64_t now = util__now_ns(), next = now + THROTTLE_SLICE_NS;

		for (i = 0; i < vm->nr_vcpus; i++) {
			struct vcpu *v = &vm->vcpus[i];
			uint64_t until = __atomic_load_n(&v->run_until_ns, __ATOMIC_RELAXED);

			if (!__atomic_load_n(&v->throttle_pct, __ATOMIC_RELAXED))
				continue;
			if (until > now) {
				next = MIN(next, until);
				continue;
			}
			if (!__atomic_exchange_n(&v->throttle_due, true, __ATOMIC_RELAXED))
				vcpu__kick(v);
			/* Due, not yet asleep: look again soon. */
			next = MIN(next, now + THROTTLE_SLICE_NS / 10);
		}
		vm__cond_wait_ns(vm, next - now);
	}
	vm->throttle_running = false;
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

static void join_throttle(struct vm *vm)
{
	if (!vm->throttle_started)
		return;
	pthread_join(vm->throttle_thread, NULL);
	vm->throttle_started = false;
}

/*
 * Runs the throttle timer while any vCPU is throttled. Migration thread only. Stopping
 * it only tells its thread: the pause stops it, and waiting there for a thread of
 * ordinary priority to get a CPU on a loaded host would be the guest's wait too. The
 * broadcast is made without vm->lock for the same reason; a thread that misses it
 * ends at its next slice. A thread told to end that has not yet looked again sees a
 * new throttle and goes on.
 */
static void throttle_timer(struct vm *vm)
{
	uint32_t pct = 0;
	unsigned int i;
	bool running;

	for (i = 0; i < vm->nr_vcpus; i++)
		pct = MAX(pct, __atomic_load_n(&vm->vcpus[i].throttle_pct, __ATOMIC_RELAXED));
	__atomic_store_n(&vm->throttle_pct, pct, __ATOMIC_RELAXED);
	if (!pct) {
		if (vm->throttle_started)
			pthread_cond_broadcast(&vm->cond);
		return;
	}
	pthread_mutex_lock(&vm->lock);
	running = vm->throttle_running;
	pthread_mutex_unlock(&vm->lock);
	if (running)
		return;
	join_throttle(vm);
	vm->throttle_running = true;
	vm->throttle_started = !pthread_create(&vm->throttle_thread, NULL, throttle_thread, vm);
	if (!vm->throttle_started) {
		vm->throttle_running = false;
		pr_warn("cannot start the vCPU throttle");
	}
}

void vm__stop_throttle(struct vm *vm)
{
	vm__set_throttle(vm, 0);
	pthread_mutex_lock(&vm->lock);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	join_throttle(vm);
}

void vm__set_vcpu_throttle(struct vm *vm, unsigned int id, uint32_t pct)
{
	if (id >= vm->nr_vcpus)
		return;
	__atomic_store_n(&vm->vcpus[id].throttle_pct, MIN(pct, 99U), __ATOMIC_RELAXED);
	throttle_timer(vm);
}

static void store_throttle(struct vm *vm, uint32_t pct)
{
	unsigned int i;

	for (i = 0; i < vm->nr_vcpus; i++)
		__atomic_store_n(&vm->vcpus[i].throttle_pct, MIN(pct, 99U), __ATOMIC_RELAXED);
}

void vm__drop_throttle(struct vm *vm)
{
	store_throttle(vm, 0);
	__atomic_store_n(&vm->throttle_pct, 0, __ATOMIC_RELAXED);
}

void vm__set_throttle(struct vm *vm, uint32_t pct)
{
	store_throttle(vm, pct);
	throttle_timer(vm);
}

static int load_guest(struct vm *vm)
{
	struct acpi_virtio_mmio virtio[VM_MAX_DISKS + VM_MAX_NETS];
	struct acpi_config acpi = { .nr_cpus = vm->cfg.nr_cpus, .virtio_mmio = virtio };
	struct boot_params_in in = {
		.kernel_path = vm->cfg.kernel,
		.initrd_path = vm->cfg.initrd,
		.cmdline = vm->cfg.cmdline,
		.nr_cpus = vm->cfg.nr_cpus,
		/* kvm_pvm cannot run some instructions in guest ring 0: keep Linux off them. */
		.linux_cmdline_prefix = kvm__host_is_pvm() ? EMULATE_PVM_CMDLINE : NULL,
	};
	int ret;

	acpi.nr_virtio_mmio = devices__acpi(&vm->cfg, virtio);
	ret = acpi__build(&vm->mem, &acpi, &in.rsdp_gpa);
	if (ret) {
		pr_err("cannot build the ACPI tables: %s", strerror(-ret));
		return ret;
	}
	return boot__load_kernel(&vm->mem, &in, &vm->boot);
}

static int map_memory(struct vm *vm)
{
	unsigned int i;
	int ret;

	for (i = 0; i < vm->mem.nr_regions; i++) {
		struct mem_region *r = &vm->mem.regions[i];

		ret = kvm__set_memory(&vm->kvm, i, r->gpa, r->size, r->hva, 0);
		if (ret) {
			pr_err("cannot give guest RAM to KVM: %s", strerror(-ret));
			return ret;
		}
	}
	return 0;
}

static int create_vcpus(struct vm *vm)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	unsigned int i;
	int ret;

	vm->nr_vcpus = vm->cfg.nr_cpus;
	if ((int)vm->nr_vcpus > vm->kvm.max_vcpus) {
		pr_err("--cpus %u: this KVM allows at most %d vCPUs", vm->nr_vcpus, vm->kvm.max_vcpus);
		return -EINVAL;
	}
	for (i = 0; i < vm->nr_vcpus; i++) {
		ret = vcpu__init(vm, i);
		if (ret)
			goto err;
	}
	if (vm->cfg.incoming)
		return 0;
	/* The boot vCPU starts where the loader says; the others wait for INIT/SIPI. */
	ret = kvm_vcpu__get_sregs(&vm->vcpus[0].kfd, &sregs);
	if (ret)
		goto err;
	boot__bsp_regs(&vm->boot, &regs, &sregs);
	ret = kvm_vcpu__set_sregs(&vm->vcpus[0].kfd, &sregs);
	if (!ret)
		ret = kvm_vcpu__set_regs(&vm->vcpus[0].kfd, &regs);
	if (ret) {
		pr_err("cannot set the boot vCPU's registers: %s", strerror(-ret));
		goto err;
	}
	return 0;
err:
	while (i-- > 0)
		vcpu__exit(&vm->vcpus[i]);
	vm->nr_vcpus = 0;
	return ret;
}

static int init_sync(struct vm *vm)
{
	pthread_condattr_t attr;
	int ret;

	/* The VM's identity in migration streams; a failure only weakens a check. */
	if (getrandom(vm->uuid, sizeof(vm->uuid), 0) != sizeof(vm->uuid))
		pr_debug("no random UUID for this VM");
	/* The switchover's pause and resume take it at real-time priority. */
	ret = util__mutex_init_inherit(&vm->lock);
	if (ret)
		return ret;
	pthread_mutex_init(&vm->control_lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* vm__cond_wait_ns */
	pthread_cond_init(&vm->cond, &attr);
	pthread_condattr_destroy(&attr);
	vm->console_fd = -1;
	vm->input_stop_fd = -1;
	vm->event_fd = eventfd(0, EFD_CLOEXEC);
	return vm->event_fd < 0 ? -errno : 0;
}

/*
 * Everything that can fail on bad input (memory, kernel file, console, API
 * socket) is done before KVM is opened, so those errors are reported alike on
 * any host.
 */
int vm__create(struct vm *vm, const struct vm_config *cfg, const struct vm_control *control)
{
	int ret;

	memset(vm, 0, sizeof(*vm));
	vm->cfg = *cfg;
	vm->control = control;
	vm->kvm.sys_fd = vm->kvm.vm_fd = -1;
	ret = init_sync(vm);
	if (ret)
		return ret;
	ret = guest_mem__init(&vm->mem, cfg->mem_size);
	if (ret)
		goto err_sync;
	/* An incoming VM gets its RAM and registers from the stream, not a kernel. */
	ret = cfg->incoming ? 0 : load_guest(vm);
	if (ret)
		goto err_mem;
	ret = devices__open(vm);
	if (ret)
		goto err_mem;
	ret = console__init(vm);
	if (ret)
		goto err_devices;
	ret = vm->control ? vm->control->start(vm) : 0;
	if (ret)
		goto err_console;
	ret = kvm__open(&vm->kvm);
	if (ret)
		goto err_control;
	ret = kvm__create_irqchip(&vm->kvm);
	if (!ret)
		ret = x86__msr_list(&vm->kvm, vm->msr_indices, &vm->nr_msr_indices);
	if (!ret)
		ret = map_memory(vm);
	if (!ret)
		ret = devices__init(vm);
	if (!ret)
		ret = create_vcpus(vm);
	if (ret)
		goto err_kvm;
	return 0;

err_kvm:
	kvm__close(&vm->kvm);
err_control:
	if (vm->control)
		vm->control->stop(vm);
err_console:
	console__exit(vm);
err_devices:
	devices__exit(vm);
err_mem:
	guest_mem__exit(&vm->mem);
err_sync:
	close(vm->event_fd);
	return ret;
}

/*
 * Parked threads leave the VM in VM_CREATED, not VM_PAUSED: an incoming VM must not
 * be resumed through the API before its state has arrived and the source said GO.
 */
static int start_vcpus(struct vm *vm, bool parked)
{
	unsigned int i;
	int ret = 0;

	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_CREATED || vm->nr_running) {
		pthread_mutex_unlock(&vm->lock);
		return -EBUSY;
	}
	vm->state = parked ? VM_CREATED : VM_RUNNING;
	vm->pause_requested = parked;
	for (i = 0; i < vm->nr_vcpus && !ret; i++) {
		vm->nr_running++;
		ret = vcpu__start(&vm->vcpus[i]);
		if (ret)
			vm->nr_running--;
	}
	while (!ret && parked && vm->nr_paused < vm->nr_running && !vm->exit.requested)
		pthread_cond_wait(&vm->cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
	if (ret) {
		pr_err("cannot start vCPU threads: %s", strerror(-ret));
		vm__request_exit(vm, 1, "vCPU threads could not start");
	}
	return ret;
}

static void start_input(struct vm *vm)
{
	int ret;

	if (vm->cfg.console != CONSOLE_STDIO)
		return;
	ret = console__start_input(vm);
	if (ret)
		pr_warn("no console input: %s", strerror(-ret));
}

int vm__start(struct vm *vm)
{
	int ret;

	vm->start_ns = util__now_ns();
	ret = start_vcpus(vm, false);
	if (!ret)
		start_input(vm);
	return ret;
}

int vm__start_parked(struct vm *vm)
{
	return start_vcpus(vm, true);
}

int vm__run_parked(struct vm *vm)
{
	int ret = 0;

	pthread_mutex_lock(&vm->lock);
	if (vm->state != VM_CREATED || !vm->pause_requested || !vm->nr_running)
		ret = -EBUSY;
	else
		unpark(vm, false);
	pthread_mutex_unlock(&vm->lock);
	if (ret)
		return ret;
	vm->start_ns = util__now_ns();
	start_input(vm);
	return 0;
}

int vm__wait(struct vm *vm)
{
	struct signalfd_siginfo si;
	struct pollfd p[2];
	int sfd = util__stop_signal_fd();

	p[0] = (struct pollfd){ .fd = vm->event_fd, .events = POLLIN };
	p[1] = (struct pollfd){ .fd = sfd, .events = POLLIN };
	for (;;) {
		pthread_mutex_lock(&vm->lock);
		if (vm->exit.requested) {
			pthread_mutex_unlock(&vm->lock);
			break;
		}
		pthread_mutex_unlock(&vm->lock);
		if (poll(p, sfd >= 0 ? 2 : 1, -1) < 0 && errno != EINTR)
			break;
		if (sfd >= 0 && (p[1].revents & POLLIN) && read(sfd, &si, sizeof(si)) == sizeof(si)) {
			char why[64];

			snprintf(why, sizeof(why), "stopped by %s", strsignal((int)si.ssi_signo));
			vm__request_exit(vm, 128 + (int)si.ssi_signo, why);
		}
	}
	if (sfd >= 0)
		close(sfd);
	return vm->exit.code;
}

void vm__destroy(struct vm *vm)
{
	unsigned int i;

	vm__request_exit(vm, vm->exit.code, "VM destroyed");
	if (vm->control)
		vm->control->stop(vm);
	vm__stop_throttle(vm);
	for (i = 0; i < vm->nr_vcpus; i++) {
		if (vm->vcpus[i].thread_started)
			pthread_join(vm->vcpus[i].thread, NULL);
	}
	console__exit(vm);
	devices__exit(vm);
	for (i = 0; i < vm->nr_vcpus; i++)
		vcpu__exit(&vm->vcpus[i]);
	kvm__close(&vm->kvm);
	guest_mem__exit(&vm->mem);
	close(vm->event_fd);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->control_lock);
	pthread_mutex_destroy(&vm->lock);
}
