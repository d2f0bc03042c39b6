// SPDX-License-Identifier: GPL-2.0
/* The cluster's CA and certificates, made with OpenSSL's libcrypto (`godwit cluster init`). */
#include <errno.h>
#include <fcntl.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "godwit/cluster/tls.h"

int tls_files__set(struct tls_files *f, const char *dir, const char *name, char *err, size_t errlen)
{
	const char *paths[3];
	size_t i;

	if (snprintf(f->ca, sizeof(f->ca), "%s/%s.crt", dir, PKI_CA) >= (int)sizeof(f->ca) ||
	    snprintf(f->cert, sizeof(f->cert), "%s/%s.crt", dir, name) >= (int)sizeof(f->cert) ||
	    snprintf(f->key, sizeof(f->key), "%s/%s.key", dir, name) >= (int)sizeof(f->key)) {
		snprintf(err, errlen, "certificate directory %s: path too long", dir);
		return -ENAMETOOLONG;
	}
	paths[0] = f->ca;
	paths[1] = f->cert;
	paths[2] = f->key;
	for (i = 0; i < 3; i++) {
		if (access(paths[i], R_OK)) {
			snprintf(err, errlen,
				 "cannot read %s: %s (make the cluster's certificates with "
				 "`godwit cluster init --dir %s`)",
				 paths[i], strerror(errno), dir);
			return -ENOENT;
		}
	}
	return 0;
}

static void ssl_err(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_get_error();
	char reason[256];

	ERR_error_string_n(e, reason, sizeof(reason));
	snprintf(err, errlen, "%s: %s", what, e ? reason : "failed");
	ERR_clear_error();
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return -EINVAL;
	ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -ENOMEM;
}

/* "IP:127.0.0.1,DNS:localhost,...": what the certificate may be presented as. */
static int san(const struct pki_names *names, char *out, size_t len)
{
	size_t i, used;

	used = (size_t)snprintf(out, len, "IP:127.0.0.1,DNS:localhost");
	for (i = 0; i < names->nr_ips && used < len; i++)
		used += (size_t)snprintf(out + used, len - used, ",IP:%s", names->ips[i]);
	for (i = 0; i < names->nr_dns && used < len; i++)
		used += (size_t)snprintf(out + used, len - used, ",DNS:%s", names->dns[i]);
	return used < len ? 0 : -E2BIG;
}

/* A certificate for key, signed by ca_key (self-signed when ca is NULL). */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *ca, EVP_PKEY *ca_key, int days,
		       const char *usage, const char *alt)
{
	unsigned char serial[16];
	X509_NAME *name;
	BIGNUM *bn = NULL;
	X509 *cert = X509_new();

	if (!cert || RAND_bytes(serial, sizeof(serial)) != 1)
		goto err;
	serial[0] &= 0x7f; /* positive */
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)))
		goto err;
	if (!X509_set_version(cert, 2) || !X509_gmtime_adj(X509_getm_notBefore(cert), -3600) ||
	    !X509_gmtime_adj(X509_getm_notAfter(cert), (long)days * 86400) ||
	    !X509_set_pubkey(cert, key))
		goto err;
	name = X509_get_subject_name(cert);
	if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"godwit",
					-1, -1, 0) ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1,
					0))
		goto err;
	if (!X509_set_issuer_name(cert, ca ? X509_get_subject_name(ca) : name))
		goto err;
	if (!ca) {
		if (add_ext(cert, cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
		    add_ext(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign") ||
		    add_ext(cert, cert, NID_subject_key_identifier, "hash"))
			goto err;
	} else {
		if (add_ext(cert, ca, NID_basic_constraints, "critical,CA:FALSE") ||
		    add_ext(cert, ca, NID_key_usage, "critical,digitalSignature") ||
		    add_ext(cert, ca, NID_ext_key_usage, usage) ||
		    add_ext(cert, ca, NID_authority_key_identifier, "keyid") ||
		    (alt && add_ext(cert, ca, NID_subject_alt_name, alt)))
			goto err;
	}
	if (!X509_sign(cert, ca_key, EVP_sha256()))
		goto err;
	BN_free(bn);
	return cert;
err:
	BN_free(bn);
	X509_free(cert);
	return NULL;
}

static int write_pem(const char *dir, const char *name, const char *ext, EVP_PKEY *key, X509 *cert,
		     char *err, size_t errlen)
{
	char path[600];
	FILE *f;
	int fd, ok;

	snprintf(path, sizeof(path), "%s/%s.%s", dir, name, ext);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, key ? 0600 : 0644);
	if (fd < 0) {
		snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
		return -errno;
	}
	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		return -ENOMEM;
	}
	ok =
	    key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, cert);
	if (fclose(f) || !ok) {
		snprintf(err, errlen, "cannot write %s", path);
		return -EIO;
	}
	return 0;
}

static int load_ca(const char *dir, X509 **ca, EVP_PKEY **ca_key, char *err, size_t errlen)
{
	char path[600];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.crt", dir, PKI_CA);
	f = fopen(path, "re");
	*ca = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
	if (f)
		fclose(f);
	snprintf(path, sizeof(path), "%s/%s.key", dir, PKI_CA);
	f = fopen(path, "re");
	*ca_key = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
	if (f)
		fclose(f);
	if (!*ca || !*ca_key) {
		snprintf(err, errlen,
			 "no cluster CA in %s (ca.crt and ca.key; `godwit cluster init --dir %s` "
			 "makes one)",
			 dir, dir);
		X509_free(*ca);
		EVP_PKEY_free(*ca_key);
		return -ENOENT;
	}
	return 0;
}

/* A key and a certificate for it from the CA, written as dir/name.{key,crt}. */
static int issue(const char *dir, const char *name, X509 *ca, EVP_PKEY *ca_key, int days,
		 const char *usage, const char *alt, char *err, size_t errlen)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *cert = NULL;
	int ret;

	if (!key) {
		ssl_err(err, errlen, "cannot make a key");
		return -ENOMEM;
	}
	cert = make_cert(key, name, ca, ca_key, days, usage, alt);
	if (!cert) {
		ssl_err(err, errlen, "cannot make a certificate");
		ret = -EINVAL;
		goto out;
	}
	ret = write_pem(dir, name, "key", key, NULL, err, errlen);
	if (!ret)
		ret = write_pem(dir, name, "crt", NULL, cert, err, errlen);
out:
	X509_free(cert);
	EVP_PKEY_free(key);
	return ret;
}

static int check_name(const char *name, char *err, size_t errlen)
{
	size_t i, n = strlen(name);

	for (i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			break;
	}
	if (!n || i < n || n > 63 || !strcmp(name, PKI_CA)) {
		snprintf(err, errlen,
			 "certificate name '%s': use 1..63 letters, digits, '-' or '_' (not "
			 "'ca')",
			 name);
		return -EINVAL;
	}
	return 0;
}

int pki__issue(const char *dir, const char *name, const struct pki_names *names, int days,
	       char *err, size_t errlen)
{
	EVP_PKEY *ca_key;
	char alt[2048];
	X509 *ca;
	int ret;

	ret = check_name(name, err, errlen);
	if (ret)
		return ret;
	if (san(names, alt, sizeof(alt))) {
		snprintf(err, errlen, "too many names for one certificate");
		return -E2BIG;
	}
	ret = load_ca(dir, &ca, &ca_key, err, errlen);
	if (ret)
		return ret;
	ret = issue(dir, name, ca, ca_key, days, "serverAuth,clientAuth", alt, err, errlen);
	X509_free(ca);
	EVP_PKEY_free(ca_key);
	return ret;
}

int pki__init(const char *dir, const struct pki_names *names, int days, char *err, size_t errlen)
{
	EVP_PKEY *ca_key = NULL;
	char path[600], alt[2048];
	X509 *ca = NULL;
	int ret;

	if (san(names, alt, sizeof(alt))) {
		snprintf(err, errlen, "too many names for one certificate");
		return -E2BIG;
	}
	if (mkdir(dir, 0700) && errno != EEXIST) {
		snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
		return -errno;
	}
	snprintf(path, sizeof(path), "%s/%s.key", dir, PKI_CA);
	if (!access(path, F_OK)) {
		snprintf(err, errlen,
			 "%s already has a cluster CA (%s); use another directory, or `godwit "
			 "cluster cert` for more certificates from it",
			 dir, path);
		return -EEXIST;
	}
	ca_key = EVP_EC_gen("P-256");
	ca = ca_key ? make_cert(ca_key, "godwit cluster CA", NULL, ca_key, days, NULL, NULL) : NULL;
	if (!ca) {
		ssl_err(err, errlen, "cannot make the CA");
		ret = -EINVAL;
		goto out;
	}
	ret = write_pem(dir, PKI_CA, "key", ca_key, NULL, err, errlen);
	if (!ret)
		ret = write_pem(dir, PKI_CA, "crt", NULL, ca, err, errlen);
	if (!ret)
		ret = issue(dir, PKI_NODE, ca, ca_key, days, "serverAuth,clientAuth", alt, err,
			    errlen);
	if (!ret)
		ret = issue(dir, PKI_CLIENT, ca, ca_key, days, "clientAuth", NULL, err, errlen);
out:
	X509_free(ca);
	EVP_PKEY_free(ca_key);
	return ret;
}
