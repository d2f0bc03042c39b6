// SPDX-License-Identifier: GPL-2.0
#include <errno.h>
#include <string.h>

#include "godwit/bus.h"
#include "godwit/log.h"

static bool overlaps(const struct bus_device *a, const struct bus_device *b)
{
	return a->base < b->base + b->len && b->base < a->base + a->len;
}

int bus__register(struct bus *bus, const struct bus_device *dev)
{
	unsigned int i;

	if (dev->len == 0 || dev->base + dev->len < dev->base)
		return -EINVAL;
	for (i = 0; i < bus->nr; i++) {
		if (overlaps(&bus->devs[i], dev)) {
			pr_err("%s at 0x%llx overlaps %s", dev->name, (unsigned long long)dev->base,
			       bus->devs[i].name);
			return -EBUSY;
		}
	}
	if (bus->nr == BUS_MAX_DEVICES)
		return -ENOSPC;
	bus->devs[bus->nr++] = *dev;
	return 0;
}

bool bus__dispatch(struct bus *bus, struct bus_access *a)
{
	unsigned int i;

	for (i = 0; i < bus->nr; i++) {
		struct bus_device *d = &bus->devs[i];

		if (a->addr >= d->base && a->addr - d->base < d->len) {
			a->offset = a->addr - d->base;
			d->handle(d->opaque, a);
			return true;
		}
	}
	if (!a->is_write)
		memset(a->data, 0xff, a->size);
	return false;
}
