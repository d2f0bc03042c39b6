// SPDX-License-Identifier: GPL-2.0
/*
 * CONFIG: the VM's configuration as TLV fields. Decode rejects unknown required
 * tags, duplicates and missing fields, then runs the same semantic validation
 * the encoder runs, so a stream that decodes describes a VM we can build.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "godwit/stream.h"

static int __attribute__((format(printf, 3, 4)))
cfg_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EBADMSG;
}

static bool type_char_ok(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

static bool dev_type_ok(const char *s)
{
	size_t len = strnlen(s, STREAM_DEV_TYPE_MAX + 1), i;

	if (!len || len > STREAM_DEV_TYPE_MAX)
		return false;
	for (i = 0; i < len; i++)
		if (!type_char_ok(s[i]))
			return false;
	return true;
}

static int validate_regions(const struct stream_config *cfg, char *err, size_t errlen)
{
	uint64_t total = 0, prev_end = 0;
	unsigned int i;

	if (cfg->nr_regions < 1 || cfg->nr_regions > STREAM_MAX_REGIONS)
		return cfg_fail(err, errlen, "%u RAM regions (1..%d allowed)", cfg->nr_regions,
				STREAM_MAX_REGIONS);
	for (i = 0; i < cfg->nr_regions; i++) {
		const struct stream_region *rg = &cfg->regions[i];

		if (!rg->size || (rg->gpa | rg->size) % STREAM_PAGE_SIZE)
			return cfg_fail(err, errlen, "region %u (0x%llx+0x%llx) empty or unaligned",
					i, (unsigned long long)rg->gpa,
					(unsigned long long)rg->size);
		if (rg->gpa >= STREAM_GPA_LIMIT || rg->size > STREAM_GPA_LIMIT - rg->gpa)
			return cfg_fail(err, errlen, "region %u (0x%llx+0x%llx) beyond 2^52", i,
					(unsigned long long)rg->gpa, (unsigned long long)rg->size);
		if (i && rg->gpa < prev_end)
			return cfg_fail(err, errlen, "region %u overlaps or precedes region %u", i,
					i - 1);
		prev_end = rg->gpa + rg->size;
		total += rg->size;
	}
	if (total != cfg->ram_size)
		return cfg_fail(err, errlen, "regions add up to 0x%llx, ram_size is 0x%llx",
				(unsigned long long)total, (unsigned long long)cfg->ram_size);
	return 0;
}

static int validate_devices(const struct stream_config *cfg, char *err, size_t errlen)
{
	unsigned int i, j;

	if (cfg->nr_devices > STREAM_MAX_DEVICES)
		return cfg_fail(err, errlen, "%u devices (at most %d)", cfg->nr_devices,
				STREAM_MAX_DEVICES);
	for (i = 0; i < cfg->nr_devices; i++) {
		if (!dev_type_ok(cfg->devices[i].type))
			return cfg_fail(err, errlen, "device %u: bad type", i);
		if (cfg->devices[i].disk_to[0] &&
		    (strcmp(cfg->devices[i].type, "virtio-blk") || !cfg->devices[i].capacity ||
		     !(cfg->features & STREAM_FEATURE_DISK_TO)))
			return cfg_fail(err, errlen,
					"device %u: disk_to only for a disk with a capacity, with "
					"the DISK_TO feature offered", i);
		for (j = 0; j < i; j++)
			if (!strcmp(cfg->devices[i].type, cfg->devices[j].type) &&
			    cfg->devices[i].instance == cfg->devices[j].instance)
				return cfg_fail(err, errlen, "device %s.%u listed twice",
						cfg->devices[i].type, cfg->devices[i].instance);
	}
	return 0;
}

int stream__config_validate(const struct stream_config *cfg, char *err, size_t errlen)
{
	if (!cfg->ram_size || cfg->ram_size % STREAM_PAGE_SIZE)
		return cfg_fail(err, errlen, "ram_size 0x%llx is zero or not page-aligned",
				(unsigned long long)cfg->ram_size);
	if (cfg->nr_vcpus < 1 || cfg->nr_vcpus > STREAM_MAX_VCPUS)
		return cfg_fail(err, errlen, "nr_vcpus %u outside 1..%d", cfg->nr_vcpus,
				STREAM_MAX_VCPUS);
	if (strnlen(cfg->cmdline, sizeof(cfg->cmdline)) > STREAM_CMDLINE_MAX)
		return cfg_fail(err, errlen, "command line longer than %d", STREAM_CMDLINE_MAX);
	if (cfg->cpuid_len > STREAM_CPUID_MAX || (cfg->cpuid_len && !cfg->cpuid))
		return cfg_fail(err, errlen, "cpuid blob of %zu bytes (at most %llu)",
				cfg->cpuid_len, (unsigned long long)STREAM_CPUID_MAX);
	if (cfg->connections > STREAM_MAX_CONNECTIONS)
		return cfg_fail(err, errlen, "%u connections (at most %u)", cfg->connections,
				STREAM_MAX_CONNECTIONS);
	if (validate_regions(cfg, err, errlen))
		return -EBADMSG;
	return validate_devices(cfg, err, errlen);
}

static int encode_device(const struct stream_device *dev, struct stream_tlv_writer *tw)
{
	struct stream_tlv_writer d;
	int ret;

	stream__tlv_writer_init(&d);
	stream__tlv_put_str(&d, STREAM_DEV_TYPE, 0, dev->type);
	stream__tlv_put_u32(&d, STREAM_DEV_INSTANCE, 0, dev->instance);
	if (dev->has_mac)
		stream__tlv_put_bytes(&d, STREAM_DEV_MAC, STREAM_TLV_OPTIONAL, dev->mac, 6);
	if (dev->capacity)
		stream__tlv_put_u64(&d, STREAM_DEV_CAPACITY, STREAM_TLV_OPTIONAL, dev->capacity);
	if (dev->readonly)
		stream__tlv_put_u32(&d, STREAM_DEV_READONLY, STREAM_TLV_OPTIONAL, 1);
	if (dev->disk_to[0])
		stream__tlv_put_str(&d, STREAM_DEV_DISK_TO, STREAM_TLV_OPTIONAL, dev->disk_to);
	ret = d.err;
	if (!ret)
		ret = stream__tlv_put_bytes(tw, STREAM_CFG_DEVICE, 0, d.buf, d.len);
	stream__tlv_writer_exit(&d);
	return ret;
}

int stream__config_encode(const struct stream_config *cfg, struct stream_tlv_writer *tw, char *err,
			  size_t errlen)
{
	uint8_t rg[16], conn[4 + STREAM_TOKEN_LEN];
	unsigned int i;
	int ret;

	ret = stream__config_validate(cfg, err, errlen);
	if (ret)
		return ret;
	stream__tlv_put_u64(tw, STREAM_CFG_RAM_SIZE, 0, cfg->ram_size);
	stream__tlv_put_u32(tw, STREAM_CFG_NR_VCPUS, 0, cfg->nr_vcpus);
	stream__tlv_put_str(tw, STREAM_CFG_CMDLINE, 0, cfg->cmdline);
	for (i = 0; i < cfg->nr_regions; i++) {
		stream_put64(rg, cfg->regions[i].gpa);
		stream_put64(rg + 8, cfg->regions[i].size);
		stream__tlv_put_bytes(tw, STREAM_CFG_REGION, 0, rg, sizeof(rg));
	}
	stream__tlv_put_bytes(tw, STREAM_CFG_UUID, 0, cfg->uuid, sizeof(cfg->uuid));
	stream__tlv_put_bytes(tw, STREAM_CFG_CPUID, 0, cfg->cpuid, cfg->cpuid_len);
	stream__tlv_put_u32(tw, STREAM_CFG_MACHINE_VERSION, 0, cfg->machine_version);
	if (cfg->features)
		stream__tlv_put_u32(tw, STREAM_CFG_FEATURES, STREAM_TLV_OPTIONAL, cfg->features);
	if (cfg->connections > 1) {
		stream_put32(conn, cfg->connections);
		memcpy(conn + 4, cfg->token, STREAM_TOKEN_LEN);
		stream__tlv_put_bytes(tw, STREAM_CFG_CONNECTIONS, STREAM_TLV_OPTIONAL, conn,
				      sizeof(conn));
	}
	for (i = 0; i < cfg->nr_devices && !tw->err; i++)
		if (encode_device(&cfg->devices[i], tw) && !tw->err)
			tw->err = -ENOMEM;
	if (tw->err)
		snprintf(err, errlen, "encoding CONFIG: %s", strerror(-tw->err));
	return tw->err;
}

int stream__write_config(struct stream_writer *w, const struct stream_config *cfg)
{
	struct stream_tlv_writer tw;
	struct iovec iov;
	int ret;

	stream__tlv_writer_init(&tw);
	ret = stream__config_encode(cfg, &tw, w->err, sizeof(w->err));
	if (ret)
		goto out;
	iov = (struct iovec){tw.buf, tw.len};
	ret = stream__write_record(w, STREAM_REC_CONFIG, STREAM_REC_MANDATORY, &iov, 1);
out:
	stream__tlv_writer_exit(&tw);
	return ret;
}

void stream__config_release(struct stream_config *cfg)
{
	free(cfg->cpuid);
	cfg->cpuid = NULL;
	cfg->cpuid_len = 0;
}

/* ---- decode -------------------------------------------------------------- */

/* Bits for "seen": required singletons must appear exactly once. */
#define SEEN(tag) (1U << (tag))
#define CFG_REQUIRED                                                                               \
	(SEEN(STREAM_CFG_RAM_SIZE) | SEEN(STREAM_CFG_NR_VCPUS) | SEEN(STREAM_CFG_CMDLINE) |        \
	 SEEN(STREAM_CFG_REGION) | SEEN(STREAM_CFG_UUID) | SEEN(STREAM_CFG_CPUID) |                \
	 SEEN(STREAM_CFG_MACHINE_VERSION))
#define CFG_REPEATABLE (SEEN(STREAM_CFG_REGION) | SEEN(STREAM_CFG_DEVICE))
#define DEV_REQUIRED   (SEEN(STREAM_DEV_TYPE) | SEEN(STREAM_DEV_INSTANCE))

static const char *const cfg_tag_names[] = {
    [STREAM_CFG_RAM_SIZE] = "ram_size",
    [STREAM_CFG_NR_VCPUS] = "nr_vcpus",
    [STREAM_CFG_CMDLINE] = "cmdline",
    [STREAM_CFG_REGION] = "region",
    [STREAM_CFG_UUID] = "uuid",
    [STREAM_CFG_CPUID] = "cpuid",
    [STREAM_CFG_MACHINE_VERSION] = "machine_version",
};

static int dev_field(struct stream_device *dev, const struct stream_tlv *t, char *err,
		     size_t errlen)
{
	switch (t->tag) {
	case STREAM_DEV_TYPE:
		if (!t->len || t->len > STREAM_DEV_TYPE_MAX)
			return cfg_fail(err, errlen, "device type of %u bytes", t->len);
		memcpy(dev->type, t->value, t->len);
		dev->type[t->len] = '\0';
		return 0;
	case STREAM_DEV_INSTANCE:
		return stream__tlv_u32(t, &dev->instance) ? cfg_fail(err, errlen, "device instance")
							  : 0;
	case STREAM_DEV_MAC:
		if (t->len != 6)
			return cfg_fail(err, errlen, "device MAC of %u bytes", t->len);
		memcpy(dev->mac, t->value, 6);
		dev->has_mac = true;
		return 0;
	case STREAM_DEV_CAPACITY:
		return stream__tlv_u64(t, &dev->capacity) ? cfg_fail(err, errlen, "device capacity")
							  : 0;
	case STREAM_DEV_DISK_TO:
		if (!t->len || t->len > STREAM_DISK_TO_MAX || memchr(t->value, '\0', t->len))
			return cfg_fail(err, errlen, "device disk_to of %u bytes or with a NUL", t->len);
		memcpy(dev->disk_to, t->value, t->len);
		dev->disk_to[t->len] = '\0';
		return 0;
	case STREAM_DEV_READONLY: {
		uint32_t ro;

		if (stream__tlv_u32(t, &ro) || ro > 1)
			return cfg_fail(err, errlen, "device readonly flag");
		dev->readonly = ro;
		return 0;
	}
	}
	if (t->flags & STREAM_TLV_OPTIONAL)
		return 0;
	return cfg_fail(err, errlen, "device: unknown required field tag %u", t->tag);
}

static int decode_device(struct stream_device *dev, const struct stream_tlv *outer, char *err,
			 size_t errlen)
{
	struct stream_tlv_reader tr;
	struct stream_tlv t;
	uint32_t seen = 0;
	int ret;

	memset(dev, 0, sizeof(*dev));
	stream__tlv_reader_init(&tr, outer->value, outer->len);
	while ((ret = stream__tlv_next(&tr, &t)) > 0) {
		if (t.tag < 32 && (seen & SEEN(t.tag)))
			return cfg_fail(err, errlen, "device: field tag %u twice", t.tag);
		if (t.tag < 32)
			seen |= SEEN(t.tag);
		if (dev_field(dev, &t, err, errlen))
			return -EBADMSG;
	}
	if (ret < 0)
		return cfg_fail(err, errlen, "device: malformed field (length past end)");
	if ((seen & DEV_REQUIRED) != DEV_REQUIRED)
		return cfg_fail(err, errlen, "device: missing type or instance");
	return 0;
}

static int cfg_bytes(struct stream_config *cfg, const struct stream_tlv *t, char *err,
		     size_t errlen)
{
	switch (t->tag) {
	case STREAM_CFG_CMDLINE:
		if (t->len > STREAM_CMDLINE_MAX || memchr(t->value, '\0', t->len))
			return cfg_fail(err, errlen, "cmdline of %u bytes or with a NUL", t->len);
		memcpy(cfg->cmdline, t->value, t->len);
		cfg->cmdline[t->len] = '\0';
		return 0;
	case STREAM_CFG_UUID:
		if (t->len != sizeof(cfg->uuid))
			return cfg_fail(err, errlen, "uuid of %u bytes", t->len);
		memcpy(cfg->uuid, t->value, sizeof(cfg->uuid));
		return 0;
	case STREAM_CFG_CPUID:
		if (t->len > STREAM_CPUID_MAX)
			return cfg_fail(err, errlen, "cpuid blob of %u bytes", t->len);
		cfg->cpuid = malloc(t->len ? t->len : 1);
		if (!cfg->cpuid)
			return cfg_fail(err, errlen, "out of memory");
		memcpy(cfg->cpuid, t->value, t->len);
		cfg->cpuid_len = t->len;
		return 0;
	}
	return cfg_fail(err, errlen, "internal: tag %u", t->tag);
}

static int cfg_field(struct stream_config *cfg, const struct stream_tlv *t, char *err,
		     size_t errlen)
{
	switch (t->tag) {
	case STREAM_CFG_RAM_SIZE:
		return stream__tlv_u64(t, &cfg->ram_size) ? cfg_fail(err, errlen, "ram_size") : 0;
	case STREAM_CFG_NR_VCPUS:
		return stream__tlv_u32(t, &cfg->nr_vcpus) ? cfg_fail(err, errlen, "nr_vcpus") : 0;
	case STREAM_CFG_MACHINE_VERSION:
		return stream__tlv_u32(t, &cfg->machine_version)
			   ? cfg_fail(err, errlen, "machine_version")
			   : 0;
	case STREAM_CFG_REGION:
		if (cfg->nr_regions >= STREAM_MAX_REGIONS)
			return cfg_fail(err, errlen, "more than %d regions", STREAM_MAX_REGIONS);
		if (t->len != 16)
			return cfg_fail(err, errlen, "region of %u bytes", t->len);
		cfg->regions[cfg->nr_regions].gpa = stream_get64(t->value);
		cfg->regions[cfg->nr_regions].size = stream_get64(t->value + 8);
		cfg->nr_regions++;
		return 0;
	case STREAM_CFG_DEVICE:
		if (cfg->nr_devices >= STREAM_MAX_DEVICES)
			return cfg_fail(err, errlen, "more than %d devices", STREAM_MAX_DEVICES);
		return decode_device(&cfg->devices[cfg->nr_devices++], t, err, errlen);
	case STREAM_CFG_FEATURES:
		/* Bits this godwit does not know are features it will not take. */
		return stream__tlv_u32(t, &cfg->features) ? cfg_fail(err, errlen, "features") : 0;
	case STREAM_CFG_CONNECTIONS:
		if (t->len != 4 + STREAM_TOKEN_LEN)
			return cfg_fail(err, errlen, "connections offer of %u bytes", t->len);
		cfg->connections = stream_get32(t->value);
		if (cfg->connections < 2 || cfg->connections > STREAM_MAX_CONNECTIONS)
			return cfg_fail(err, errlen, "%u connections offered", cfg->connections);
		memcpy(cfg->token, t->value + 4, STREAM_TOKEN_LEN);
		return 0;
	case STREAM_CFG_CMDLINE:
	case STREAM_CFG_UUID:
	case STREAM_CFG_CPUID:
		return cfg_bytes(cfg, t, err, errlen);
	}
	if (t->flags & STREAM_TLV_OPTIONAL)
		return 0;
	return cfg_fail(err, errlen, "unknown required field tag %u", t->tag);
}

static int check_missing(uint32_t seen, char *err, size_t errlen)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cfg_tag_names); i++)
		if ((CFG_REQUIRED & SEEN(i)) && !(seen & SEEN(i)))
			return cfg_fail(err, errlen, "missing field %s", cfg_tag_names[i]);
	return 0;
}

int stream__config_decode(const uint8_t *payload, size_t len, struct stream_config *cfg, char *err,
			  size_t errlen)
{
	struct stream_tlv_reader tr;
	struct stream_tlv t;
	uint32_t seen = 0;
	int ret;

	memset(cfg, 0, sizeof(*cfg));
	stream__tlv_reader_init(&tr, payload, len);
	while ((ret = stream__tlv_next(&tr, &t)) > 0) {
		uint32_t bit = t.tag < 32 ? SEEN(t.tag) : 0;

		if ((seen & bit) && !(bit & CFG_REPEATABLE)) {
			ret = cfg_fail(err, errlen, "field tag %u twice", t.tag);
			goto err_release;
		}
		seen |= bit;
		ret = cfg_field(cfg, &t, err, errlen);
		if (ret)
			goto err_release;
	}
	if (ret < 0) {
		ret =
		    cfg_fail(err, errlen, "malformed field at byte %zu (length past end)", tr.pos);
		goto err_release;
	}
	ret = check_missing(seen, err, errlen);
	if (ret)
		goto err_release;
	ret = stream__config_validate(cfg, err, errlen);
	if (ret)
		goto err_release;
	return 0;

err_release:
	stream__config_release(cfg);
	return -EBADMSG;
}
