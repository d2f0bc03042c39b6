/* SPDX-License-Identifier: GPL-2.0 */
#ifndef GODWIT_API_SOCKET_H
#define GODWIT_API_SOCKET_H

#include <sys/types.h>

/* The listening unix socket of the API server, and what identifies its file. */
struct api_socket {
	int fd;
	dev_t dev;
	ino_t ino;
};

/*
 * Binds and listens on @path (mode 0600), taking over a stale socket file but
 * never a live one. 0 or -errno; errors are logged for the user.
 */
int api_socket__listen(struct api_socket *sock, const char *path);

/* Closes the socket and unlinks @path if it is still the file we created. */
void api_socket__close(struct api_socket *sock, const char *path);

#endif
