// SPDX-License-Identifier: GPL-2.0
/* `godwit migrate` (a client of the source's API) and `godwit receive`. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "godwit/api_client.h"
#include "godwit/log.h"
#include "godwit/migrate.h"
#include "godwit/vm.h"

#define POLL_MS 100

static void usage_migrate(FILE *out)
{
	fprintf(out,
		"usage: godwit migrate --api PATH --to tcp:HOST:PORT|file:PATH [options]\n"
		"\n"
		"Moves the running VM served on the API socket PATH to a `godwit receive`\n"
		"listening at HOST:PORT (live: the VM runs on throughout), or saves it to a\n"
		"snapshot file. Prints progress (guest RAM moved and still dirty, and apart\n"
		"from it the bytes on the wire, fewer when pages compress), then a summary;\n"
		"exits 0 only if the VM now runs on the destination (or the snapshot is\n"
		"complete and synced). On any failure the VM keeps running on the source.\n"
		"Moves leaving one host share its link: a source about to pause claims it,\n"
		"and the others hold back meanwhile, with at most 128 KiB unsent in their\n"
		"sockets and 256 KiB of pages a record while several run (locks on\n"
		"/run/godwit/migrations.lock; GODWIT_MIGRATION_LOCK in the VM process's\n"
		"environment names another file, or none; docs/migration-flow.md, \"Several\n"
		"moves from one host\").\n"
		"\n"
		"  --downtime-ms N      the pause the guest may see (default 50)\n"
		"  --max-bandwidth B    bytes/s on the wire, suffixes K/M/G (default: unlimited)\n"
		"  --timeout S          give up after S seconds (default: 60 + 10 per GiB of RAM)\n"
		"  --verify             compare a digest of all RAM (and of each image sent with\n"
		"                       --disk-to) before the destination resumes\n"
		"  --confirm-ready      send GO only once the destination says READY, as before\n"
		"                       format 1.5: a round trip more of pause (150 ms on a far\n"
		"                       link), but a destination that dies while loading the\n"
		"                       state leaves the VM running here, not paused here with\n"
		"                       the outcome unknown (with disks the locks settle that)\n"
		"  --compress MODE      auto (default): LZ4 while the link is slower than the\n"
		"                       compressor and the pages shrink; lz4: always; zstd:\n"
		"                       always, zstd level 1 (fewer bytes, a third of LZ4's\n"
		"                       speed); off: never. Either way a record that does not\n"
		"                       shrink goes as it is; a destination older than format\n"
		"                       1.2 gets plain records, one older than 1.3 LZ4 for zstd\n"
		"  --connections N      TCP connections for the stream, 1..16 (default: one per\n"
		"                       10 ms of round trip, at most 16; one below 10 ms). On a\n"
		"                       long link each connection's window starts small and\n"
		"                       grows once per round trip: several start together.\n"
		"                       A destination older than format 1.3 takes one\n"
		"  --encrypt MODE       required (the default with credentials): TLS 1.3 or\n"
		"                       nothing, checked before any memory moves; opportunistic:\n"
		"                       TLS if the destination speaks it, else unencrypted (with\n"
		"                       a warning, and \"encryption\": \"none\" in the status);\n"
		"                       off (the default without credentials)\n"
		"  --tls-cert FILE      this host's certificate (PEM), shown to the destination\n"
		"  --tls-key FILE       its private key (PEM)\n"
		"  --tls-ca FILE        the CA (PEM) the destination's certificate must chain to\n"
		"  --tls-peer-name NAME the name the destination's certificate must carry\n"
		"                       (default: HOST of --to, a DNS name or an IP address)\n"
		"  --tls-psk-file FILE  a one-time key for this move instead of certificates: 64\n"
		"                       hex digits (openssl rand -hex 32), the same file the\n"
		"                       destination got; a key serves one move only\n"
		"                       (docs/encryption.md)\n"
		"  --encrypt-key FILE   file: only: encrypt the snapshot at rest (AES-256-GCM)\n"
		"                       with this key, 64 hex digits; receive --from and\n"
		"                       dump-stream read it back with the same key\n"
		"  --disk-to ID=PATH    send disk ID's image through the stream (migration\n"
		"                       without shared storage; repeatable, tcp: only): PATH\n"
		"                       is a file name in the destination's --disk-dir, or a\n"
		"                       path in that directory, where a new file is made. The\n"
		"                       image goes first, the guest's writes meanwhile mirrored\n"
		"                       to it, then the RAM; the destination's --disk list\n"
		"                       skips these disks. The file here stays as it was\n"
		"  --json               print one JSON object at the end instead of text\n"
		"  -h, --help           this text\n");
}

static void usage_receive(FILE *out)
{
	fprintf(out,
		"usage: godwit receive --listen tcp:HOST:PORT | --from file:PATH [options]\n"
		"\n"
		"Receives a VM from `godwit migrate` (or a snapshot file) and runs it. The\n"
		"VM's memory size, vCPUs, command line and devices come from the stream.\n"
		"The options are checked and the disk images, taps, console file and API\n"
		"socket opened before it listens: a bad one exits at once (2: malformed,\n"
		"1: cannot be opened). The API answers once a source has connected and the\n"
		"VM is built; until then its clients wait. If the incoming migration fails,\n"
		"exits non-zero and leaves nothing behind.\n"
		"Connections that are not a migration stream are closed and the wait goes\n"
		"on; SIGINT or SIGTERM ends it. With TCP Fast Open allowed on this host\n"
		"(sysctl net.ipv4.tcp_fastopen=3) a move over a long link takes one round\n"
		"trip less (docs/migration-format.md).\n"
		"\n"
		"  --listen tcp:HOST:PORT   wait for one incoming migration there\n"
		"  --from file:PATH         resume a snapshot written by migrate --to file:PATH\n"
		"  --api PATH               serve the API on this unix socket\n"
		"  --console KIND           stdio (default) or file:PATH\n"
		"  --disk PATH              this host's image for the VM's next disk (shared\n"
		"                           storage: the same file); one per disk, in order,\n"
		"                           except those the source sends (migrate --disk-to)\n"
		"  --disk-dir DIR           where the images the source sends may be made: the\n"
		"                           stream names a file in DIR, which must not exist;\n"
		"                           any other path is refused. The file gets its name\n"
		"                           only once the VM is handed over: a failed receive\n"
		"                           leaves none. Without it no image is taken\n"
		"  --net tap=NAME           this host's tap for the VM's next network card;\n"
		"                           its MAC travels with the VM; one per card, in order\n"
		"  --io-timeout SECONDS     fail (the VM not started) once the source has sent\n"
		"                           nothing, or read nothing we sent, for this long;\n"
		"                           1..3600, default 30\n"
		"  --encrypt MODE           required (the default with credentials): only TLS\n"
		"                           1.3 streams, a plaintext one is refused with an\n"
		"                           ERROR; opportunistic: TLS or plaintext (warned);\n"
		"                           off (the default without credentials): plaintext\n"
		"  --tls-cert FILE          this host's certificate (PEM), shown to the source\n"
		"  --tls-key FILE           its private key (PEM)\n"
		"  --tls-ca FILE            the CA (PEM) the source's certificate must chain to\n"
		"  --tls-peer-name NAME     the name the source's certificate must carry\n"
		"                           (default: any certificate of that CA)\n"
		"  --tls-psk-file FILE      a one-time key instead of certificates (64 hex\n"
		"                           digits): the first source that has it gets this\n"
		"                           receive, and after its move (or failed attempt) the\n"
		"                           key opens nothing (docs/encryption.md)\n"
		"  --encrypt-key FILE       the key of a snapshot file written with migrate\n"
		"                           --encrypt-key, 64 hex digits (with --from only)\n"
		"  -v, --verbose            debug messages, stamped with CLOCK_MONOTONIC seconds\n"
		"  -h, --help               this text\n"
		"\n"
		"The listener: a connection must send the stream's header and CONFIG within\n"
		"10 s of its accept; its bytes are read as they come, so a slow or silent\n"
		"one holds up no other. One that does not, or whose opening is bad (answered\n"
		"with ERROR), is closed and the listener goes on. At most 24 wait at once; a\n"
		"new one closes the one waiting longest. A well-formed CONFIG this host\n"
		"refuses ends the receive (status 1). After ACCEPTED, a peer whose first\n"
		"record does not come within --io-timeout is dropped with the VM built for\n"
		"it (the API socket is opened again) and the listener goes on; from that\n"
		"record on it is the source: a broken stream or --io-timeout ends the\n"
		"receive (status 1). SIGINT or SIGTERM end it at any point before the VM\n"
		"runs, without starting it.\n");
}

/* Both commands' TLS options (docs/encryption.md). */
#define TLS_OPTIONS                                                                                \
	{ "encrypt", required_argument, NULL, 'E' },                                               \
	{ "tls-cert", required_argument, NULL, 'X' },                                              \
	{ "tls-key", required_argument, NULL, 'K' },                                               \
	{ "tls-ca", required_argument, NULL, 'A' },                                                \
	{ "tls-peer-name", required_argument, NULL, 'P' },                                         \
	{ "tls-psk-file", required_argument, NULL, 'S' },                                          \
	{ "encrypt-key", required_argument, NULL, 'k' }

static int read_key(const char *opt, const char *path, uint8_t key[TLS_PSK_LEN])
{
	char err[256];

	if (tls__psk_read_file(path, key, err, sizeof(err))) {
		pr_err("%s: %s", opt, err);
		return -EINVAL;
	}
	return 0;
}

static const char *hex_key(const uint8_t key[TLS_PSK_LEN], char hex[2 * TLS_PSK_LEN + 1])
{
	unsigned int i;

	for (i = 0; i < TLS_PSK_LEN; i++)
		sprintf(hex + 2 * i, "%02x", key[i]);
	return hex;
}

/*
 * A path the process that uses it finds: the source's VM process opens them, from
 * its own working directory.
 */
static int tls_path(const char *opt, const char *arg, char *out, size_t len)
{
	char *abs = realpath(arg, NULL);

	if (!abs) {
		pr_err("--%s '%s': %s", opt, arg, strerror(errno));
		return -EINVAL;
	}
	if (strlen(abs) >= len) {
		pr_err("--%s '%s': the path is too long", opt, arg);
		free(abs);
		return -EINVAL;
	}
	snprintf(out, len, "%s", abs);
	free(abs);
	return 0;
}

static int tls_option(int ch, const char *arg, struct tls_params *tp)
{
	switch (ch) {
	case 'E':
		if (tls__mode_parse(arg, &tp->mode)) {
			pr_err("--encrypt '%s': expected required, opportunistic or off", arg);
			return -EINVAL;
		}
		return 0;
	case 'X': return tls_path("tls-cert", arg, tp->cert, sizeof(tp->cert));
	case 'K': return tls_path("tls-key", arg, tp->key, sizeof(tp->key));
	case 'A': return tls_path("tls-ca", arg, tp->ca, sizeof(tp->ca));
	case 'P':
		if (!arg[0] || strlen(arg) >= sizeof(tp->peer_name)) {
			pr_err("--tls-peer-name '%s': a DNS name or an IP address", arg);
			return -EINVAL;
		}
		snprintf(tp->peer_name, sizeof(tp->peer_name), "%s", arg);
		return 0;
	default:
		if (read_key("--tls-psk-file", arg, tp->psk))
			return -EINVAL;
		tp->has_psk = true;
		return 0;
	}
}

/* The TLS options as PUT /vm/migrate's fields, checked here first for a clear error. */
static int tls_request(struct tls_params *tp, json_t *req)
{
	struct tls_params check = *tp;
	char err[256], hex[2 * TLS_PSK_LEN + 1];

	if (tls__check_params(&check, err, sizeof(err))) {
		pr_err("%s", err);
		return -EINVAL;
	}
	explicit_bzero(check.psk, sizeof(check.psk));
	if (tp->mode != TLS_MODE_DEFAULT)
		json_object_set_new(req, "encrypt", json_string(tls__mode_name(tp->mode)));
	if (tp->cert[0]) {
		json_object_set_new(req, "tls_cert", json_string(tp->cert));
		json_object_set_new(req, "tls_key", json_string(tp->key));
		json_object_set_new(req, "tls_ca", json_string(tp->ca));
	}
	if (tp->peer_name[0])
		json_object_set_new(req, "tls_peer_name", json_string(tp->peer_name));
	if (tp->has_psk) {
		json_object_set_new(req, "tls_psk", json_string(hex_key(tp->psk, hex)));
		explicit_bzero(hex, sizeof(hex));
		explicit_bzero(tp->psk, sizeof(tp->psk));
	}
	return 0;
}

/* --disk-to ID=PATH as {"disk": ID, "to": PATH} in PUT /vm/migrate's disk_to. */
static int add_disk_to(json_t *list, const char *arg)
{
	const char *eq = strchr(arg, '=');
	uint64_t id;
	char num[16];

	if (!eq || eq == arg || (size_t)(eq - arg) >= sizeof(num) || !eq[1] ||
	    strlen(eq + 1) > STREAM_DISK_TO_MAX) {
		pr_err("--disk-to '%s': expected ID=PATH, the disk's ID (0 up, in --disk order) "
		       "and a path of at most %d bytes", arg, STREAM_DISK_TO_MAX);
		return -EINVAL;
	}
	snprintf(num, sizeof(num), "%.*s", (int)(eq - arg), arg);
	if (util__parse_u64(num, 0, MIGRATE_MAX_DISK_TO - 1, &id)) {
		pr_err("--disk-to '%s': the disk ID is a number, 0 to %d", arg,
		       MIGRATE_MAX_DISK_TO - 1);
		return -EINVAL;
	}
	json_array_append_new(list, json_pack("{s:I, s:s}", "disk", (json_int_t)id, "to", eq + 1));
	return 0;
}

struct migrate_cli {
	const char *api;
	json_t *req;
	bool json;
};

static int parse_migrate(int argc, char **argv, struct migrate_cli *c)
{
	static const struct option opts[] = {
		{ "api", required_argument, NULL, 'a' },
		{ "to", required_argument, NULL, 't' },
		{ "downtime-ms", required_argument, NULL, 'd' },
		{ "max-bandwidth", required_argument, NULL, 'b' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "verify", no_argument, NULL, 'V' },
		{ "confirm-ready", no_argument, NULL, 'R' },
		{ "compress", required_argument, NULL, 'c' },
		{ "connections", required_argument, NULL, 'n' },
		{ "json", no_argument, NULL, 'j' },
		{ "disk-to", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		TLS_OPTIONS,
		{ 0 },
	};
	struct tls_params tp = { 0 };
	json_t *disk_to = json_array();
	char hex[2 * TLS_PSK_LEN + 1];
	uint8_t key[TLS_PSK_LEN];
	const char *to = NULL;
	uint64_t v;
	int ch;

	c->req = json_object();
	/* Owned by the request from here, whatever the parse ends with. */
	json_object_set_new(c->req, "disk_to", disk_to);
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'a': c->api = optarg; break;
		case 't': to = optarg; break;
		case 'V': json_object_set_new(c->req, "verify", json_true()); break;
		case 'R': json_object_set_new(c->req, "confirm_ready", json_true()); break;
		case 'c':
			if (migrate__compress_parse(optarg, &(enum migrate_compress){ 0 })) {
				pr_err("--compress '%s': expected auto, lz4, zstd or off", optarg);
				return -EINVAL;
			}
			json_object_set_new(c->req, "compress", json_string(optarg));
			break;
		case 'j': c->json = true; break;
		case 'h': return 1;
		case 'D':
			if (add_disk_to(disk_to, optarg))
				return -EINVAL;
			break;
		case 'E': case 'X': case 'K': case 'A': case 'P': case 'S':
			if (tls_option(ch, optarg, &tp))
				return -EINVAL;
			break;
		case 'k':
			if (read_key("--encrypt-key", optarg, key))
				return -EINVAL;
			json_object_set_new(c->req, "encrypt_key", json_string(hex_key(key, hex)));
			explicit_bzero(hex, sizeof(hex));
			explicit_bzero(key, sizeof(key));
			break;
		case 'd':
			if (util__parse_u64(optarg, 1, MIGRATE_DOWNTIME_MS_MAX, &v)) {
				pr_err("--downtime-ms '%s': a number of milliseconds, 1 to %llu",
				       optarg, MIGRATE_DOWNTIME_MS_MAX);
				return -EINVAL;
			}
			json_object_set_new(c->req, "downtime_ms", json_integer((json_int_t)v));
			break;
		case 'b':
			if (util__parse_size(optarg, &v) || !v || v > INT64_MAX) {
				pr_err("--max-bandwidth '%s': bytes per second, e.g. 100M", optarg);
				return -EINVAL;
			}
			json_object_set_new(c->req, "max_bandwidth", json_integer((json_int_t)v));
			break;
		case 'n':
			if (util__parse_u64(optarg, 1, STREAM_MAX_CONNECTIONS, &v)) {
				pr_err("--connections '%s': a number from 1 to %u", optarg,
				       STREAM_MAX_CONNECTIONS);
				return -EINVAL;
			}
			json_object_set_new(c->req, "connections", json_integer((json_int_t)v));
			break;
		case 'T':
			if (util__parse_u64(optarg, 1, MIGRATE_TIMEOUT_S_MAX, &v)) {
				pr_err("--timeout '%s': a number of seconds, 1 to %llu (a week)",
				       optarg, MIGRATE_TIMEOUT_S_MAX);
				return -EINVAL;
			}
			json_object_set_new(c->req, "timeout_s", json_integer((json_int_t)v));
			break;
		case ':':
			pr_err("option %s needs a value", argv[optind - 1]);
			return -EINVAL;
		default:
			pr_err("unknown option '%s' (see godwit migrate --help)", argv[optind - 1]);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		pr_err("unexpected argument '%s'", argv[optind]);
		return -EINVAL;
	}
	if (!c->api || !to) {
		pr_err("--api and --to are required (see godwit migrate --help)");
		return -EINVAL;
	}
	json_object_set_new(c->req, "to", json_string(to));
	json_object_set_new(c->req, "watch", json_true());
	if (!json_array_size(disk_to))
		json_object_del(c->req, "disk_to");
	return tls_request(&tp, c->req);
}

static json_int_t num(const json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

/* MiB with a decimal, so that a small move does not read 0; GiB from 10 GiB on. */
static const char *size_str(json_int_t bytes, char *buf, size_t len)
{
	if (bytes >= (json_int_t)(10 * GiB))
		snprintf(buf, len, "%.1f GiB", (double)bytes / (double)GiB);
	else
		snprintf(buf, len, "%.1f MiB", (double)bytes / (double)MiB);
	return buf;
}

/* Guest RAM moved; a source older than ram_moved_bytes has its pages counted here. */
static json_int_t ram_moved(const json_t *st)
{
	const json_t *moved = json_object_get(st, "ram_moved_bytes");

	if (moved)
		return json_integer_value(moved);
	return (json_int_t)(((uint64_t)num(st, "pages_sent") + (uint64_t)num(st, "zero_pages")) *
			    GUEST_PAGE_SIZE);
}

/*
 * Guest RAM moved and still dirty apart from the bytes on the wire: with compression
 * a move of 130 MiB of pages can take under 1 MiB of stream.
 */
void migrate_cli__progress(const json_t *st, char *buf, size_t len)
{
	char ram[32], dirty[32], wire[32], disk[32], copied[32];
	int n = 0;

	/* The disks sent through the stream go first: their pass, before the RAM's rounds. */
	if (num(st, "disk_size") > 0)
		n = snprintf(buf, len, "disks %s of %s; ",
			     size_str(num(st, "disk_copied"), copied, sizeof(copied)),
			     size_str(num(st, "disk_size"), disk, sizeof(disk)));
	if (n < 0 || (size_t)n >= len)
		n = 0;
	snprintf(buf + n, len - (size_t)n,
		 "%s: round %lld, guest RAM %s moved (%lld MB/s), %s dirty; %s on the wire; "
		 "throttle %lld%%, %lld ms",
		 json_string_value(json_object_get(st, "status")), (long long)num(st, "rounds"),
		 size_str(ram_moved(st), ram, sizeof(ram)),
		 (long long)(num(st, "bandwidth") / 1000000),
		 size_str(num(st, "remaining_bytes"), dirty, sizeof(dirty)),
		 size_str(num(st, "bytes_sent"), wire, sizeof(wire)),
		 (long long)num(st, "throttle_pct"), (long long)num(st, "total_ms"));
}

/*
 * On a terminal the line is rewritten in place, so it must not wrap: it is cut to the
 * terminal's width (the guest RAM figures come first).
 */
static void print_progress(const json_t *st, bool tty)
{
	struct winsize ws;
	char line[256];

	migrate_cli__progress(st, line, sizeof(line));
	if (!tty) {
		fprintf(stderr, "%s\n", line);
		return;
	}
	/* Three spaces after it blank the end of a longer line before. */
	if (!ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) && ws.ws_col > 4 &&
	    strlen(line) > ws.ws_col - 4U)
		line[ws.ws_col - 4] = '\0';
	fprintf(stderr, "\r%s   ", line);
}

static void print_summary(const json_t *st)
{
	const char *status = json_string_value(json_object_get(st, "status"));

	printf("migration %s to %s\n", status, json_string_value(json_object_get(st, "to")));
	printf("  total_ms      %lld\n  downtime_ms   %lld\n  rounds        %lld\n",
	       (long long)num(st, "total_ms"), (long long)num(st, "downtime_ms"),
	       (long long)num(st, "rounds"));
	printf("  ram_bytes     %lld\n  ram_moved     %lld\n  bytes_sent    %lld\n"
	       "  pages_sent    %lld\n",
	       (long long)num(st, "ram_bytes"), (long long)ram_moved(st),
	       (long long)num(st, "bytes_sent"), (long long)num(st, "pages_sent"));
	printf("  zero_pages    %lld\n  skipped_pages %lld\n  throttle_pct  %lld\n",
	       (long long)num(st, "zero_pages"), (long long)num(st, "skipped_pages"),
	       (long long)num(st, "max_throttle_pct"));
	printf("  lz4_pages     %lld\n  lz4_saved     %lld\n  zstd_pages    %lld\n"
	       "  zstd_saved    %lld\n  connections   %lld\n",
	       (long long)num(st, "lz4_pages"), (long long)num(st, "lz4_saved_bytes"),
	       (long long)num(st, "zstd_pages"), (long long)num(st, "zstd_saved_bytes"),
	       (long long)num(st, "connections"));
	if (num(st, "disk_size") > 0)
		printf("  disk_size     %lld\n  disk_copied   %lld\n  disk_bytes    %lld\n",
		       (long long)num(st, "disk_size"), (long long)num(st, "disk_copied"),
		       (long long)num(st, "disk_bytes"));
	if (json_is_string(json_object_get(st, "error")))
		printf("  error         %s\n", json_string_value(json_object_get(st, "error")));
}

/* One GET /vm/migration, tried a few times: a loaded host can fail one call. */
static int get_status(const char *api, json_t **st)
{
	struct timespec pause = { .tv_nsec = 100 * 1000 * 1000 };
	char err[256];
	long status;
	int i;

	for (i = 0; i < 3; i++) {
		*st = NULL;
		if (!api_client__call(api, "GET", "/vm/migration", NULL, &status, st, err,
				      sizeof(err)) && status == 200 && *st)
			return 0;
		json_decref(*st);
		*st = NULL;
		nanosleep(&pause, NULL);
	}
	return -EIO;
}

/* Polls GET /vm/migration until a final status; the last object is returned. */
static json_t *watch(const char *api, bool show)
{
	struct timespec delay = { .tv_nsec = POLL_MS * 1000000L };
	bool tty = isatty(STDERR_FILENO);
	json_t *st = NULL, *last = NULL;
	char err[256];
	long status;

	for (;;) {
		if (get_status(api, &st)) {
			json_decref(st);
			break;
		}
		json_decref(last);
		last = st;
		if (show)
			print_progress(st, tty);
		if (migrate__status_final_name(json_string_value(json_object_get(st, "status")))) {
			/* Tells the source it may exit now that we have its figures. */
			json_t *ignored = NULL;

			if (!api_client__call(api, "PUT", "/vm/migration/ack", NULL, &status,
					      &ignored, err, sizeof(err)))
				json_decref(ignored);
			break;
		}
		nanosleep(&delay, NULL);
	}
	if (show && tty)
		fputc('\n', stderr);
	return last;
}

int migrate_cli__migrate(int argc, char **argv)
{
	struct migrate_cli c = { 0 };
	json_t *reply = NULL, *st;
	char err[256];
	long status;
	int ret;

	ret = parse_migrate(argc, argv, &c);
	if (ret) {
		json_decref(c.req);
		if (ret == 1)
			usage_migrate(stdout);
		return ret == 1 ? 0 : 2;
	}
	ret = api_client__call(c.api, "PUT", "/vm/migrate", c.req, &status, &reply, err, sizeof(err));
	json_decref(c.req);
	if (ret || status != 202) {
		pr_err("cannot start the migration: %s",
		       ret ? err : json_string_value(json_object_get(reply, "error")));
		json_decref(reply);
		return 1;
	}
	json_decref(reply);
	st = watch(c.api, !c.json);
	if (!st) {
		pr_err("lost the source's API before the migration ended; its outcome is unknown");
		return 1;
	}
	ret = strcmp(json_string_value(json_object_get(st, "status")), "completed") ? 1 : 0;
	if (c.json) {
		json_dumpf(st, stdout, JSON_COMPACT);
		putchar('\n');
	} else {
		print_summary(st);
	}
	if (!migrate__status_final_name(json_string_value(json_object_get(st, "status")))) {
		pr_err("lost the source's API before the migration ended; its outcome is unknown");
		ret = 1;
	}
	json_decref(st);
	return ret;
}

static int parse_io_timeout(const char *s, int *ms)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 1 || v > 3600) {
		pr_err("--io-timeout '%s': expected whole seconds, 1..3600", s);
		return -EINVAL;
	}
	*ms = (int)v * 1000;
	return 0;
}

int migrate_cli__receive(int argc, char **argv, const struct vm_control *control)
{
	static const struct option opts[] = {
		{ "listen", required_argument, NULL, 'l' },
		{ "from", required_argument, NULL, 'f' },
		{ "api", required_argument, NULL, 'a' },
		{ "console", required_argument, NULL, 'C' },
		{ "disk", required_argument, NULL, 'D' },
		{ "net", required_argument, NULL, 'N' },
		{ "disk-dir", required_argument, NULL, 'd' },
		{ "io-timeout", required_argument, NULL, 'T' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		TLS_OPTIONS,
		{ 0 },
	};
	struct receive_params p = { .console_kind = CONSOLE_STDIO, .control = control };
	const char *listen = NULL, *from = NULL;
	uint8_t key[TLS_PSK_LEN];
	char host[256], port[16], err[256];
	int ch, ret;

	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "+:vh", opts, NULL)) != -1) {
		switch (ch) {
		case 'l': listen = optarg; break;
		case 'f': from = optarg; break;
		case 'a': p.api_path = optarg; break;
		case 'v': log__set_level(LOG_DEBUG); break;
		case 'h': usage_receive(stdout); return 0;
		case 'C':
			if (config__parse_console(optarg, &p.console_kind, &p.console_path))
				return 2;
			break;
		case 'D':
			if (p.nr_disks == ARRAY_SIZE(p.disks)) {
				pr_err("--disk: at most %zu", ARRAY_SIZE(p.disks));
				return 2;
			}
			p.disks[p.nr_disks++] = optarg;
			break;
		case 'd': p.disk_dir = optarg; break;
		case 'N':
			if (p.nr_nets == ARRAY_SIZE(p.nets)) {
				pr_err("--net: at most %zu", ARRAY_SIZE(p.nets));
				return 2;
			}
			p.nets[p.nr_nets++] = optarg;
			break;
		case 'T':
			if (parse_io_timeout(optarg, &p.io_timeout_ms))
				return 2;
			break;
		case 'E': case 'X': case 'K': case 'A': case 'P': case 'S':
			if (tls_option(ch, optarg, &p.tls))
				return 2;
			break;
		case 'k':
			if (read_key("--encrypt-key", optarg, key))
				return 2;
			p.encrypt_key = key;
			break;
		case ':':
			pr_err("option %s needs a value", argv[optind - 1]);
			return 2;
		default:
			pr_err("unknown option '%s' (see godwit receive --help)", argv[optind - 1]);
			return 2;
		}
	}
	if (!!listen == !!from || optind < argc) {
		pr_err("give exactly one of --listen tcp:HOST:PORT or --from file:PATH");
		return 2;
	}
	if (listen && transport__parse_tcp(listen, host, sizeof(host), port, sizeof(port))) {
		pr_err("--listen '%s': expected tcp:HOST:PORT", listen);
		return 2;
	}
	if (from && (strncmp(from, "file:", 5) || !from[5])) {
		pr_err("--from '%s': expected file:PATH", from);
		return 2;
	}
	if (tls__check_params(&p.tls, err, sizeof(err))) {
		pr_err("%s", err);
		return 2;
	}
	if (from && p.tls.mode != TLS_MODE_OFF) {
		pr_err("TLS is for --listen: a snapshot file is read as it is (or with "
		       "--encrypt-key)");
		return 2;
	}
	if (listen && p.encrypt_key) {
		pr_err("--encrypt-key is for --from file:PATH; a stream is encrypted with TLS");
		return 2;
	}
	snprintf(p.from, sizeof(p.from), "%s", listen ? listen : from);
	ret = migrate__receive(&p);
	explicit_bzero(p.tls.psk, sizeof(p.tls.psk));
	explicit_bzero(key, sizeof(key));
	return ret;
}
