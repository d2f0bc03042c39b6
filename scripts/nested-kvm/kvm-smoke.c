/* kvm-smoke: does /dev/kvm run a guest? Creates a VM with one vCPU in real
 * mode that runs `mov al, 42; out 0xf4, al; hlt`, checks the KVM_EXIT_IO, and
 * prints the capabilities godwit cares about. With an argument N it then times
 * N port-I/O exits (a guest loop of `out 0xf4, al; jmp $-2`), and with a
 * second argument M a guest spin loop of M iterations (`dec ecx; jnz $-2`).
 * Build: cc -O2 -o build/nested-kvm/kvm-smoke scripts/nested-kvm/kvm-smoke.c */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>

#define DIE(what) do { perror(what); return 1; } while (0)

int main(int argc, char **argv)
{
	static const unsigned char code[] = {
		0xb0, 42, 0xe6, 0xf4, 0xf4,	/* 0x1000: mov al,42; out 0xf4,al; hlt */
		0xe6, 0xf4, 0xeb, 0xfc,		/* 0x1005: out 0xf4,al; jmp 0x1005 */
		0x66, 0x49, 0x75, 0xfc, 0xf4,	/* 0x1009: dec ecx; jnz 0x1009; hlt */
	};
	static const struct { const char *name; int cap; } caps[] = {
		{ "KVM_CAP_IRQCHIP", KVM_CAP_IRQCHIP },
		{ "KVM_CAP_PIT2", KVM_CAP_PIT2 },
		{ "KVM_CAP_ADJUST_CLOCK", KVM_CAP_ADJUST_CLOCK },
		{ "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2", KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 },
		{ "KVM_CAP_USER_MEMORY", KVM_CAP_USER_MEMORY },
		{ "KVM_CAP_NR_VCPUS", KVM_CAP_NR_VCPUS },
	};
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0) DIE("open /dev/kvm");
	printf("kvm-smoke: KVM_GET_API_VERSION=%d\n", ioctl(kvm, KVM_GET_API_VERSION, 0));
	int vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0) DIE("KVM_CREATE_VM");
	for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++)
		printf("kvm-smoke: %s=%d\n", caps[i].name, ioctl(vm, KVM_CHECK_EXTENSION, caps[i].cap));
	unsigned char *mem = mmap(NULL, 0x2000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) DIE("mmap");
	memcpy(mem + 0x1000, code, sizeof code);
	struct kvm_userspace_memory_region region = {
		.slot = 0, .guest_phys_addr = 0, .memory_size = 0x2000, .userspace_addr = (unsigned long)mem,
	};
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) DIE("KVM_SET_USER_MEMORY_REGION");
	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (vcpu < 0) DIE("KVM_CREATE_VCPU");
	int runsz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	struct kvm_run *run = mmap(NULL, runsz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	if (run == MAP_FAILED) DIE("mmap kvm_run");
	struct kvm_sregs sregs;
	if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) DIE("KVM_GET_SREGS");
	sregs.cs.base = 0, sregs.cs.selector = 0;
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) DIE("KVM_SET_SREGS");
	struct kvm_regs regs = { .rip = 0x1000, .rflags = 2 };
	if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) DIE("KVM_SET_REGS");
	if (ioctl(vcpu, KVM_RUN, 0) < 0) DIE("KVM_RUN");
	unsigned char val = *((unsigned char *)run + run->io.data_offset);
	if (run->exit_reason != KVM_EXIT_IO || run->io.port != 0xf4 || run->io.direction != KVM_EXIT_IO_OUT || val != 42) {
		fprintf(stderr, "kvm-smoke: FAIL: exit_reason=%u port=%#x value=%u\n", run->exit_reason, run->io.port, val);
		return 1;
	}
	if (ioctl(vcpu, KVM_RUN, 0) < 0) DIE("KVM_RUN");
	if (run->exit_reason != KVM_EXIT_HLT) {
		fprintf(stderr, "kvm-smoke: FAIL: exit_reason=%u, wanted KVM_EXIT_HLT\n", run->exit_reason);
		return 1;
	}
	long n = argc > 1 ? atol(argv[1]) : 0;
	if (n > 0) {
		regs.rip = 0x1005;
		if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) DIE("KVM_SET_REGS");
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (long i = 0; i < n; i++)
			if (ioctl(vcpu, KVM_RUN, 0) < 0 || run->exit_reason != KVM_EXIT_IO) DIE("KVM_RUN loop");
		clock_gettime(CLOCK_MONOTONIC, &t1);
		double s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
		printf("kvm-smoke: %ld I/O exits in %.3f s = %.1f us each\n", n, s, s * 1e6 / n);
	}
	long m = argc > 2 ? atol(argv[2]) : 0;
	if (m > 0) {
		struct kvm_regs spin = { .rip = 0x1009, .rflags = 2, .rcx = (unsigned long)m };
		if (ioctl(vcpu, KVM_SET_REGS, &spin) < 0) DIE("KVM_SET_REGS");
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		if (ioctl(vcpu, KVM_RUN, 0) < 0) DIE("KVM_RUN spin");
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (run->exit_reason != KVM_EXIT_HLT) {
			fprintf(stderr, "kvm-smoke: FAIL: spin loop ended with exit_reason=%u\n", run->exit_reason);
			return 1;
		}
		double s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
		printf("kvm-smoke: guest spin loop: %ld iterations in %.3f s = %.1f M/s\n", m, s, m / s / 1e6);
	}
	printf("kvm-smoke: ok\n");
	return 0;
}
