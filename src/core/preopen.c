// SPDX-License-Identifier: GPL-2.0
/*
 * The backends of a VM not built yet (struct vm_preopened): opened, each with the
 * error message vm__create would give, and held until vm__create takes them.
 */
#include <unistd.h>

#include "godwit/disk.h"
#include "godwit/vm.h"

int vm__preopen(struct vm_preopened *pre, const struct vm_config *cfg,
		const struct vm_control *control)
{
	unsigned int i;
	int ret = 0;

	*pre = (struct vm_preopened){ .console_fd = -1, .control = control };
	for (i = 0; i < VM_MAX_DISKS; i++)
		pre->disk_fd[i] = -1;
	for (i = 0; i < VM_MAX_NETS; i++)
		pre->tap[i].fd = -1;
	for (i = 0; !ret && i < cfg->nr_disks; i++) {
		pre->disk_fd[i] = disk__open_image(cfg->disks[i].path);
		ret = pre->disk_fd[i] < 0 ? pre->disk_fd[i] : 0;
	}
	for (i = 0; !ret && i < cfg->nr_nets; i++)
		ret = tap__open(&pre->tap[i], cfg->nets[i].tap, TAP_ATTACH);
	if (!ret && cfg->console == CONSOLE_FILE) {
		pre->console_fd = console__open_file(cfg->console_path);
		ret = pre->console_fd < 0 ? pre->console_fd : 0;
	}
	if (!ret && control)
		ret = control->preopen(pre, cfg);
	if (ret)
		vm__preopened_close(pre);
	return ret;
}

void vm__preopened_close(struct vm_preopened *pre)
{
	unsigned int i;

	for (i = 0; i < VM_MAX_DISKS; i++) {
		if (pre->disk_fd[i] >= 0)
			close(pre->disk_fd[i]);
		pre->disk_fd[i] = -1;
	}
	for (i = 0; i < VM_MAX_NETS; i++)
		tap__close(&pre->tap[i]);
	if (pre->console_fd >= 0)
		close(pre->console_fd);
	pre->console_fd = -1;
	if (pre->control)
		pre->control->preclose(pre);
}
