// SPDX-License-Identifier: GPL-2.0
/*
 * The serial console's host side: output to stdout or a file; input from stdin,
 * pushed into the UART only as fast as it takes it, so no byte is ever dropped.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "godwit/log.h"
#include "godwit/vm.h"
#include "godwit/x86_layout.h"

static void console_set_irq(void *opaque, int level)
{
	struct vm *vm = opaque;

	if (kvm__irq_line(&vm->kvm, COM1_IRQ, level))
		pr_debug("cannot set the serial IRQ line");
}

static void console_write(void *opaque, const uint8_t *buf, size_t len)
{
	struct vm *vm = opaque;
	ssize_t n;

	while (len > 0) {
		n = write(vm->console_fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* a closed console loses output, never the VM */
		buf += n;
		len -= (size_t)n;
	}
}

static const struct serial8250_ops console_ops = {
	.set_irq = console_set_irq,
	.write_out = console_write,
};

/* Waits up to ms for the stop eventfd; true if it fired. */
static bool input_stopped(struct vm *vm, int ms)
{
	struct pollfd p = { .fd = vm->input_stop_fd, .events = POLLIN };

	return poll(&p, 1, ms) > 0;
}

static bool push_all(struct vm *vm, const uint8_t *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		done += serial8250__push_input(&vm->serial, buf + done, len - done);
		if (done < len && input_stopped(vm, 1))
			return false;
	}
	return true;
}

static void *input_thread(void *arg)
{
	struct vm *vm = arg;
	struct pollfd p[2] = {
		{ .fd = STDIN_FILENO, .events = POLLIN },
		{ .fd = vm->input_stop_fd, .events = POLLIN },
	};
	uint8_t buf[4096];
	ssize_t n;

	for (;;) {
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (!p[0].revents)
			continue;
		n = read(STDIN_FILENO, buf, sizeof(buf));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			break; /* end of input: the guest simply gets no more */
		if (!push_all(vm, buf, (size_t)n))
			break;
	}
	return NULL;
}

int console__open_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	int err;

	if (fd >= 0)
		return fd;
	err = errno;
	pr_err("--console file:%s: %s", path, strerror(err));
	return -err;
}

int console__init(struct vm *vm)
{
	struct vm_preopened *pre = vm->cfg.pre;
	int ret;

	vm->console_fd = STDOUT_FILENO;
	if (vm->cfg.console == CONSOLE_FILE && pre && pre->console_fd >= 0) {
		vm->console_fd = pre->console_fd;
		pre->console_fd = -1;
	} else if (vm->cfg.console == CONSOLE_FILE) {
		vm->console_fd = console__open_file(vm->cfg.console_path);
		if (vm->console_fd < 0)
			return vm->console_fd;
	}
	ret = serial8250__init(&vm->serial, &console_ops, vm);
	if (ret)
		goto err_close;
	vm->input_stop_fd = eventfd(0, EFD_CLOEXEC);
	if (vm->input_stop_fd < 0) {
		ret = -errno;
		goto err_serial;
	}
	return 0;

err_serial:
	serial8250__exit(&vm->serial);
err_close:
	if (vm->console_fd != STDOUT_FILENO)
		close(vm->console_fd);
	vm->console_fd = -1;
	return ret;
}

int console__start_input(struct vm *vm)
{
	int ret = -pthread_create(&vm->input_thread, NULL, input_thread, vm);

	if (!ret) {
		pthread_setname_np(vm->input_thread, "console-in");
		vm->input_started = true;
	}
	return ret;
}

void console__exit(struct vm *vm)
{
	uint64_t one = 1;

	if (vm->input_started) {
		if (write(vm->input_stop_fd, &one, sizeof(one)) < 0)
			pr_debug("cannot stop the console input thread");
		pthread_join(vm->input_thread, NULL);
		vm->input_started = false;
	}
	if (vm->input_stop_fd >= 0)
		close(vm->input_stop_fd);
	vm->input_stop_fd = -1;
	serial8250__exit(&vm->serial);
	if (vm->console_fd >= 0 && vm->console_fd != STDOUT_FILENO)
		close(vm->console_fd);
	vm->console_fd = -1;
}
