// SPDX-License-Identifier: GPL-2.0
/*
 * hvpipe-soak: the guest side of lab/soak.
 *
 * Usage: hvpipe-soak -n COUNT [-c SRCID]... [-d] [-m] SRCID...
 *
 * For each SRCID (a traffic source) one fd stays open for the whole run, a
 * writer thread sends COUNT numbered messages to it and a reader thread
 * checks every message the host sends until the host's end marker. Each
 * source's reader behaves differently: by index modulo 4 it polls before
 * each read, reads slowly, stops for a while every few hundred messages,
 * or blocks in read(). A writer whose write() fails retries the same
 * message, so the host must see 0..COUNT-1 in order, once each.
 *
 * -c SRCID: a churn source. A thread opens its fd, reads a little of what
 * the host sends it, and closes it with messages still queued, in a loop;
 * it also checks that a second CREATE_HANDLE of a traffic source fails
 * with EALREADY. What it reads is checked like the rest and counted: the
 * host checks that what it sent there was read here or counted as dropped
 * by the driver (debugfs dropped_closed and dropped_no_handle).
 *
 * -d: a thread sets papr_hvpipe.queue_depth (which new fds take) to
 * random values meanwhile.
 *
 * -m: a thread takes the driver through partition migrations meanwhile,
 * with the test-only debugfs file "migrate": "suspend", then "migrated" or
 * "resume" in turn, the calls mobility.c makes. Writers block across the
 * suspension; a write that spans a completed migration fails with EPIPE
 * (counted as epipe_migration when a migration overlapped it, and sent
 * again). One to three seconds apart, and never before MIGRATE_EVERY
 * messages arrived since the last: each costs the sources their
 * connection's recovery, and on a timer alone a slow run got more of them
 * the slower it went.
 *
 * Message (both directions), big-endian: u32 magic "SOAK", u32 source ID,
 * u32 sequence number, u32 length of the whole message (20 to 4048), bytes
 * of a pattern of the three, then the CRC-32 (zlib's) of all before it.
 * The end marker has sequence number 0xffffffff and carries, after the
 * length, how many messages its sender sent.
 *
 * Output, one line each, for lab/soak to parse:
 *   soak: rx SRCID received=N dup=N misrouted=N corrupt=N order=N
 *         lost_notices=N expected=N missing=SEQ,...
 *   soak: tx SRCID sent=N eio=N einval=N epipe=N eopnotsupp=N other=N
 *         epipe_migration=N
 *   soak: churn SRCID opens=N read=N misrouted=N corrupt=N
 *   soak: churn ealready=N unexpected=N depth_changes=N migrations=N
 *         migrate_every=N
 * Exit status 0, or 1 when an unexpected error stopped the run (the line
 * "soak: error ..." says which).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <asm/papr-hvpipe.h>

#define DEVPATH		"/dev/papr-hvpipe"
#define DEPTH_PARAM	"/sys/module/papr_hvpipe/parameters/queue_depth"
#define MIGRATE		"/sys/kernel/debug/papr-hvpipe/migrate"
#define MIGRATE_EVERY	200	/* messages in, at least, between migrations */
#define MAGIC		0x534f414bU	/* "SOAK" */
#define END_SEQ		0xffffffffU
#define HDR		sizeof(struct papr_hvpipe_hdr)
#define MAX_PAYLOAD	4048
#define MIN_MSG		20
#define MAX_SOURCES	16
#define MAX_MISSING	64

struct traffic {
	uint32_t srcid;
	int index;
	int fd;
	pthread_t reader, writer;
	/* reader */
	unsigned long received, dup, misrouted, corrupt, order, lost_notices;
	uint32_t expected;
	uint8_t *seen;		/* one byte per sequence number */
	size_t seen_len;
	long long last;
	/* writer */
	unsigned long sent, eio, einval, epipe, eopnotsupp, other;
	unsigned long epipe_migration;
};

struct churn {
	uint32_t srcid;
	unsigned long opens, read, misrouted, corrupt;
};

static unsigned int count;
static struct traffic traffic[MAX_SOURCES];
static int ntraffic;
static struct churn churns[MAX_SOURCES];
static int nchurn;
static int depth_changes_on, migrate_on;
static unsigned long migrations;
/* Odd while a migration is under way; bumped at its start and its end. */
static volatile unsigned long migration_gen;
/* Messages the readers took in, for the migrator's pace. */
static unsigned long arrived;
static volatile int readers_done;
static unsigned long ealready, unexpected, depth_changes;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void fail(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&out_lock);
	printf("soak: error ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(1);
}

static uint32_t crc32(const uint8_t *p, size_t n)
{
	uint32_t crc = 0xffffffffU;
	int k;

	while (n--) {
		crc ^= *p++;
		for (k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xedb88320U & -(crc & 1));
	}
	return ~crc;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3];
}

/* Message length for a sequence number: mostly small, a quarter up to max. */
static size_t msg_len(uint32_t srcid, uint32_t seq)
{
	uint32_t h = (seq * 2654435761U) ^ srcid;

	h ^= h >> 13;
	if (h % 4 == 0)
		return MIN_MSG + h % (MAX_PAYLOAD - MIN_MSG + 1);
	return MIN_MSG + h % 237;
}

/* Build a message into buf, return its length. */
static size_t build(uint8_t *buf, uint32_t srcid, uint32_t seq, uint32_t arg)
{
	size_t len = seq == END_SEQ ? MIN_MSG + 4 : msg_len(srcid, seq);
	size_t i;

	put32(buf, MAGIC);
	put32(buf + 4, srcid);
	put32(buf + 8, seq);
	put32(buf + 12, len);
	for (i = 16; i < len - 4; i++)
		buf[i] = (uint8_t)(seq * 7 + i * 13 + srcid);
	if (seq == END_SEQ)
		put32(buf + 16, arg);
	put32(buf + len - 4, crc32(buf, len - 4));
	return len;
}

/*
 * Check one message; 0 if intact, -1 if corrupt. *seq and *arg (the end
 * marker's count) are set when intact.
 */
static int check(const uint8_t *buf, size_t len, uint32_t *srcid,
		 uint32_t *seq, uint32_t *arg)
{
	size_t i;

	if (len < MIN_MSG || get32(buf) != MAGIC || get32(buf + 12) != len ||
	    crc32(buf, len - 4) != get32(buf + len - 4))
		return -1;
	*srcid = get32(buf + 4);
	*seq = get32(buf + 8);
	if (*seq == END_SEQ) {
		*arg = get32(buf + 16);
		return 0;
	}
	for (i = 16; i < len - 4; i++)
		if (buf[i] != (uint8_t)(*seq * 7 + i * 13 + *srcid))
			return -1;
	return 0;
}

static unsigned int rnd(unsigned int *state, unsigned int n)
{
	*state = *state * 1103515245U + 12345U;
	return (*state >> 8) % n;
}

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static int open_source(int devfd, uint32_t srcid)
{
	return ioctl(devfd, PAPR_HVPIPE_IOC_CREATE_HANDLE, &srcid);
}

static void note_seq(struct traffic *t, uint32_t seq)
{
	if (seq >= t->seen_len) {
		size_t n = t->seen_len ? t->seen_len : 1024;

		while (n <= seq)
			n *= 2;
		t->seen = realloc(t->seen, n);
		if (!t->seen)
			fail("out of memory");
		memset(t->seen + t->seen_len, 0, n - t->seen_len);
		t->seen_len = n;
	}
	if (t->seen[seq]) {
		t->dup++;
		return;
	}
	t->seen[seq] = 1;
	t->received++;
	__atomic_add_fetch(&arrived, 1, __ATOMIC_RELAXED);
	if ((long long)seq < t->last)
		t->order++;
	t->last = seq;
}

static void *reader(void *arg)
{
	struct traffic *t = arg;
	unsigned int state = t->srcid, mode = t->index % 4;
	uint8_t buf[HDR + MAX_PAYLOAD];
	struct papr_hvpipe_hdr hdr;
	uint32_t srcid, seq, end;
	unsigned long n = 0;
	ssize_t r;

	for (;;) {
		if (mode == 0) {
			struct pollfd p = { .fd = t->fd, .events = POLLIN };

			if (poll(&p, 1, -1) < 0)
				fail("poll 0x%08x: %s", t->srcid, strerror(errno));
		} else if (mode == 1 && rnd(&state, 4) == 0) {
			sleep_ms(rnd(&state, 5));
		} else if (mode == 2 && n && n % 300 == 0) {
			sleep_ms(1000);	/* the queue fills: back-pressure */
		}
		r = read(t->fd, buf, sizeof(buf));
		if (r < 0)
			fail("read 0x%08x: %s", t->srcid, strerror(errno));
		if ((size_t)r < HDR)
			fail("read 0x%08x: %zd bytes", t->srcid, r);
		memcpy(&hdr, buf, HDR);
		if (hdr.flags & HVPIPE_LOST_CONNECTION) {
			t->lost_notices++;
			continue;
		}
		if (!(hdr.flags & HVPIPE_MSG_AVAILABLE))
			fail("read 0x%08x: flags 0x%x", t->srcid, hdr.flags);
		n++;
		if (check(buf + HDR, r - HDR, &srcid, &seq, &end)) {
			t->corrupt++;
			continue;
		}
		if (srcid != t->srcid) {
			t->misrouted++;
			continue;
		}
		if (seq == END_SEQ) {
			t->expected = end;
			break;
		}
		note_seq(t, seq);
	}
	return NULL;
}

static void *writer(void *arg)
{
	struct traffic *t = arg;
	uint8_t buf[HDR + MAX_PAYLOAD];
	uint32_t seq = 0;
	size_t len;

	unsigned long gen;

	memset(buf, 0, HDR);
	while (seq <= count) {
		/* After the COUNT messages, the end marker. */
		len = build(buf + HDR, t->srcid, seq < count ? seq : END_SEQ,
			    count);
		gen = migration_gen;
		if (write(t->fd, buf, HDR + len) == (ssize_t)(HDR + len)) {
			t->sent += seq < count;
			seq++;
			continue;
		}
		switch (errno) {
		case EIO:
			t->eio++;
			break;
		case EINVAL:
			t->einval++;
			break;
		case EPIPE:
			t->epipe++;
			if (gen & 1 || gen != migration_gen)
				t->epipe_migration++;
			sleep_ms(20);	/* the HMC reconnects */
			break;
		case EOPNOTSUPP:
			t->eopnotsupp++;
			break;
		default:
			t->other++;
			fprintf(stderr, "soak: write 0x%08x: %s\n", t->srcid,
				strerror(errno));
			sleep_ms(10);
			break;
		}
	}
	return NULL;
}

static void *churner(void *arg)
{
	uint8_t buf[HDR + MAX_PAYLOAD];
	unsigned int state = 1, k, i;
	uint32_t srcid, seq, end;
	int devfd, fd;
	ssize_t r;

	devfd = open(DEVPATH, O_RDONLY);
	if (devfd < 0)
		fail("open %s: %s", DEVPATH, strerror(errno));
	while (!readers_done) {
		for (i = 0; i < (unsigned int)nchurn; i++) {
			struct churn *c = &churns[i];

			fd = open_source(devfd, c->srcid);
			if (fd < 0)
				fail("CREATE_HANDLE 0x%08x: %s", c->srcid,
				     strerror(errno));
			fcntl(fd, F_SETFL, O_NONBLOCK);
			c->opens++;
			sleep_ms(rnd(&state, 40));
			/* Read a few, leave the rest queued for the close. */
			for (k = rnd(&state, 3); k; k--) {
				r = read(fd, buf, sizeof(buf));
				if (r < 0 && errno == EAGAIN)
					break;
				if (r < (ssize_t)HDR)
					fail("read churn 0x%08x: %s", c->srcid,
					     r < 0 ? strerror(errno) : "short");
				if (!(((struct papr_hvpipe_hdr *)buf)->flags &
				      HVPIPE_MSG_AVAILABLE))
					continue;
				c->read++;
				if (check(buf + HDR, r - HDR, &srcid, &seq,
					  &end))
					c->corrupt++;
				else if (srcid != c->srcid)
					c->misrouted++;
			}
			close(fd);
		}
		/* A traffic source is taken: a second handle must fail. */
		if (ntraffic) {
			fd = open_source(devfd,
					 traffic[rnd(&state, ntraffic)].srcid);
			if (fd >= 0) {
				unexpected++;
				close(fd);
			} else if (errno == EALREADY) {
				ealready++;
			} else {
				unexpected++;
			}
		}
	}
	close(devfd);
	return NULL;
}

static void *depth_changer(void *arg)
{
	unsigned int state = 7;
	char val[16];
	int fd, n;

	while (!readers_done) {
		fd = open(DEPTH_PARAM, O_WRONLY);
		if (fd < 0)
			fail("open %s: %s", DEPTH_PARAM, strerror(errno));
		n = snprintf(val, sizeof(val), "%u\n", 1 + rnd(&state, 64));
		if (write(fd, val, n) != n)
			fail("write %s: %s", DEPTH_PARAM, strerror(errno));
		close(fd);
		depth_changes++;
		sleep_ms(100 + rnd(&state, 200));
	}
	return NULL;
}

static void migrate_step(const char *step)
{
	int fd = open(MIGRATE, O_WRONLY);

	if (fd < 0)
		fail("open %s: %s", MIGRATE, strerror(errno));
	if (write(fd, step, strlen(step)) != (ssize_t)strlen(step))
		fail("write %s to %s: %s", step, MIGRATE, strerror(errno));
	close(fd);
}

static void *migrator(void *arg)
{
	unsigned int state = 11;
	unsigned long since = 0;

	while (!readers_done) {
		sleep_ms(1000 + rnd(&state, 2000));
		while (!readers_done &&
		       __atomic_load_n(&arrived, __ATOMIC_RELAXED) - since <
		       MIGRATE_EVERY)
			sleep_ms(10);
		if (readers_done)
			break;
		since = __atomic_load_n(&arrived, __ATOMIC_RELAXED);
		__atomic_add_fetch(&migration_gen, 1, __ATOMIC_SEQ_CST);
		migrate_step("suspend");
		sleep_ms(50 + rnd(&state, 250));
		/* A completed migration, or a failed one, in turn. */
		migrate_step(migrations % 2 ? "resume" : "migrated");
		__atomic_add_fetch(&migration_gen, 1, __ATOMIC_SEQ_CST);
		migrations++;
	}
	return NULL;
}

static uint32_t parse_srcid(const char *s)
{
	char *end;
	unsigned long v = strtoul(s, &end, 0);

	if (*end || v > 0xffffffffUL) {
		fprintf(stderr, "hvpipe-soak: bad source ID %s\n", s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	pthread_t churn_thread, depth_thread, migrate_thread;
	int devfd, opt, i;
	size_t m;

	while ((opt = getopt(argc, argv, "n:c:dm")) != -1) {
		switch (opt) {
		case 'n':
			count = strtoul(optarg, NULL, 0);
			break;
		case 'c':
			if (nchurn == MAX_SOURCES)
				return 2;
			churns[nchurn++].srcid = parse_srcid(optarg);
			break;
		case 'd':
			depth_changes_on = 1;
			break;
		case 'm':
			migrate_on = 1;
			break;
		default:
			fprintf(stderr, "usage: hvpipe-soak -n COUNT [-c SRCID]... [-d] [-m] SRCID...\n");
			return 2;
		}
	}
	for (; optind < argc && ntraffic < MAX_SOURCES; optind++) {
		traffic[ntraffic].srcid = parse_srcid(argv[optind]);
		traffic[ntraffic].index = ntraffic;
		traffic[ntraffic].last = -1;
		ntraffic++;
	}

	devfd = open(DEVPATH, O_RDONLY);
	if (devfd < 0)
		fail("open %s: %s", DEVPATH, strerror(errno));
	for (i = 0; i < ntraffic; i++) {
		traffic[i].fd = open_source(devfd, traffic[i].srcid);
		if (traffic[i].fd < 0)
			fail("CREATE_HANDLE 0x%08x: %s", traffic[i].srcid,
			     strerror(errno));
	}
	close(devfd);
	printf("soak: ready\n");
	fflush(stdout);
	/* The host starts checking what its HMCs receive when it sees that. */
	sleep_ms(1000);

	for (i = 0; i < ntraffic; i++) {
		pthread_create(&traffic[i].reader, NULL, reader, &traffic[i]);
		pthread_create(&traffic[i].writer, NULL, writer, &traffic[i]);
	}
	if (nchurn)
		pthread_create(&churn_thread, NULL, churner, NULL);
	if (depth_changes_on)
		pthread_create(&depth_thread, NULL, depth_changer, NULL);
	if (migrate_on)
		pthread_create(&migrate_thread, NULL, migrator, NULL);

	for (i = 0; i < ntraffic; i++) {
		pthread_join(traffic[i].writer, NULL);
		pthread_join(traffic[i].reader, NULL);
	}
	readers_done = 1;
	if (nchurn)
		pthread_join(churn_thread, NULL);
	if (depth_changes_on)
		pthread_join(depth_thread, NULL);
	if (migrate_on)
		pthread_join(migrate_thread, NULL);

	for (i = 0; i < ntraffic; i++) {
		struct traffic *t = &traffic[i];
		unsigned int shown = 0;

		printf("soak: rx 0x%08x received=%lu dup=%lu misrouted=%lu corrupt=%lu order=%lu lost_notices=%lu expected=%u missing=",
		       t->srcid, t->received, t->dup, t->misrouted, t->corrupt,
		       t->order, t->lost_notices, t->expected);
		for (m = 0; m < t->expected; m++) {
			if (m < t->seen_len && t->seen[m])
				continue;
			if (shown++ == MAX_MISSING) {
				printf("...");
				break;
			}
			printf("%s%zu", shown > 1 ? "," : "", m);
		}
		printf("\n");
		printf("soak: tx 0x%08x sent=%lu eio=%lu einval=%lu epipe=%lu eopnotsupp=%lu other=%lu epipe_migration=%lu\n",
		       t->srcid, t->sent, t->eio, t->einval, t->epipe,
		       t->eopnotsupp, t->other, t->epipe_migration);
		close(t->fd);
	}
	for (i = 0; i < nchurn; i++)
		printf("soak: churn 0x%08x opens=%lu read=%lu misrouted=%lu corrupt=%lu\n",
		       churns[i].srcid, churns[i].opens, churns[i].read,
		       churns[i].misrouted, churns[i].corrupt);
	printf("soak: churn ealready=%lu unexpected=%lu depth_changes=%lu migrations=%lu migrate_every=%d\n",
	       ealready, unexpected, depth_changes, migrations, MIGRATE_EVERY);
	return 0;
}
