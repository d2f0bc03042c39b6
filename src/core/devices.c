// SPDX-License-Identifier: GPL-2.0
/*
 * The platform: which device answers at which port. The order is fixed and
 * explicit (no constructor magic), because migration restores devices in it.
 */
#include <stdio.h>
#include <string.h>

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
	return 0;
}
