// SPDX-License-Identifier: GPL-2.0
/*
 * Client of the papr-hvpipe lab's control channel (see lab.h).
 *
 * Requests are "<id> VERB args\n", replies "<id> OK ...\n" or
 * "<id> ERR ...\n". The id is the pid and a sequence number, so that a reply
 * meant for an earlier test (killed while it waited) is recognised and
 * dropped. One request is in flight at a time.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lab.h"

static int lab_find_port(char *path, size_t len)
{
	const char *dir = "/sys/class/virtio-ports";
	char name[128], file[512];
	struct dirent *de;
	int found = 0;
	DIR *d;
	FILE *f;

	d = opendir(dir);
	if (!d)
		return 0;
	while (!found && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(file, sizeof(file), "%s/%s/name", dir, de->d_name);
		f = fopen(file, "r");
		if (!f)
			continue;
		if (fgets(name, sizeof(name), f)) {
			name[strcspn(name, "\n")] = '\0';
			if (!strcmp(name, LAB_PORT_NAME)) {
				snprintf(path, len, "/dev/%s", de->d_name);
				found = 1;
			}
		}
		fclose(f);
	}
	closedir(d);
	return found;
}

/* The lab's channel, or NULL (errno ENOENT: this guest has none). */
struct lab *lab_open(void)
{
	char path[300], reply[512], *p, *end;
	struct lab *lab;

	if (!lab_find_port(path, sizeof(path))) {
		errno = ENOENT;
		return NULL;
	}
	lab = calloc(1, sizeof(*lab));
	if (!lab)
		return NULL;
	pthread_mutex_init(&lab->lock, NULL);
	lab->fd = open(path, O_RDWR | O_CLOEXEC);
	if (lab->fd < 0)
		goto err;
	if (lab_req(lab, reply, sizeof(reply), "HELLO"))
		goto err;
	for (p = reply; lab->nsources < LAB_MAX_SOURCES; p = end) {
		unsigned long id = strtoul(p, &end, 0);

		if (end == p)
			break;
		lab->srcids[lab->nsources++] = id;
	}
	return lab;
err:
	if (lab->fd >= 0)
		close(lab->fd);
	free(lab);
	errno = EIO;
	return NULL;
}

void lab_close(struct lab *lab)
{
	if (!lab)
		return;
	close(lab->fd);
	free(lab);
}

static int lab_write_all(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t n = write(fd, s, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -EIO;
		s += n;
		len -= n;
	}
	return 0;
}

/* Next line from the channel, without its newline, in lab->buf. */
static char *lab_read_line(struct lab *lab, size_t *taken)
{
	struct pollfd pfd = { .fd = lab->fd, .events = POLLIN };
	char *nl;
	ssize_t n;

	for (;;) {
		nl = memchr(lab->buf, '\n', lab->len);
		if (nl) {
			*nl = '\0';
			*taken = nl - lab->buf + 1;
			return lab->buf;
		}
		if (lab->len == sizeof(lab->buf))
			return NULL;	/* a line longer than any reply */
		n = poll(&pfd, 1, LAB_TIMEOUT_MS);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return NULL;
		n = read(lab->fd, lab->buf + lab->len, sizeof(lab->buf) - lab->len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return NULL;
		lab->len += n;
	}
}

static int lab_vreq(struct lab *lab, char *out, size_t outlen,
		    const char *fmt, va_list ap)
{
	char id[32], *req, *line, *rest;
	size_t taken, idlen;
	int ret = -EIO, n;

	pthread_mutex_lock(&lab->lock);
	idlen = snprintf(id, sizeof(id), "%d.%u", getpid(), ++lab->seq);
	n = vasprintf(&req, fmt, ap);
	if (n < 0)
		goto out;
	if (lab_write_all(lab->fd, id, idlen) || lab_write_all(lab->fd, " ", 1) ||
	    lab_write_all(lab->fd, req, n) || lab_write_all(lab->fd, "\n", 1)) {
		free(req);
		goto out;
	}
	free(req);
	for (;;) {
		line = lab_read_line(lab, &taken);
		if (!line)
			goto out;
		if (!strncmp(line, id, idlen) && line[idlen] == ' ')
			break;
		memmove(lab->buf, lab->buf + taken, lab->len - taken);
		lab->len -= taken;
	}
	rest = line + idlen + 1;
	if (!strncmp(rest, "OK", 2) && (!rest[2] || rest[2] == ' ')) {
		ret = 0;
		rest += rest[2] ? 3 : 2;
	} else {
		ret = 1;
		if (!strncmp(rest, "ERR ", 4))
			rest += 4;
	}
	if (out && outlen)
		snprintf(out, outlen, "%s", rest);
	memmove(lab->buf, lab->buf + taken, lab->len - taken);
	lab->len -= taken;
out:
	pthread_mutex_unlock(&lab->lock);
	return ret;
}

/*
 * One request: 0 and the text after "OK" in @out, 1 and the reason after
 * "ERR" in @out, or -EIO if the channel failed.
 */
int lab_req(struct lab *lab, char *out, size_t outlen, const char *fmt, ...)
{
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = lab_vreq(lab, out, outlen, fmt, ap);
	va_end(ap);
	return ret;
}

/* One request whose result does not matter: 0 on OK, -1 otherwise. */
int lab_do(struct lab *lab, const char *fmt, ...)
{
	char reply[256];
	va_list ap;
	int ret;

	va_start(ap, fmt);
	ret = lab_vreq(lab, reply, sizeof(reply), fmt, ap);
	va_end(ap);
	if (ret)
		fprintf(stderr, "# lab: %s: %s\n", fmt,
			ret < 0 ? "control channel failed" : reply);
	return ret ? -1 : 0;
}

/* One counter of a source (see the conductor), or -1. */
long long lab_stat(struct lab *lab, __u32 srcid, const char *name)
{
	char reply[512], *p;
	size_t len = strlen(name);

	if (lab_req(lab, reply, sizeof(reply), "STATS 0x%08x", srcid))
		return -1;
	for (p = strtok(reply, " "); p; p = strtok(NULL, " "))
		if (!strncmp(p, name, len) && p[len] == '=')
			return strtoll(p + len + 1, NULL, 0);
	return -1;
}

/* Have @srcid send @data to the partition, @delay_ms from now. */
int lab_send(struct lab *lab, __u32 srcid, const void *data, size_t len,
	     unsigned int delay_ms)
{
	const unsigned char *d = data;
	char *hex;
	size_t i;
	int ret;

	hex = malloc(2 * len + 1);
	if (!hex)
		return -1;
	for (i = 0; i < len; i++)
		sprintf(hex + 2 * i, "%02x", d[i]);
	hex[2 * len] = '\0';
	ret = lab_do(lab, "SEND 0x%08x %s %u", srcid, hex, delay_ms);
	free(hex);
	return ret;
}

/*
 * The oldest payload @srcid received from the partition: its length (which
 * may exceed @len: only @len bytes are copied), or -1 if none came in time.
 */
int lab_recv(struct lab *lab, __u32 srcid, void *data, size_t len,
	     unsigned int timeout_ms)
{
	unsigned char *d = data;
	char *reply;
	size_t n, i;
	int ret = -1;

	reply = malloc(LAB_BUF_SIZE);
	if (!reply)
		return -1;
	if (lab_req(lab, reply, LAB_BUF_SIZE, "RECV 0x%08x %u", srcid,
		    timeout_ms))
		goto out;
	n = strlen(reply) / 2;
	for (i = 0; i < n && i < len; i++) {
		unsigned int byte;

		if (sscanf(reply + 2 * i, "%2x", &byte) != 1)
			goto out;
		d[i] = byte;
	}
	ret = n;
out:
	free(reply);
	return ret;
}

/* The payload pattern the conductor's SENDPAT sends. */
void lab_pattern(void *buf, size_t len, unsigned int seed)
{
	unsigned char *b = buf;
	size_t i;

	for (i = 0; i < len; i++)
		b[i] = (seed * 131 + i) % 251;
}
