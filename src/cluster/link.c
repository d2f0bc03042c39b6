// SPDX-License-Identifier: GPL-2.0
/* The migration link's speed, from the interface that holds an address (link.h). */
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/cluster/link.h"

int64_t link__parse_speed(const char *text)
{
	char *end;
	long long v;

	v = strtoll(text, &end, 10);
	if (end == text || (*end && *end != '\n') || v <= 0 || v > 100000000)
		return 0;
	return v;
}

static int64_t speed_of(const char *ifname)
{
	char path[64], text[32];
	int64_t mbit = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/class/net/%s/speed", ifname);
	f = fopen(path, "re");
	if (!f)
		return 0;
	/* Reading fails (EINVAL) for interfaces without a speed, loopback among them. */
	if (fgets(text, sizeof(text), f))
		mbit = link__parse_speed(text);
	fclose(f);
	return mbit;
}

int64_t link__mbit(const char *ipv4, char *ifname, size_t len)
{
	struct ifaddrs *all, *i;
	struct in_addr want;

	if (len)
		ifname[0] = '\0';
	if (inet_pton(AF_INET, ipv4, &want) != 1 || getifaddrs(&all))
		return 0;
	for (i = all; i; i = i->ifa_next) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)i->ifa_addr;

		if (!sin || sin->sin_family != AF_INET || sin->sin_addr.s_addr != want.s_addr)
			continue;
		snprintf(ifname, len, "%s", i->ifa_name);
		break;
	}
	freeifaddrs(all);
	return len && ifname[0] ? speed_of(ifname) : 0;
}
