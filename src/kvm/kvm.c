// SPDX-License-Identifier: GPL-2.0
/*
 * The only file that calls ioctl() on KVM. Every wrapper returns 0 or -errno so
 * that callers never look at errno themselves.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "godwit/kvm.h"
#include "godwit/log.h"

/* Where the in-kernel TSS and identity map live: inside the 32-bit MMIO hole. */
#define KVM_TSS_ADDR	      0xfffbd000ULL
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000ULL

static int xioctl(int fd, unsigned long req, const void *arg)
{
	int r;

	do {
		r = ioctl(fd, req, arg);
	} while (r < 0 && errno == EINTR && req != KVM_RUN);
	return r < 0 ? -errno : r;
}

static const char *kvm_device_path(void)
{
	const char *p = getenv("GODWIT_KVM_DEVICE");

	return p && *p ? p : KVM_DEVICE_DEFAULT;
}

static int open_device(struct kvm *kvm)
{
	const char *path = kvm_device_path();

	kvm->sys_fd = open(path, O_RDWR | O_CLOEXEC);
	if (kvm->sys_fd >= 0) {
		struct stat st;

		if (!fstat(kvm->sys_fd, &st) && S_ISCHR(st.st_mode))
			return 0;
		pr_err("%s: not a KVM device (not a character device)", path);
		close(kvm->sys_fd);
		kvm->sys_fd = -1;
		return -ENODEV;
	}
	switch (errno) {
	case ENOENT:
	case ENODEV:
	case ENXIO:
		pr_err("%s: no KVM on this host (%s): load the kvm module or run on a host "
		       "with KVM",
		       path, strerror(errno));
		return -ENODEV;
	case EACCES:
	case EPERM:
		pr_err("%s: permission denied: run as root or add your user to the kvm group",
		       path);
		return -EACCES;
	default:
		pr_err("%s: %s", path, strerror(errno));
		return -errno;
	}
}

static int check_caps(struct kvm *kvm)
{
	static const struct {
		int cap;
		const char *name;
	} needed[] = {
		{ KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP" },
		{ KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY" },
		{ KVM_CAP_PIT2, "KVM_CAP_PIT2" },
		{ KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2" },
		{ KVM_CAP_ADJUST_CLOCK, "KVM_CAP_ADJUST_CLOCK" },
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(needed); i++) {
		if (xioctl(kvm->sys_fd, KVM_CHECK_EXTENSION, (void *)(long)needed[i].cap) <= 0) {
			pr_err("this KVM lacks %s, which godwit needs", needed[i].name);
			return -ENOTSUP;
		}
	}
	kvm->max_vcpus = xioctl(kvm->sys_fd, KVM_CHECK_EXTENSION, (void *)KVM_CAP_MAX_VCPUS);
	if (kvm->max_vcpus <= 0)
		kvm->max_vcpus = 1;
	return 0;
}

/*
 * Manual clear, and where KVM has it, a log that starts all set: turning logging on
 * then write-protects nothing, and the first pass arms the log piece by piece
 * (ram.c), instead of KVM walking the whole slot at once while the vCPUs wait.
 */
static int enable_manual_dirty_clear(struct kvm *kvm)
{
	int have = xioctl(kvm->sys_fd, KVM_CHECK_EXTENSION, (void *)KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
		.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE,
	};
	int ret;

	if (have > 0 && (have & KVM_DIRTY_LOG_INITIALLY_SET))
		cap.args[0] |= KVM_DIRTY_LOG_INITIALLY_SET;
	ret = xioctl(kvm->vm_fd, KVM_ENABLE_CAP, &cap);
	if (!ret)
		kvm->dirty_log_init_set = cap.args[0] & KVM_DIRTY_LOG_INITIALLY_SET;
	return ret;
}

bool kvm__host_is_pvm(void)
{
	/* kvm_pvm registers its module parameters; hardware KVM has kvm_intel/kvm_amd. */
	return access("/sys/module/kvm_pvm/parameters", F_OK) == 0 &&
	       access("/sys/module/kvm_intel", F_OK) != 0 && access("/sys/module/kvm_amd", F_OK) != 0;
}

int kvm__open(struct kvm *kvm)
{
	int ret;

	kvm->vm_fd = -1;
	ret = open_device(kvm);
	if (ret)
		return ret;
	ret = xioctl(kvm->sys_fd, KVM_GET_API_VERSION, NULL);
	if (ret != KVM_API_VERSION) {
		pr_err("KVM API version %d, godwit needs %d", ret, KVM_API_VERSION);
		ret = -ENOTSUP;
		goto err_close;
	}
	ret = check_caps(kvm);
	if (ret)
		goto err_close;
	kvm->vcpu_mmap_size = xioctl(kvm->sys_fd, KVM_GET_VCPU_MMAP_SIZE, NULL);
	if (kvm->vcpu_mmap_size <= 0) {
		ret = kvm->vcpu_mmap_size < 0 ? kvm->vcpu_mmap_size : -EINVAL;
		goto err_close;
	}
	ret = xioctl(kvm->sys_fd, KVM_CREATE_VM, NULL);
	if (ret < 0) {
		pr_err("KVM_CREATE_VM: %s", strerror(-ret));
		goto err_close;
	}
	kvm->vm_fd = ret;
	ret = enable_manual_dirty_clear(kvm);
	if (ret) {
		pr_err("cannot enable manual dirty-log clearing: %s", strerror(-ret));
		goto err_close_vm;
	}
	kvm->is_pvm = kvm__host_is_pvm();
	return 0;

err_close_vm:
	close(kvm->vm_fd);
	kvm->vm_fd = -1;
err_close:
	close(kvm->sys_fd);
	kvm->sys_fd = -1;
	return ret;
}

void kvm__close(struct kvm *kvm)
{
	if (kvm->vm_fd >= 0)
		close(kvm->vm_fd);
	if (kvm->sys_fd >= 0)
		close(kvm->sys_fd);
	kvm->vm_fd = kvm->sys_fd = -1;
}

int kvm__create_irqchip(struct kvm *kvm)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	uint64_t idmap = KVM_IDENTITY_MAP_ADDR;
	int ret;

	/* Needed on Intel VMX for real mode; harmless elsewhere. */
	ret = xioctl(kvm->vm_fd, KVM_SET_TSS_ADDR, (void *)(unsigned long)KVM_TSS_ADDR);
	if (ret && ret != -ENOTTY && ret != -EINVAL)
		return ret;
	ret = xioctl(kvm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &idmap);
	if (ret && ret != -ENOTTY && ret != -EINVAL)
		return ret;
	ret = xioctl(kvm->vm_fd, KVM_CREATE_IRQCHIP, NULL);
	if (ret) {
		pr_err("KVM_CREATE_IRQCHIP: %s", strerror(-ret));
		return ret;
	}
	ret = xioctl(kvm->vm_fd, KVM_CREATE_PIT2, &pit);
	if (ret)
		pr_err("KVM_CREATE_PIT2: %s", strerror(-ret));
	return ret;
}

int kvm__set_memory(struct kvm *kvm, uint32_t slot, uint64_t gpa, uint64_t size, void *hva,
		    int log_dirty)
{
	struct kvm_userspace_memory_region r = {
		.slot = slot,
		.flags = log_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0,
		.guest_phys_addr = gpa,
		.memory_size = size,
		.userspace_addr = (uint64_t)(unsigned long)hva,
	};

	return xioctl(kvm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r);
}

int kvm__irq_line(struct kvm *kvm, uint32_t irq, int level)
{
	struct kvm_irq_level l = { .irq = irq, .level = level };

	return xioctl(kvm->vm_fd, KVM_IRQ_LINE, &l);
}

int kvm__irqfd(struct kvm *kvm, int fd, uint32_t gsi)
{
	struct kvm_irqfd irqfd = { .fd = (uint32_t)fd, .gsi = gsi };

	return xioctl(kvm->vm_fd, KVM_IRQFD, &irqfd);
}

int kvm__ioeventfd(struct kvm *kvm, int fd, uint64_t addr, uint32_t len, uint64_t datamatch)
{
	struct kvm_ioeventfd io = {
		.datamatch = datamatch,
		.addr = addr,
		.len = len,
		.fd = fd,
		.flags = KVM_IOEVENTFD_FLAG_DATAMATCH,
	};

	return xioctl(kvm->vm_fd, KVM_IOEVENTFD, &io);
}

int kvm__get_dirty_log(struct kvm *kvm, uint32_t slot, unsigned long *bitmap)
{
	struct kvm_dirty_log log = { .slot = slot, .dirty_bitmap = bitmap };

	return xioctl(kvm->vm_fd, KVM_GET_DIRTY_LOG, &log);
}

int kvm__clear_dirty_log(struct kvm *kvm, uint32_t slot, uint64_t first_page, uint32_t num_pages,
			 unsigned long *bitmap)
{
	struct kvm_clear_dirty_log c = {
		.slot = slot,
		.num_pages = num_pages,
		.first_page = first_page,
		.dirty_bitmap = bitmap,
	};

	return xioctl(kvm->vm_fd, KVM_CLEAR_DIRTY_LOG, &c);
}

int kvm__supported_cpuid(struct kvm *kvm, struct kvm_cpuid2 **out)
{
	unsigned int n = 128;
	struct kvm_cpuid2 *c;
	int ret;

	for (;;) {
		c = calloc(1, sizeof(*c) + n * sizeof(c->entries[0]));
		if (!c)
			return -ENOMEM;
		c->nent = n;
		ret = xioctl(kvm->sys_fd, KVM_GET_SUPPORTED_CPUID, c);
		if (ret != -E2BIG || n >= 4096)
			break;
		free(c);
		n *= 2;
	}
	if (ret) {
		free(c);
		return ret;
	}
	*out = c;
	return 0;
}

int kvm__msr_index_list(struct kvm *kvm, struct kvm_msr_list **out)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *list;
	int ret;

	/* The first call fails with E2BIG and says how many there are. */
	ret = xioctl(kvm->sys_fd, KVM_GET_MSR_INDEX_LIST, &probe);
	if (ret && ret != -E2BIG)
		return ret;
	list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(list->indices[0]));
	if (!list)
		return -ENOMEM;
	list->nmsrs = probe.nmsrs;
	ret = xioctl(kvm->sys_fd, KVM_GET_MSR_INDEX_LIST, list);
	if (ret) {
		free(list);
		return ret;
	}
	*out = list;
	return 0;
}

int kvm__get_irqchip(struct kvm *kvm, struct kvm_irqchip *chip)
{
	return xioctl(kvm->vm_fd, KVM_GET_IRQCHIP, chip);
}

int kvm__set_irqchip(struct kvm *kvm, struct kvm_irqchip *chip)
{
	return xioctl(kvm->vm_fd, KVM_SET_IRQCHIP, chip);
}

int kvm__get_pit(struct kvm *kvm, struct kvm_pit_state2 *pit)
{
	return xioctl(kvm->vm_fd, KVM_GET_PIT2, pit);
}

int kvm__set_pit(struct kvm *kvm, struct kvm_pit_state2 *pit)
{
	return xioctl(kvm->vm_fd, KVM_SET_PIT2, pit);
}

int kvm__get_clock(struct kvm *kvm, struct kvm_clock_data *clock)
{
	return xioctl(kvm->vm_fd, KVM_GET_CLOCK, clock);
}

int kvm__set_clock(struct kvm *kvm, struct kvm_clock_data *clock)
{
	return xioctl(kvm->vm_fd, KVM_SET_CLOCK, clock);
}

int kvm__create_vcpu(struct kvm *kvm, unsigned int id, struct kvm_vcpu_fd *vcpu)
{
	int ret = xioctl(kvm->vm_fd, KVM_CREATE_VCPU, (void *)(unsigned long)id);

	if (ret < 0) {
		pr_err("KVM_CREATE_VCPU %u: %s", id, strerror(-ret));
		return ret;
	}
	vcpu->fd = ret;
	vcpu->mmap_size = kvm->vcpu_mmap_size;
	vcpu->run = mmap(NULL, (size_t)vcpu->mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED,
			 vcpu->fd, 0);
	if (vcpu->run == MAP_FAILED) {
		ret = -errno;
		close(vcpu->fd);
		vcpu->fd = -1;
		vcpu->run = NULL;
		return ret;
	}
	return 0;
}

/* A counter's place: the descriptors follow the header, each with its name inline. */
static int stat_find(int fd, const char *name, uint64_t *offset)
{
	struct kvm_stats_header h;
	struct kvm_stats_desc *d;
	size_t dsize;
	uint32_t i;
	int ret = -ENOENT;

	if (pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
		return -EIO;
	if (!h.name_size || h.name_size > 4096 || h.num_desc > 4096)
		return -EINVAL;
	dsize = sizeof(*d) + h.name_size;
	d = malloc(dsize);
	if (!d)
		return -ENOMEM;
	for (i = 0; i < h.num_desc && ret == -ENOENT; i++) {
		if (pread(fd, d, dsize, (off_t)(h.desc_offset + i * dsize)) != (ssize_t)dsize) {
			ret = -EIO;
			break;
		}
		d->name[h.name_size - 1] = '\0';
		if (strcmp(d->name, name) || d->size != 1 ||
		    (d->flags & KVM_STATS_TYPE_MASK) != KVM_STATS_TYPE_CUMULATIVE)
			continue;
		*offset = h.data_offset + d->offset;
		ret = 0;
	}
	free(d);
	return ret;
}

int kvm_vcpu__stat_open(struct kvm_vcpu_fd *v, const char *name, struct kvm_vcpu_stat *st)
{
	int fd = xioctl(v->fd, KVM_GET_STATS_FD, NULL), ret;

	st->fd = -1;
	if (fd < 0)
		return fd;
	ret = stat_find(fd, name, &st->offset);
	if (ret) {
		close(fd);
		return ret;
	}
	st->fd = fd;
	return 0;
}

int kvm_vcpu__stat_read(const struct kvm_vcpu_stat *st, uint64_t *val)
{
	if (st->fd < 0)
		return -ENOENT;
	return pread(st->fd, val, sizeof(*val), (off_t)st->offset) == (ssize_t)sizeof(*val) ? 0
											   : -EIO;
}

void kvm_vcpu__stat_close(struct kvm_vcpu_stat *st)
{
	if (st->fd >= 0)
		close(st->fd);
	st->fd = -1;
}

void kvm__destroy_vcpu(struct kvm_vcpu_fd *vcpu)
{
	if (vcpu->run)
		munmap(vcpu->run, (size_t)vcpu->mmap_size);
	if (vcpu->fd >= 0)
		close(vcpu->fd);
	vcpu->run = NULL;
	vcpu->fd = -1;
}

int kvm_vcpu__run(struct kvm_vcpu_fd *vcpu)
{
	return xioctl(vcpu->fd, KVM_RUN, NULL);
}

int kvm_vcpu__complete_pending(struct kvm_vcpu_fd *vcpu)
{
	int ret;

	__atomic_store_n(&vcpu->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	ret = xioctl(vcpu->fd, KVM_RUN, NULL);
	return ret == -EINTR ? 0 : ret;
}

void kvm_vcpu__clock_stopped(struct kvm_vcpu_fd *vcpu)
{
	if (xioctl(vcpu->fd, KVM_KVMCLOCK_CTRL, NULL))
		pr_debug("KVM_KVMCLOCK_CTRL refused (the guest uses no kvmclock?)");
}

#define VCPU_ACCESSORS(name, type, get, set)                                  \
	int kvm_vcpu__get_##name(struct kvm_vcpu_fd *v, type *p)               \
	{                                                                      \
		return xioctl(v->fd, get, p);                                  \
	}                                                                      \
	int kvm_vcpu__set_##name(struct kvm_vcpu_fd *v, const type *p)         \
	{                                                                      \
		return xioctl(v->fd, set, p);                                  \
	}

VCPU_ACCESSORS(regs, struct kvm_regs, KVM_GET_REGS, KVM_SET_REGS)
VCPU_ACCESSORS(sregs, struct kvm_sregs, KVM_GET_SREGS, KVM_SET_SREGS)
VCPU_ACCESSORS(fpu, struct kvm_fpu, KVM_GET_FPU, KVM_SET_FPU)
VCPU_ACCESSORS(xsave, struct kvm_xsave, KVM_GET_XSAVE, KVM_SET_XSAVE)
VCPU_ACCESSORS(xcrs, struct kvm_xcrs, KVM_GET_XCRS, KVM_SET_XCRS)
VCPU_ACCESSORS(lapic, struct kvm_lapic_state, KVM_GET_LAPIC, KVM_SET_LAPIC)
VCPU_ACCESSORS(events, struct kvm_vcpu_events, KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS)
VCPU_ACCESSORS(debugregs, struct kvm_debugregs, KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS)
VCPU_ACCESSORS(mp_state, struct kvm_mp_state, KVM_GET_MP_STATE, KVM_SET_MP_STATE)

int kvm_vcpu__get_msrs(struct kvm_vcpu_fd *v, struct kvm_msrs *msrs)
{
	int ret = xioctl(v->fd, KVM_GET_MSRS, msrs);

	/* KVM returns how many MSRs it processed; anything short is an error to us. */
	if (ret >= 0 && (uint32_t)ret != msrs->nmsrs)
		return -EINVAL;
	return ret < 0 ? ret : 0;
}

int kvm_vcpu__set_msrs(struct kvm_vcpu_fd *v, const struct kvm_msrs *msrs)
{
	int ret = xioctl(v->fd, KVM_SET_MSRS, msrs);

	if (ret >= 0 && (uint32_t)ret != msrs->nmsrs)
		return -EINVAL;
	return ret < 0 ? ret : 0;
}

int kvm_vcpu__set_cpuid(struct kvm_vcpu_fd *v, struct kvm_cpuid2 *cpuid)
{
	return xioctl(v->fd, KVM_SET_CPUID2, cpuid);
}
