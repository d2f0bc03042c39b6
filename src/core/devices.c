// SPDX-License-Identifier: GPL-2.0
/*
 * The platform: which device answers at which port or address. The order is
 * fixed and explicit (no constructor magic), because migration restores devices
 * in it: the UART, then virtio-mmio slot 0.. with the disks first and the
 * network cards after, each in command-line order.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "godwit/log.h"
#include "godwit/vm.h"
#include "godwit/x86_layout.h"

static void serial_io(void *opaque, struct bus_access *a)
{
	struct vm *vm = opaque;

	/* The 8250 has byte registers; a wider access touches the first one only. */
	if (a->is_write)
		serial8250__io_write(&vm->serial, (unsigned int)a->offset, a->data[0]);
	else
		serial8250__io_read(&vm->serial, (unsigned int)a->offset, &a->data[0]);
}

static void exit_port_io(void *opaque, struct bus_access *a)
{
	struct vm *vm = opaque;
	char why[64];
	unsigned int code;

	if (!a->is_write) {
		memset(a->data, 0, a->size);
		return;
	}
	code = a->data[0];
	snprintf(why, sizeof(why), "guest exited with code %u", code);
	vm__request_exit(vm, (int)code, why);
}

/* ACPI hardware-reduced sleep control, sleep status and reset registers. */
static void acpi_pm_io(void *opaque, struct bus_access *a)
{
	struct vm *vm = opaque;
	uint8_t v = a->data[0];

	if (!a->is_write) {
		memset(a->data, 0, a->size);
		return;
	}
	if (a->addr == ACPI_SLEEP_CTL_PORT && (v & ACPI_SLEEP_CTL_SLP_EN) &&
	    (v & ACPI_SLEEP_CTL_SLP_TYP_MASK) >> ACPI_SLEEP_CTL_SLP_TYP_SHIFT == ACPI_S5_SLP_TYP)
		vm__request_exit(vm, 0, "guest powered off");
	else if (a->addr == ACPI_RESET_PORT && v == ACPI_RESET_VALUE)
		vm__request_exit(vm, 0, "guest asked for a reset; godwit ends the VM");
}

static uint64_t slot_base(unsigned int slot)
{
	return VIRTIO_MMIO_BASE + (uint64_t)slot * VIRTIO_MMIO_SIZE;
}

unsigned int devices__acpi(const struct vm_config *cfg, struct acpi_virtio_mmio *out)
{
	unsigned int i, n = cfg->nr_disks + cfg->nr_nets;

	for (i = 0; i < n; i++)
		out[i] = (struct acpi_virtio_mmio){ .base = slot_base(i), .size = VIRTIO_MMIO_SIZE,
						    .gsi = VIRTIO_MMIO_GSI_BASE + i };
	return n;
}

/* The device's interrupt: an edge on its GSI, through the irqfd. */
static void vdev_raise(void *opaque)
{
	struct vdev *d = opaque;
	uint64_t one = 1;

	if (write(d->irq_fd, &one, sizeof(one)) < 0)
		pr_debug("virtio slot %u: cannot signal the interrupt", d->slot);
}

static int open_disk(struct vm *vm, unsigned int i)
{
	struct vm_preopened *pre = vm->cfg.pre;
	struct vdev *d = &vm->vdevs[vm->nr_vdevs];
	char name[32];
	int ret;

	snprintf(name, sizeof(name), "virtio-blk%u", i);
	*d = (struct vdev){ .type = VDEV_BLK, .slot = vm->nr_vdevs, .instance = i, .irq_fd = -1 };
	d->blk = calloc(1, sizeof(*d->blk));
	if (!d->blk)
		return -ENOMEM;
	ret = virtio_blk__init(d->blk, &vm->mem,
			       &(struct virtio_blk_opts){ .path = vm->cfg.disks[i].path,
							  .readonly = vm->cfg.disks[i].readonly,
							  .name = name,
							  .defer_lock = vm->cfg.incoming,
							  .fd = pre && pre->disk_fd[i] >= 0
									? &pre->disk_fd[i]
									: NULL },
			       vdev_raise, d);
	if (ret) {
		free(d->blk);
		return ret;
	}
	d->mmio = &d->blk->mmio;
	vm->nr_vdevs++;
	return 0;
}

static int open_net(struct vm *vm, unsigned int i)
{
	const struct vm_net_cfg *c = &vm->cfg.nets[i];
	struct vm_preopened *pre = vm->cfg.pre;
	struct vdev *d = &vm->vdevs[vm->nr_vdevs];
	struct virtio_net_params p = { .have_mac = c->have_mac };
	char name[32];
	int ret = 0;

	snprintf(name, sizeof(name), "virtio-net%u", i);
	*d = (struct vdev){ .type = VDEV_NET, .slot = vm->nr_vdevs, .instance = i, .irq_fd = -1 };
	if (pre && pre->tap[i].fd >= 0) {
		d->tap = pre->tap[i];
		pre->tap[i].fd = -1;
	} else {
		ret = tap__open(&d->tap, c->tap, TAP_ATTACH);
	}
	if (ret)
		return ret;
	d->tap_open = true;
	tap__backend(&d->tap, &p.backend);
	memcpy(p.mac, c->mac, sizeof(p.mac));
	d->net = calloc(1, sizeof(*d->net));
	ret = d->net ? virtio_net__init(d->net, &vm->mem, name, &p, vdev_raise, d) : -ENOMEM;
	if (ret) {
		free(d->net);
		tap__close(&d->tap);
		return ret;
	}
	d->mmio = &d->net->mmio;
	vm->nr_vdevs++;
	return 0;
}

int devices__open(struct vm *vm)
{
	unsigned int i;
	int ret = 0;

	for (i = 0; !ret && i < vm->cfg.nr_disks; i++)
		ret = open_disk(vm, i);
	for (i = 0; !ret && i < vm->cfg.nr_nets; i++)
		ret = open_net(vm, i);
	if (ret)
		devices__exit(vm);
	return ret;
}

static int connect_vdev(struct vm *vm, struct vdev *d)
{
	uint64_t base = slot_base(d->slot);
	unsigned int q;
	int fd, ret;

	d->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (d->irq_fd < 0)
		return -errno;
	ret = kvm__irqfd(&vm->kvm, d->irq_fd, VIRTIO_MMIO_GSI_BASE + d->slot);
	if (ret) {
		pr_err("virtio slot %u: KVM_IRQFD: %s", d->slot, strerror(-ret));
		return ret;
	}
	ret = bus__register(&vm->mmio, &(struct bus_device){ base, VIRTIO_MMIO_SIZE,
			    virtio_mmio__access, d->mmio, d->type == VDEV_BLK ? "virtio-blk" :
			    "virtio-net" });
	/* Queue notifications reach the device thread without a vCPU exit. */
	for (q = 0; !ret && (fd = virtio_mmio__queue_notify_fd(d->mmio, q)) >= 0; q++) {
		ret = kvm__ioeventfd(&vm->kvm, fd, base + VIRTIO_MMIO_QUEUE_NOTIFY, 4, q);
		if (ret)
			pr_err("virtio slot %u: KVM_IOEVENTFD: %s", d->slot, strerror(-ret));
	}
	if (!ret && d->type == VDEV_NET)
		ret = virtio_net__start(d->net);
	return ret;
}

int devices__init(struct vm *vm)
{
	const struct bus_device pio[] = {
		{ COM1_PORT, COM1_LEN, serial_io, vm, "serial (COM1)" },
		{ EXIT_PORT, 4, exit_port_io, vm, "exit port" },
		{ ACPI_SLEEP_CTL_PORT, 3, acpi_pm_io, vm, "ACPI sleep/reset registers" },
	};
	unsigned int i;
	int ret;

	for (i = 0; i < ARRAY_SIZE(pio); i++) {
		ret = bus__register(&vm->pio, &pio[i]);
		if (ret)
			return ret;
	}
	for (i = 0; i < vm->nr_vdevs; i++) {
		ret = connect_vdev(vm, &vm->vdevs[i]);
		if (ret)
			return ret;
	}
	return 0;
}

void devices__exit(struct vm *vm)
{
	unsigned int i;

	for (i = 0; i < vm->nr_vdevs; i++) {
		struct vdev *d = &vm->vdevs[i];

		if (d->blk) {
			virtio_blk__exit(d->blk);
			free(d->blk);
		}
		if (d->net) {
			virtio_net__exit(d->net);
			free(d->net);
		}
		if (d->tap_open)
			tap__close(&d->tap);
		if (d->irq_fd >= 0)
			close(d->irq_fd);
	}
	vm->nr_vdevs = 0;
}

void devices__quiesce(struct vm *vm)
{
	unsigned int i;

	for (i = 0; i < vm->nr_vdevs; i++) {
		if (vm->vdevs[i].blk)
			virtio_blk__quiesce(vm->vdevs[i].blk);
		else
			virtio_net__quiesce(vm->vdevs[i].net);
	}
}

void devices__resume(struct vm *vm)
{
	unsigned int i;

	for (i = 0; i < vm->nr_vdevs; i++) {
		if (vm->vdevs[i].blk)
			virtio_blk__resume(vm->vdevs[i].blk);
		else
			virtio_net__resume(vm->vdevs[i].net);
	}
}

/*
 * All or none: after a failed release the VM runs on here, so the locks released
 * before the failure are taken back. One that cannot be (another process took the
 * image in between) stays unlocked; devices__disks_locked() tells the caller, which
 * must then keep the guest from running.
 */
int devices__release_disks(struct vm *vm)
{
	struct virtio_blk *b;
	unsigned int i, j;
	int ret;

	for (i = 0; i < vm->nr_vdevs; i++) {
		if (!vm->vdevs[i].blk)
			continue;
		ret = virtio_blk__release_lock(vm->vdevs[i].blk);
		if (ret)
			goto err_take_back;
	}
	return 0;

err_take_back:
	pr_err("%s: cannot release its disk image's lock (%s); taking back those released",
	       vm->vdevs[i].blk->name, strerror(-ret));
	for (j = 0; j < i; j++) {
		b = vm->vdevs[j].blk;
		if (b && virtio_blk__take_lock(b))
			pr_err("%s: its disk image %s is now unlocked", b->name, b->disk.path);
	}
	return ret;
}

bool devices__disks_locked(const struct vm *vm)
{
	unsigned int i;

	for (i = 0; i < vm->nr_vdevs; i++)
		if (vm->vdevs[i].blk && !vm->vdevs[i].blk->disk.locked)
			return false;
	return true;
}

int devices__take_disks(struct vm *vm)
{
	unsigned int i;
	int ret;

	for (i = 0; i < vm->nr_vdevs; i++) {
		if (!vm->vdevs[i].blk)
			continue;
		ret = virtio_blk__take_lock(vm->vdevs[i].blk);
		if (ret)
			return ret;
	}
	return 0;
}

struct virtio_blk *devices__disk(struct vm *vm, unsigned int id)
{
	unsigned int i;

	for (i = 0; i < vm->nr_vdevs; i++)
		if (vm->vdevs[i].blk && vm->vdevs[i].instance == id)
			return vm->vdevs[i].blk;
	return NULL;
}

int devices__disk_moving(struct vm *vm)
{
	unsigned int i;

	for (i = 0; i < vm->nr_vdevs; i++)
		if (vm->vdevs[i].blk && virtio_blk__moving(vm->vdevs[i].blk))
			return (int)vm->vdevs[i].instance;
	return -1;
}

void devices__announce(struct vm *vm)
{
	unsigned int i;

	for (i = 0; i < vm->nr_vdevs; i++)
		if (vm->vdevs[i].net)
			virtio_net__announce(vm->vdevs[i].net);
}

/*
 * After a restore: a request the guest queued and notified on the source, but
 * that the source had not started when it quiesced, waits in the ring. The guest
 * will not notify again, so every queue is looked at once here.
 */
void devices__kick(struct vm *vm)
{
	uint64_t one = 1;
	unsigned int i, q;
	int fd;

	for (i = 0; i < vm->nr_vdevs; i++)
		for (q = 0; (fd = virtio_mmio__queue_notify_fd(vm->vdevs[i].mmio, q)) >= 0; q++)
			if (write(fd, &one, sizeof(one)) < 0)
				pr_debug("virtio slot %u: cannot kick queue %u", vm->vdevs[i].slot, q);
}
