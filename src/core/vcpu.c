// SPDX-License-Identifier: GPL-2.0
/* One thread per vCPU: the KVM_RUN exit loop, parking for pause, kicks. */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "godwit/emulate.h"
#include "godwit/log.h"
#include "godwit/util.h"
#include "godwit/vm.h"
#include "godwit/x86.h"

/* SIGUSR1 only interrupts KVM_RUN; the handler itself has nothing to do. */
static void kick_handler(int sig)
{
	(void)sig;
}

int vcpu__init(struct vm *vm, unsigned int id)
{
	struct vcpu *v = &vm->vcpus[id];
	int ret;

	*v = (struct vcpu){ .vm = vm, .id = id, .kfd = { .fd = -1 }, .faults = { .fd = -1 } };
	ret = kvm__create_vcpu(&vm->kvm, id, &v->kfd);
	if (ret)
		return ret;
	ret = x86__setup_cpuid(&vm->kvm, &v->kfd, id, vm->nr_vcpus);
	if (ret) {
		pr_err("vCPU %u: cannot set CPUID: %s", id, strerror(-ret));
		kvm__destroy_vcpu(&v->kfd);
		return ret;
	}
	/* Only migration uses it, to throttle the vCPUs that dirty memory and no other. */
	if (kvm_vcpu__stat_open(&v->kfd, "pf_fixed", &v->faults))
		pr_debug("vCPU %u: KVM does not count its page faults", id);
	return 0;
}

void vcpu__exit(struct vcpu *vcpu)
{
	if (vcpu->share_timer_made)
		timer_delete(vcpu->share_timer);
	vcpu->share_timer_made = false;
	kvm_vcpu__stat_close(&vcpu->faults);
	kvm__destroy_vcpu(&vcpu->kfd);
}

int vcpu__faults(const struct vcpu *vcpu, uint64_t *n)
{
	return kvm_vcpu__stat_read(&vcpu->faults, n);
}

static pid_t vcpu_tid(const struct vcpu *vcpu)
{
	return __atomic_load_n(&vcpu->tid, __ATOMIC_ACQUIRE);
}

int vcpu__nice(const struct vcpu *vcpu, int *nice)
{
	pid_t tid = vcpu_tid(vcpu);

	return tid ? util__thread_nice(tid, nice) : -ESRCH;
}

int vcpu__set_nice(const struct vcpu *vcpu, int nice)
{
	pid_t tid = vcpu_tid(vcpu);

	return tid ? util__set_thread_nice(tid, nice) : -ESRCH;
}

int vcpu__set_realtime(const struct vcpu *vcpu, bool on)
{
	pid_t tid = vcpu_tid(vcpu);

	return tid ? util__thread_realtime(tid, on) : -ESRCH;
}

/*
 * Why: the scheduler hands a CPU over at its tick (4 ms with HZ=250) unless a waking
 * thread preempts. A vCPU that runs its guest without exits therefore keeps a CPU it
 * shares for a whole tick, even at nice 10: a dirtying vCPU back from a throttle sleep
 * can hold the CPU of the guest's other vCPU for a tick just before the pause, a gap
 * of that long in that vCPU's heartbeat. The timer signals only
 * this thread (SIGEV_THREAD_ID) from the host's timer interrupt: no thread wakes for
 * it, and a vCPU alone on its CPU only pays the exit (sched_yield returns at once).
 */
int vcpu__share_cpu(struct vcpu *vcpu, bool on)
{
	uint64_t ns = on ? VCPU_SHARE_PERIOD_NS : 0;
	struct itimerspec its = {
		.it_value = { .tv_sec = 0, .tv_nsec = (long)ns },
		.it_interval = { .tv_sec = 0, .tv_nsec = (long)ns },
	};
	pid_t tid = vcpu_tid(vcpu);

	if (!tid)
		return -ESRCH;
	if (on && !vcpu->share_timer_made) {
		struct sigevent sev = { .sigev_notify = SIGEV_THREAD_ID, .sigev_signo = SIGUSR1 };

		sev._sigev_un._tid = tid;
		if (timer_create(CLOCK_MONOTONIC, &sev, &vcpu->share_timer))
			return -errno;
		vcpu->share_timer_made = true;
	}
	if (on)
		__atomic_store_n(&vcpu->cpu_shares, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&vcpu->share_cpu, on, __ATOMIC_RELAXED);
	if (vcpu->share_timer_made && timer_settime(vcpu->share_timer, 0, &its, NULL))
		return -errno;
	return 0;
}

/* Called with vm->lock held. */
void vcpu__kick(struct vcpu *vcpu)
{
	if (!vcpu->thread_started || !vcpu->kfd.run)
		return;
	/* immediate_exit closes the race with a vCPU just about to enter KVM_RUN. */
	__atomic_store_n(&vcpu->kfd.run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	pthread_kill(vcpu->thread, SIGUSR1);
}

/*
 * Auto-converge: when its run slice ends the throttle timer marks the vCPU, and it
 * sleeps pct/(100-pct) of a slice (its own pct: migration throttles only the vCPUs
 * that dirty memory), so it runs (100-pct)% of the time; its next slice ends a
 * slice after it wakes. A pause or exit request cuts the sleep short: both
 * broadcast vm->cond, so SIGUSR1 stays blocked while it sleeps; otherwise the timer
 * of a vCPU that shares its CPU (vcpu__share_cpu) wakes the sleeper every ms for
 * nothing, and on a busy host each wake-up waits its turn for a CPU at nice 10.
 * Called with vm->lock held.
 */
static void throttle_sleep(struct vcpu *v)
{
	struct vm *vm = v->vm;
	uint32_t pct = __atomic_load_n(&v->throttle_pct, __ATOMIC_RELAXED);
	uint64_t ns, wake;
	sigset_t kick, old;

	if (!__atomic_exchange_n(&v->throttle_due, false, __ATOMIC_RELAXED) || !pct || pct >= 100)
		return;
	ns = THROTTLE_SLICE_NS * pct / (100 - pct);
	wake = util__now_ns() + ns;
	__atomic_store_n(&v->run_until_ns, wake + THROTTLE_SLICE_NS, __ATOMIC_RELAXED);
	sigemptyset(&kick);
	sigaddset(&kick, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &kick, &old);
	for (;;) {
		uint64_t now = util__now_ns();

		if (vm->pause_requested || vm->exit.requested || now >= wake)
			break;
		vm__cond_wait_ns(vm, wake - now);
	}
	/* What came meanwhile is delivered now, to a handler with nothing to do. */
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Parks while a pause is requested; returns true when the vCPU must stop. */
static bool vcpu_check_park(struct vcpu *v)
{
	struct vm *vm = v->vm;
	bool stop;

	pthread_mutex_lock(&vm->lock);
	throttle_sleep(v);
	if (vm->pause_requested && !vm->exit.requested) {
		/* A parked vCPU's state may be saved: nothing may be left half done. */
		if (kvm_vcpu__complete_pending(&v->kfd))
			pr_warn("vCPU %u: cannot complete its pending I/O before pausing", v->id);
		vm->nr_paused++;
		pthread_cond_broadcast(&vm->cond);
		while (vm->pause_requested && !vm->exit.requested)
			pthread_cond_wait(&vm->cond, &vm->lock);
		vm->nr_paused--;
		pthread_cond_broadcast(&vm->cond);
	}
	stop = vm->exit.requested;
	if (!stop)
		v->kfd.run->immediate_exit = 0;
	pthread_mutex_unlock(&vm->lock);
	return stop;
}

static void handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->kfd.run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	uint32_t i;

	/* data_offset and count come from KVM, which bounds them by the run page. */
	for (i = 0; i < run->io.count; i++) {
		struct bus_access a = {
			.addr = run->io.port,
			.data = data + (size_t)i * run->io.size,
			.size = run->io.size,
			.is_write = run->io.direction == KVM_EXIT_IO_OUT,
		};

		if (!bus__dispatch(&v->vm->pio, &a))
			pr_debug("vCPU %u: unclaimed port %s 0x%x", v->id, a.is_write ? "write" : "read",
				 run->io.port);
	}
}

static void handle_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->kfd.run;
	struct bus_access a = {
		.addr = run->mmio.phys_addr,
		.data = run->mmio.data,
		.size = MIN(run->mmio.len, (uint32_t)sizeof(run->mmio.data)),
		.is_write = run->mmio.is_write,
	};

	if (!bus__dispatch(&v->vm->mmio, &a)) {
		if (!a.is_write)
			memset(a.data, 0, a.size);
		pr_debug("vCPU %u: unclaimed MMIO %s 0x%llx", v->id, a.is_write ? "write" : "read",
			 (unsigned long long)a.addr);
	}
}

static bool handle_system_event(struct vcpu *v)
{
	switch (v->kfd.run->system_event.type) {
	case KVM_SYSTEM_EVENT_SHUTDOWN:
		vm__request_exit(v->vm, 0, "guest powered off");
		return true;
	case KVM_SYSTEM_EVENT_RESET:
		vm__request_exit(v->vm, 0, "guest asked for a reset; godwit ends the VM");
		return true;
	default:
		x86__report_vcpu(&v->kfd, v->id, "guest crashed (system event)");
		vm__request_exit(v->vm, 1, "guest crashed");
		return true;
	}
}

/*
 * kvm_pvm only: completes an instruction KVM's emulator gave up on, when it is
 * one of the few godwit knows to do exactly (src/arch/x86/emulate.c). 0: the
 * guest goes on.
 */
static int complete_insn(struct vcpu *v)
{
	struct emulate_ctx ctx = { .mem = &v->vm->mem };
	struct kvm_vcpu_events ev;
	int ret;

	emulate__init_from_run(&ctx, v->kfd.run);
	if (kvm_vcpu__get_regs(&v->kfd, &ctx.regs) || kvm_vcpu__get_sregs(&v->kfd, &ctx.sregs) ||
	    kvm_vcpu__get_fpu(&v->kfd, &ctx.fpu))
		return -EIO;
	ret = emulate__complete(&ctx);
	if (ret)
		return ret;
	if (ctx.fpu_changed && kvm_vcpu__set_fpu(&v->kfd, &ctx.fpu))
		return -EIO;
	if (kvm_vcpu__set_regs(&v->kfd, &ctx.regs))
		return -EIO;
	if (ctx.exc.valid) {
		if (kvm_vcpu__get_events(&v->kfd, &ev))
			return -EIO;
		ev.exception.injected = 1;
		ev.exception.nr = ctx.exc.vector;
		ev.exception.has_error_code = ctx.exc.has_error_code;
		ev.exception.error_code = ctx.exc.error_code;
		if (kvm_vcpu__set_events(&v->kfd, &ev))
			return -EIO;
	}
	v->completed_insns++;
	pr_debug("vCPU %u: completed %s", v->id, ctx.name);
	return 0;
}

/* Returns true when the loop must end. */
static bool handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->kfd.run;

	v->exits++;
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		handle_io(v);
		return false;
	case KVM_EXIT_MMIO:
		handle_mmio(v);
		return false;
	case KVM_EXIT_HLT:
	case KVM_EXIT_INTR:
	case KVM_EXIT_IRQ_WINDOW_OPEN:
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		return handle_system_event(v);
	case KVM_EXIT_SHUTDOWN:
		x86__report_vcpu(&v->kfd, v->id, "triple fault (KVM_EXIT_SHUTDOWN)");
		vm__request_exit(v->vm, 1, "guest triple-faulted");
		return true;
	case KVM_EXIT_INTERNAL_ERROR:
		if (v->vm->kvm.is_pvm && complete_insn(v) == 0)
			return false;
		x86__report_vcpu(&v->kfd, v->id, "KVM could not run the guest (KVM_EXIT_INTERNAL_ERROR)");
		vm__request_exit(v->vm, 1, "KVM internal error");
		return true;
	case KVM_EXIT_FAIL_ENTRY:
		x86__report_vcpu(&v->kfd, v->id, "KVM refused to enter the guest (KVM_EXIT_FAIL_ENTRY)");
		vm__request_exit(v->vm, 1, "KVM entry failure");
		return true;
	default:
		x86__report_vcpu(&v->kfd, v->id, "unexpected KVM exit");
		vm__request_exit(v->vm, 1, "unexpected KVM exit");
		return true;
	}
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	sigset_t set;
	int ret;

	__atomic_store_n(&v->tid, gettid(), __ATOMIC_RELEASE);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	while (!vcpu_check_park(v)) {
		ret = kvm_vcpu__run(&v->kfd);
		if (ret == -EINTR && __atomic_load_n(&v->share_cpu, __ATOMIC_RELAXED)) {
			sched_yield();
			__atomic_add_fetch(&v->cpu_shares, 1, __ATOMIC_RELAXED);
		}
		if (ret == -EINTR || ret == -EAGAIN)
			continue;
		if (ret) {
			pr_err("vCPU %u: KVM_RUN: %s", v->id, strerror(-ret));
			vm__request_exit(v->vm, 1, "KVM_RUN failed");
			break;
		}
		if (handle_exit(v))
			break;
	}
	pthread_mutex_lock(&v->vm->lock);
	/* Under the lock: vm__pause lends its priority by this id, which is free from here. */
	__atomic_store_n(&v->tid, 0, __ATOMIC_RELEASE);
	v->vm->nr_running--;
	pthread_cond_broadcast(&v->vm->cond);
	pthread_mutex_unlock(&v->vm->lock);
	return NULL;
}

int vcpu__start(struct vcpu *vcpu)
{
	struct sigaction sa = { .sa_handler = kick_handler };
	char name[16];
	int ret;

	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	ret = -pthread_create(&vcpu->thread, NULL, vcpu_thread, vcpu);
	if (ret)
		return ret;
	snprintf(name, sizeof(name), "vcpu-%u", vcpu->id);
	pthread_setname_np(vcpu->thread, name);
	vcpu->thread_started = true;
	return 0;
}
