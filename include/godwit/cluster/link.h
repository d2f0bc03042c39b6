/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_CLUSTER_LINK_H
#define GODWIT_CLUSTER_LINK_H

/*
 * The speed of the link a host's migrations cross, which the scheduler's per-host slots
 * depend on (sched__host_slots): read from the network interface that holds the agent's
 * migration address.
 */
#include <stddef.h>
#include <stdint.h>

/*
 * The speed in Mbit/s of the interface holding IPv4 address ipv4, its name in ifname;
 * 0 when the kernel does not know it (virtual interfaces, loopback, a link down) or no
 * interface holds the address (ifname then "").
 */
int64_t link__mbit(const char *ipv4, char *ifname, size_t len);

/* A sysfs "speed" file's text: Mbit/s, or 0 for "-1", "unknown" or anything not a speed. */
int64_t link__parse_speed(const char *text);

#endif
