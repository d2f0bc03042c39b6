/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_SEAL_H
#define GODWIT_SEAL_H

/*
 * A snapshot file encrypted at rest (`--encrypt-key FILE`; src/migrate/seal.c): the
 * stream, cut into chunks each sealed with AES-256-GCM under a key derived from the
 * user's key and the file's random salt. docs/migration-format.md, "Encrypted
 * snapshot files", has the layout. stream_io reads and writes through it, so the
 * stream inside is the same.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "godwit/util.h"

#define SEAL_MAGIC	   "GODWITSE"
#define SEAL_MAGIC_LEN	   8
#define SEAL_KEY_LEN	   32
#define SEAL_SALT_LEN	   32
#define SEAL_HEADER_LEN	   (SEAL_MAGIC_LEN + 8 + SEAL_SALT_LEN)
#define SEAL_VERSION	   1
#define SEAL_CHUNK	   (1U << 20) /* plaintext bytes per chunk */
#define SEAL_CHUNK_HDR_LEN 8	      /* u32 length, u32 flags */
#define SEAL_TAG_LEN	   16
#define SEAL_FINAL	   (1U << 0) /* the last chunk: the stream ends with it */

struct seal;
struct stream_io;

/* Starts a sealed file on fd (its header is written now): 0 or -errno. */
int __must_check seal__writer(int fd, const uint8_t key[SEAL_KEY_LEN], struct seal **out);
/* Reads and checks fd's header: 0, -EBADMSG (not one, another version) or -errno. */
int __must_check seal__reader(int fd, const uint8_t key[SEAL_KEY_LEN], struct seal **out);
void seal__free(struct seal *s);
/* Takes all of len bytes (sealed and written a chunk at a time): 0 or -errno. */
int __must_check seal__write(struct seal *s, const void *buf, size_t len);
/* Seals and writes what is held as the final chunk: 0 or -errno. */
int __must_check seal__finish(struct seal *s);
/*
 * Up to len bytes of the stream: bytes read, -ENODATA after the final chunk,
 * -EBADMSG for a chunk that does not open (another key, changed, cut short, or
 * anything after the final one; seal__error says which), or -errno.
 */
ssize_t seal__read(struct seal *s, void *buf, size_t len);
const char *seal__error(const struct seal *s);
/*
 * The reader side for a file the user may have given a key for: a sealed file needs
 * the key and a plain one must not have one (key NULL: none given). Attaches a
 * reader to io where it is sealed; 0, or -EINVAL / -EBADMSG with why in err.
 */
int __must_check seal__attach_reader(struct stream_io *io, int fd, const uint8_t *key, char *err,
				     size_t errlen);

#endif
