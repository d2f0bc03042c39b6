// SPDX-License-Identifier: GPL-2.0
/*
 * The disks' hand-over locks across all of a VM's disks (devices__release_disks),
 * without KVM: the disks are real virtio-blk devices on temporary images, their
 * locks real OFD locks, looked at from another open file description as another
 * process would see them. The test is linked with --wrap=fcntl: a release can be
 * made to fail on one image, and another "process" can take an image the moment it
 * is free, which no real failure lets a test arrange on cue. And a disk built on an
 * image opened before (godwit receive's struct vm_preopened).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "godwit/vm.h"

#define NR_DISKS 3

int __real_fcntl(int fd, int cmd, ...);
int __wrap_fcntl(int fd, int cmd, ...);

static struct {
	int fail_unlock_fd; /* F_UNLCK on this fd fails with ENOLCK */
	int grab_fd;	    /* ... and then this fd takes a write lock on its image */
} fault = { -1, -1 };

static int ofd_lock(int fd, short type)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET };

	return __real_fcntl(fd, F_OFD_SETLK, &fl);
}

int __wrap_fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (cmd == F_OFD_SETLK && fd == fault.fail_unlock_fd &&
	    ((struct flock *)arg)->l_type == F_UNLCK) {
		if (fault.grab_fd >= 0 && ofd_lock(fault.grab_fd, F_WRLCK))
			fail_msg("could not take the freed image: %s", strerror(errno));
		errno = ENOLCK;
		return -1;
	}
	return __real_fcntl(fd, cmd, arg);
}

struct fx {
	struct vm *vm;
	char path[NR_DISKS][64];
};

/* Does another open file description find the image locked? */
static bool locked_elsewhere(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	bool locked;

	assert_true(fd >= 0);
	locked = ofd_lock(fd, F_WRLCK) != 0;
	if (locked)
		assert_true(errno == EAGAIN || errno == EACCES);
	close(fd);
	return locked;
}

static int disk_fd(struct fx *f, unsigned int i)
{
	return f->vm->vdevs[i].blk->disk.fd;
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	unsigned int i;
	int fd;

	assert_non_null(f);
	f->vm = calloc(1, sizeof(*f->vm));
	assert_non_null(f->vm);
	for (i = 0; i < NR_DISKS; i++) {
		snprintf(f->path[i], sizeof(f->path[i]), "/tmp/godwit-devices-XXXXXX");
		fd = mkstemp(f->path[i]);
		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, 1 * MiB), 0);
		close(fd);
		assert_int_equal(config__add_disk(&f->vm->cfg, f->path[i]), 0);
	}
	assert_int_equal(devices__open(f->vm), 0);
	assert_int_equal(f->vm->nr_vdevs, NR_DISKS);
	for (i = 0; i < NR_DISKS; i++)
		assert_true(locked_elsewhere(f->path[i]));
	fault.fail_unlock_fd = fault.grab_fd = -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	unsigned int i;

	if (fault.grab_fd >= 0)
		close(fault.grab_fd);
	fault.fail_unlock_fd = fault.grab_fd = -1;
	devices__exit(f->vm);
	config__free(&f->vm->cfg);
	for (i = 0; i < NR_DISKS; i++)
		unlink(f->path[i]);
	free(f->vm);
	free(f);
	return 0;
}

static void test_release_and_take_every_disk(void **state)
{
	struct fx *f = *state;
	unsigned int i;

	assert_int_equal(devices__release_disks(f->vm), 0);
	assert_false(devices__disks_locked(f->vm));
	for (i = 0; i < NR_DISKS; i++)
		assert_false(locked_elsewhere(f->path[i]));
	assert_int_equal(devices__take_disks(f->vm), 0);
	assert_true(devices__disks_locked(f->vm));
	for (i = 0; i < NR_DISKS; i++)
		assert_true(locked_elsewhere(f->path[i]));
}

/* The last disk's lock cannot be released: the two released before are taken back. */
static void test_failed_release_takes_the_others_back(void **state)
{
	struct fx *f = *state;
	unsigned int i;

	fault.fail_unlock_fd = disk_fd(f, NR_DISKS - 1);
	assert_int_equal(devices__release_disks(f->vm), -ENOLCK);
	assert_true(devices__disks_locked(f->vm));
	for (i = 0; i < NR_DISKS; i++)
		assert_true(locked_elsewhere(f->path[i]));
}

/*
 * Another process takes the first image while the last one fails to release: that
 * lock cannot be taken back, and the caller is told so (the VM must not run on).
 */
static void test_lock_that_cannot_be_taken_back_is_reported(void **state)
{
	struct fx *f = *state;

	fault.grab_fd = open(f->path[0], O_RDWR | O_CLOEXEC);
	assert_true(fault.grab_fd >= 0);
	fault.fail_unlock_fd = disk_fd(f, NR_DISKS - 1);
	assert_int_equal(devices__release_disks(f->vm), -ENOLCK);
	assert_false(devices__disks_locked(f->vm));
	assert_false(f->vm->vdevs[0].blk->disk.locked);
	assert_true(f->vm->vdevs[1].blk->disk.locked);
	assert_true(locked_elsewhere(f->path[1]));
	assert_true(locked_elsewhere(f->path[2]));

	/* Once the other process lets go, the disks can be taken (the source's take_back). */
	close(fault.grab_fd);
	fault.grab_fd = -1;
	fault.fail_unlock_fd = -1;
	assert_int_equal(devices__take_disks(f->vm), 0);
	assert_true(devices__disks_locked(f->vm));
}

/*
 * `godwit receive` opens its images before it knows the VM (struct vm_preopened): the
 * disk takes the image it was given, and refuses one it can only read if it writes.
 */
static void test_disk_takes_the_image_opened_before(void **state)
{
	struct fx *f = *state;
	struct vm_preopened pre = { .console_fd = -1 };
	struct vm *vm = calloc(1, sizeof(*vm));
	unsigned int i;
	int fd;

	assert_non_null(vm);
	for (i = 0; i < VM_MAX_DISKS; i++)
		pre.disk_fd[i] = -1;
	for (i = 0; i < VM_MAX_NETS; i++)
		pre.tap[i].fd = -1;
	vm->cfg.pre = &pre;
	vm->cfg.incoming = true;
	assert_int_equal(config__add_disk(&vm->cfg, f->path[0]), 0);

	pre.disk_fd[0] = open(f->path[0], O_RDONLY | O_CLOEXEC);
	assert_true(pre.disk_fd[0] >= 0);
	assert_int_equal(devices__open(vm), -EROFS);
	assert_int_equal(pre.disk_fd[0], -1);
	assert_int_equal(vm->nr_vdevs, 0);

	fd = pre.disk_fd[0] = open(f->path[0], O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	vm->cfg.disks[0].readonly = true;
	assert_int_equal(devices__open(vm), 0);
	assert_int_equal(pre.disk_fd[0], -1);
	assert_int_equal(vm->vdevs[0].blk->disk.fd, fd);
	assert_false(vm->vdevs[0].blk->disk.locked); /* incoming: locked at the hand-over */
	vm__preopened_close(&pre);
	devices__exit(vm);
	config__free(&vm->cfg);
	free(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_release_and_take_every_disk, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_release_takes_the_others_back, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_lock_that_cannot_be_taken_back_is_reported,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_disk_takes_the_image_opened_before, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
