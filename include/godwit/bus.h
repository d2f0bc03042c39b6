/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_BUS_H
#define GODWIT_BUS_H

#include <stdbool.h>
#include <stdint.h>

#include "godwit/util.h"

/*
 * Port I/O and MMIO dispatch. Devices register a range and one handler; accesses
 * nobody claims read as all ones and writes vanish, as on a PC with nothing at
 * that address. The table is fixed after start-up, so lookups take no lock.
 */
#define BUS_MAX_DEVICES 32

struct bus_access {
	uint64_t addr;	 /* port or guest physical address */
	uint64_t offset; /* from the start of the device's range */
	uint8_t *data;	 /* size bytes, little-endian */
	unsigned int size;
	bool is_write;
};

struct bus_device {
	uint64_t base;
	uint64_t len;
	void (*handle)(void *opaque, struct bus_access *a);
	void *opaque;
	const char *name;
};

struct bus {
	unsigned int nr;
	struct bus_device devs[BUS_MAX_DEVICES];
};

int __must_check bus__register(struct bus *bus, const struct bus_device *dev);
/* Returns true if a device claimed the access. */
bool bus__dispatch(struct bus *bus, struct bus_access *a);

#endif
