// SPDX-License-Identifier: GPL-2.0
/*
 * Snapshot files encrypted at rest (include/godwit/seal.h): AES-256-GCM chunks under a
 * per-file key, HKDF-SHA256 of the user's key and the file's random salt. Each chunk's
 * associated data is the file header, the chunk's index and its own length and flags,
 * so chunks cannot be moved, dropped or swapped between files, and a file cut short
 * lacks the chunk marked final.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "godwit/seal.h"
#include "godwit/stream.h"
#include "godwit/tls.h"

#define SEAL_INFO "godwit snapshot v1"
#define NONCE_LEN 12

struct seal {
	int fd;
	EVP_CIPHER_CTX *aead;
	uint8_t key[SEAL_KEY_LEN]; /* the file's, derived */
	uint8_t header[SEAL_HEADER_LEN];
	uint64_t index;	 /* of the next chunk */
	uint8_t *buf;	 /* plaintext of the chunk being filled or read */
	size_t len, pos; /* held; read so far (reader) */
	uint8_t *sealed; /* a chunk as it is on disk */
	bool final;	 /* reader: the final chunk was opened */
	char err[128];
};

static int full_write(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* All of len bytes: 0, -ENODATA at the end before any, -EBADMSG cut short, -errno. */
static int full_read(int fd, uint8_t *p, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, p + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (!n)
			return got ? -EBADMSG : -ENODATA;
		got += (size_t)n;
	}
	return 0;
}

static int derive(struct seal *s, const uint8_t *key)
{
	EVP_PKEY_CTX *k = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
	size_t len = SEAL_KEY_LEN;
	int ok;

	ok = k && EVP_PKEY_derive_init(k) > 0 && EVP_PKEY_CTX_set_hkdf_md(k, EVP_sha256()) > 0 &&
	     EVP_PKEY_CTX_set1_hkdf_salt(k, s->header + SEAL_MAGIC_LEN + 8, SEAL_SALT_LEN) > 0 &&
	     EVP_PKEY_CTX_set1_hkdf_key(k, key, SEAL_KEY_LEN) > 0 &&
	     EVP_PKEY_CTX_add1_hkdf_info(k, (const unsigned char *)SEAL_INFO,
					 sizeof(SEAL_INFO) - 1) > 0 &&
	     EVP_PKEY_derive(k, s->key, &len) > 0 && len == SEAL_KEY_LEN;
	EVP_PKEY_CTX_free(k);
	return ok ? 0 : -ENOMEM;
}

static struct seal *seal_new(int fd)
{
	struct seal *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->fd = fd;
	s->aead = EVP_CIPHER_CTX_new();
	s->buf = malloc(SEAL_CHUNK);
	s->sealed = malloc(SEAL_CHUNK_HDR_LEN + SEAL_CHUNK + SEAL_TAG_LEN);
	if (!s->aead || !s->buf || !s->sealed) {
		seal__free(s);
		return NULL;
	}
	return s;
}

void seal__free(struct seal *s)
{
	if (!s)
		return;
	EVP_CIPHER_CTX_free(s->aead);
	OPENSSL_cleanse(s->key, sizeof(s->key));
	if (s->buf)
		OPENSSL_cleanse(s->buf, SEAL_CHUNK);
	free(s->buf);
	free(s->sealed);
	free(s);
}

const char *seal__error(const struct seal *s)
{
	return s->err[0] ? s->err : NULL;
}

/* The associated data and nonce of chunk index, whose 8-byte prefix is hdr. */
static bool chunk_start(struct seal *s, bool enc, const uint8_t *hdr)
{
	uint8_t nonce[NONCE_LEN] = {0}, idx[8];
	int n;

	stream_put64(nonce + 4, s->index);
	stream_put64(idx, s->index);
	return EVP_CipherInit_ex(s->aead, EVP_aes_256_gcm(), NULL, s->key, nonce, enc) == 1 &&
	       EVP_CipherUpdate(s->aead, NULL, &n, s->header, SEAL_HEADER_LEN) == 1 &&
	       EVP_CipherUpdate(s->aead, NULL, &n, idx, sizeof(idx)) == 1 &&
	       EVP_CipherUpdate(s->aead, NULL, &n, hdr, SEAL_CHUNK_HDR_LEN) == 1;
}

int seal__writer(int fd, const uint8_t key[SEAL_KEY_LEN], struct seal **out)
{
	struct seal *s = seal_new(fd);
	uint8_t *h;
	int ret;

	if (!s)
		return -ENOMEM;
	h = s->header;
	memcpy(h, SEAL_MAGIC, SEAL_MAGIC_LEN);
	stream_put16(h + 8, SEAL_VERSION);
	stream_put16(h + 10, 0);
	stream_put32(h + 12, SEAL_CHUNK);
	if (getrandom(h + 16, SEAL_SALT_LEN, 0) != SEAL_SALT_LEN) {
		seal__free(s);
		return -EIO;
	}
	ret = derive(s, key);
	if (!ret)
		ret = full_write(fd, h, SEAL_HEADER_LEN);
	if (ret) {
		seal__free(s);
		return ret;
	}
	*out = s;
	return 0;
}

static int seal_chunk(struct seal *s, uint32_t flags)
{
	uint8_t *c = s->sealed;
	int n, m;

	stream_put32(c, (uint32_t)s->len);
	stream_put32(c + 4, flags);
	if (!chunk_start(s, true, c) ||
	    EVP_CipherUpdate(s->aead, c + SEAL_CHUNK_HDR_LEN, &n, s->buf, (int)s->len) != 1 ||
	    EVP_CipherFinal_ex(s->aead, c + SEAL_CHUNK_HDR_LEN + n, &m) != 1 ||
	    EVP_CIPHER_CTX_ctrl(s->aead, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN,
				c + SEAL_CHUNK_HDR_LEN + s->len) != 1)
		return -EIO;
	s->index++;
	n = full_write(s->fd, c, SEAL_CHUNK_HDR_LEN + s->len + SEAL_TAG_LEN);
	s->len = 0;
	return n;
}

int seal__write(struct seal *s, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	int ret;

	while (len) {
		size_t take = MIN(len, SEAL_CHUNK - s->len);

		memcpy(s->buf + s->len, p, take);
		s->len += take;
		p += take;
		len -= take;
		if (s->len == SEAL_CHUNK) {
			ret = seal_chunk(s, 0);
			if (ret)
				return ret;
		}
	}
	return 0;
}

int seal__finish(struct seal *s)
{
	return seal_chunk(s, SEAL_FINAL);
}

int seal__reader(int fd, const uint8_t key[SEAL_KEY_LEN], struct seal **out)
{
	struct seal *s = seal_new(fd);
	int ret;

	if (!s)
		return -ENOMEM;
	ret = full_read(fd, s->header, SEAL_HEADER_LEN);
	if (!ret && (memcmp(s->header, SEAL_MAGIC, SEAL_MAGIC_LEN) ||
		     stream_get16(s->header + 8) != SEAL_VERSION || stream_get16(s->header + 10) ||
		     stream_get32(s->header + 12) != SEAL_CHUNK))
		ret = -EBADMSG;
	if (!ret)
		ret = derive(s, key);
	if (ret) {
		seal__free(s);
		return ret == -ENODATA ? -EBADMSG : ret;
	}
	*out = s;
	return 0;
}

static ssize_t bad(struct seal *s, const char *why)
{
	snprintf(s->err, sizeof(s->err), "encrypted snapshot, chunk %llu: %s",
		 (unsigned long long)s->index, why);
	return -EBADMSG;
}

/* The next chunk, opened into buf: 0, -ENODATA after the final one, -EBADMSG, -errno. */
static ssize_t open_chunk(struct seal *s)
{
	uint8_t *c = s->sealed, extra;
	uint32_t len, flags;
	int n, m, ret;

	if (s->final)
		return full_read(s->fd, &extra, 1) == -ENODATA
			   ? -ENODATA
			   : bad(s, "bytes after the final chunk");
	ret = full_read(s->fd, c, SEAL_CHUNK_HDR_LEN);
	if (ret)
		return ret == -EBADMSG || ret == -ENODATA ? bad(s, "the file is cut short") : ret;
	len = stream_get32(c);
	flags = stream_get32(c + 4);
	if (len > SEAL_CHUNK || (flags & ~SEAL_FINAL) ||
	    (!(flags & SEAL_FINAL) && len != SEAL_CHUNK))
		return bad(s, "a chunk header that is not one");
	ret = full_read(s->fd, c + SEAL_CHUNK_HDR_LEN, len + SEAL_TAG_LEN);
	if (ret)
		return ret == -EBADMSG || ret == -ENODATA ? bad(s, "the file is cut short") : ret;
	if (!chunk_start(s, false, c) ||
	    EVP_CipherUpdate(s->aead, s->buf, &n, c + SEAL_CHUNK_HDR_LEN, (int)len) != 1 ||
	    EVP_CIPHER_CTX_ctrl(s->aead, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN,
				c + SEAL_CHUNK_HDR_LEN + len) != 1 ||
	    EVP_CipherFinal_ex(s->aead, s->buf + n, &m) != 1)
		return bad(s, "it does not open with this key (another key, or changed)");
	s->index++;
	s->len = len;
	s->pos = 0;
	s->final = flags & SEAL_FINAL;
	return 0;
}

ssize_t seal__read(struct seal *s, void *buf, size_t len)
{
	ssize_t ret;
	size_t take;

	while (s->pos == s->len) {
		ret = open_chunk(s);
		if (ret)
			return ret;
	}
	take = MIN(len, s->len - s->pos);
	memcpy(buf, s->buf + s->pos, take);
	s->pos += take;
	return (ssize_t)take;
}

int seal__attach_reader(struct stream_io *io, int fd, const uint8_t *key, char *err, size_t errlen)
{
	uint8_t magic[SEAL_MAGIC_LEN];
	struct seal *s;
	bool sealed;
	int ret;

	sealed = pread(fd, magic, sizeof(magic), 0) == (ssize_t)sizeof(magic) &&
		 !memcmp(magic, SEAL_MAGIC, SEAL_MAGIC_LEN);
	if (sealed && !key) {
		snprintf(err, errlen,
			 "the snapshot is encrypted: give its key (--encrypt-key FILE)");
		return -EINVAL;
	}
	if (!sealed && key) {
		snprintf(err, errlen, "--encrypt-key was given, but the snapshot is not encrypted");
		return -EINVAL;
	}
	if (!sealed)
		return 0;
	ret = seal__reader(fd, key, &s);
	if (!ret)
		ret = stream_io__seal(io, s);
	if (ret)
		snprintf(err, errlen, "cannot read the encrypted snapshot's header: %s",
			 strerror(-ret));
	return ret;
}
