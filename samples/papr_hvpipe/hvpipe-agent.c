// SPDX-License-Identifier: GPL-2.0
/*
 * hvpipe-agent: answer requests from Hardware Management Consoles (HMCs)
 * over the PAPR hypervisor pipe, /dev/papr-hvpipe.
 *
 * Usage: hvpipe-agent [-c COUNT] SRCID...
 *
 * The agent opens one file descriptor per HMC source ID (0x02000001 ...)
 * and serves them all from one poll() loop. After COUNT requests it exits
 * (default: never).
 *
 * A request is one hvpipe payload of ASCII text, a verb and its argument:
 *
 *	help		the verbs
 *	uname		system name, release, version and machine
 *	uptime		seconds since boot and the load averages
 *	meminfo		MemTotal, MemFree and MemAvailable
 *	echo TEXT	TEXT
 *
 * The answer is one payload: "ok VERB" or "error VERB", a newline, then
 * the text, cut to the 4048 bytes a payload can hold. Requests are answered
 * in order, on the source they came from.
 *
 * When the connection to an HMC is lost, the driver queues a notice after
 * the HMC's last message; the agent then opens the source again, so that it
 * answers the HMC when it comes back.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <asm/papr-hvpipe.h>

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define DEVPATH		"/dev/papr-hvpipe"
#define MAX_PAYLOAD	4048
#define HDR_LEN		sizeof(struct papr_hvpipe_hdr)
#define MAX_SOURCES	16

struct source {
	__u32 srcid;
	int fd;
};

struct reply {
	size_t len;
	char text[MAX_PAYLOAD + 1];
};

static void say(struct reply *r, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (r->len >= MAX_PAYLOAD)
		return;
	va_start(ap, fmt);
	n = vsnprintf(r->text + r->len, sizeof(r->text) - r->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		r->len += n;
	if (r->len > MAX_PAYLOAD)
		r->len = MAX_PAYLOAD;
}

static int do_help(struct reply *r, const char *arg)
{
	say(r, "help uname uptime meminfo echo");
	return 0;
}

static int do_uname(struct reply *r, const char *arg)
{
	struct utsname u;

	if (uname(&u))
		return -errno;
	say(r, "%s %s %s %s %s", u.sysname, u.nodename, u.release, u.version,
	    u.machine);
	return 0;
}

static int read_file(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

static int do_uptime(struct reply *r, const char *arg)
{
	char up[128], load[128], l1[16], l5[16], l15[16];
	int ret;

	ret = read_file("/proc/uptime", up, sizeof(up));
	if (!ret)
		ret = read_file("/proc/loadavg", load, sizeof(load));
	if (ret)
		return ret;
	if (sscanf(load, "%15s %15s %15s", l1, l5, l15) != 3)
		return -EIO;
	say(r, "up %.2f s, load average %s %s %s", strtod(up, NULL), l1, l5,
	    l15);
	return 0;
}

static int do_meminfo(struct reply *r, const char *arg)
{
	static const char * const keys[] = { "MemTotal:", "MemFree:",
					     "MemAvailable:" };
	char line[256];
	unsigned int i;
	FILE *f;

	f = fopen("/proc/meminfo", "r");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		for (i = 0; i < ARRAY_SIZE(keys); i++)
			if (!strncmp(line, keys[i], strlen(keys[i])))
				say(r, "%s", line);
	fclose(f);
	if (r->len && r->text[r->len - 1] == '\n')
		r->len--;
	return 0;
}

static int do_echo(struct reply *r, const char *arg)
{
	say(r, "%s", arg);
	return 0;
}

static const struct verb {
	const char *name;
	int (*fn)(struct reply *r, const char *arg);
} verbs[] = {
	{ "help", do_help },
	{ "uname", do_uname },
	{ "uptime", do_uptime },
	{ "meminfo", do_meminfo },
	{ "echo", do_echo },
};

/* Answer one request (NUL-terminated, may be modified) into r. */
static void serve(char *req, struct reply *r)
{
	char *arg = req + strcspn(req, "\n ");
	unsigned int i;
	struct reply body = { 0 };
	int ret = -EBADRQC;

	if (*arg)
		*arg++ = '\0';
	arg[strcspn(arg, "\n")] = '\0';
	for (i = 0; i < ARRAY_SIZE(verbs); i++)
		if (!strcmp(req, verbs[i].name)) {
			ret = verbs[i].fn(&body, arg);
			break;
		}
	r->len = 0;
	if (ret)
		say(r, "error %s\n%s", req, ret == -EBADRQC ?
		    "unknown request, try help" : strerror(-ret));
	else
		say(r, "ok %s\n%.*s", req, (int)body.len, body.text);
}

static int open_source(int dev, struct source *s)
{
	s->fd = ioctl(dev, PAPR_HVPIPE_IOC_CREATE_HANDLE, &s->srcid);
	if (s->fd < 0) {
		fprintf(stderr, "hvpipe-agent: source 0x%08x: %s\n", s->srcid,
			strerror(errno));
		return -1;
	}
	return 0;
}

/* Handle what is readable on s; returns 1 if a request was answered. */
static int handle(int dev, struct source *s)
{
	static char buf[HDR_LEN + MAX_PAYLOAD + 1];
	struct papr_hvpipe_hdr *hdr = (void *)buf;
	static char out[HDR_LEN + MAX_PAYLOAD];
	static struct reply r;
	ssize_t n;

	n = read(s->fd, buf, HDR_LEN + MAX_PAYLOAD);
	if (n < 0) {
		if (errno == EAGAIN || errno == EINTR)
			return 0;
		fprintf(stderr, "hvpipe-agent: read 0x%08x: %s\n", s->srcid,
			strerror(errno));
		return -1;
	}
	if (hdr->flags & HVPIPE_LOST_CONNECTION) {
		fprintf(stderr, "hvpipe-agent: 0x%08x: connection lost\n",
			s->srcid);
		close(s->fd);
		return open_source(dev, s);
	}
	if (!(hdr->flags & HVPIPE_MSG_AVAILABLE) || n <= (ssize_t)HDR_LEN)
		return 0;
	buf[n] = '\0';
	fprintf(stderr, "hvpipe-agent: 0x%08x: %s\n", s->srcid, buf + HDR_LEN);
	serve(buf + HDR_LEN, &r);
	memset(out, 0, HDR_LEN);
	memcpy(out + HDR_LEN, r.text, r.len);
	if (write(s->fd, out, HDR_LEN + r.len) < 0)
		fprintf(stderr, "hvpipe-agent: answer to 0x%08x: %s\n",
			s->srcid, strerror(errno));
	return 1;
}

int main(int argc, char **argv)
{
	struct pollfd pfd[MAX_SOURCES];
	struct source src[MAX_SOURCES];
	long count = -1;
	int dev, i, n = 0, opt, ret;

	while ((opt = getopt(argc, argv, "c:")) != -1) {
		if (opt != 'c')
			goto usage;
		count = strtol(optarg, NULL, 0);
	}
	for (i = optind; i < argc && n < MAX_SOURCES; i++)
		src[n++].srcid = strtoul(argv[i], NULL, 0);
	if (!n)
		goto usage;

	dev = open(DEVPATH, O_RDONLY);
	if (dev < 0) {
		perror(DEVPATH);
		return 1;
	}
	for (i = 0; i < n; i++)
		if (open_source(dev, &src[i]))
			return 1;
	fprintf(stderr, "hvpipe-agent: serving %d source(s)\n", n);

	while (count) {
		for (i = 0; i < n; i++) {
			pfd[i].fd = src[i].fd;
			pfd[i].events = POLLIN;
		}
		if (poll(pfd, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("poll");
			return 1;
		}
		for (i = 0; i < n && count; i++) {
			/* POLLHUP comes with POLLIN: the notice is there to read. */
			if (!(pfd[i].revents & POLLIN))
				continue;
			ret = handle(dev, &src[i]);
			if (ret < 0)
				return 1;
			if (ret > 0 && count > 0)
				count--;
		}
	}
	return 0;

usage:
	fprintf(stderr, "usage: hvpipe-agent [-c COUNT] SRCID...\n");
	return 2;
}
