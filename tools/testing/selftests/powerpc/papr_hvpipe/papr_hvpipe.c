// SPDX-License-Identifier: GPL-2.0
/*
 * Tests of /dev/papr-hvpipe, the PAPR hypervisor pipe, through its user ABI.
 *
 * Every test skips when the device is absent. Beyond that, a test needs one
 * of three things:
 *
 * - the device alone: argument checks, EALREADY, poll masks on an idle fd,
 *   races between threads. These open handles on the test sources (below)
 *   but never send, and run everywhere.
 * - a peer: a source that may be written to. These send, and run when the
 *   sources are the lab's or were given explicitly.
 * - the lab: the HMCs of the papr-hvpipe lab, driven through its control
 *   channel (lab.h) to send, echo, disconnect and inject firmware faults.
 *   These run only in the lab. A channel that exists but fails (open,
 *   HELLO) fails the test, and so does a payload a test leaves with
 *   firmware, unreceived.
 *
 * The test sources are the lab's first two (0x02000001 and 0x02000002,
 * connected and idle at the start of each test), else the two HMC source
 * IDs of the environment variable PAPR_HVPIPE_TEST_SOURCES, e.g.
 *
 *	PAPR_HVPIPE_TEST_SOURCES="0x02000003 0x02000004" ./papr_hvpipe
 *
 * else 0x0200fffe and 0x0200fffd, HMC indexes no partition is expected to
 * have, which only the device tests use. On a partition with real HMCs,
 * name a source only if the tests may hold its handle and send to it: a
 * payload that HMC sends meanwhile goes to the test, not to its agent.
 *
 * Our driver publishes counters in debugfs (/sys/kernel/debug/papr-hvpipe);
 * without them the tests still check the behaviour, and leave out (and say
 * so) only their counter checks.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <asm/papr-hvpipe.h>

#include "../../kselftest_harness.h"
#include "lab.h"

#define DEVPATH		"/dev/papr-hvpipe"
#define STATS		"/sys/kernel/debug/papr-hvpipe/stats"
#define SOURCES		"/sys/kernel/debug/papr-hvpipe/sources"
#define DEPTH_PARAM	"/sys/module/papr_hvpipe/parameters/queue_depth"
#define HDR_LEN		((int)sizeof(struct papr_hvpipe_hdr))
#define MAX_PAYLOAD	4048
#define BUF_LEN		(HDR_LEN + MAX_PAYLOAD)
#define SOURCES_ENV	"PAPR_HVPIPE_TEST_SOURCES"
#define HMC_SOURCE	0x02000000	/* type 0x02, reserved byte 0 */
#define IDLE_A		0x0200fffe
#define IDLE_B		0x0200fffd
#define WAIT_MS		5000

/* The test sources (see the top of the file), set by fixture_setup(). */
static __u32 test_srcids[2] = { IDLE_A, IDLE_B };
#define SRC_A		(test_srcids[0])
#define SRC_B		(test_srcids[1])
/* Whether the test sources may be written to. */
static bool have_peer;

/* --- helpers ------------------------------------------------------------ */

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* A source fd, or -errno. */
static int hv_handle(int dev, __u32 srcid)
{
	__u32 id = srcid;
	int fd;

	fd = ioctl(dev, PAPR_HVPIPE_IOC_CREATE_HANDLE, &id);
	return fd < 0 ? -errno : fd;
}

/* Send a payload; the write() result, or -errno. */
static ssize_t hv_write(int fd, const void *payload, size_t len)
{
	char buf[HDR_LEN + MAX_PAYLOAD + 64];
	ssize_t n;

	memset(buf, 0, HDR_LEN);
	memcpy(buf + HDR_LEN, payload, len);
	n = write(fd, buf, HDR_LEN + len);
	return n < 0 ? -errno : n;
}

static ssize_t hv_write_pat(int fd, size_t len, unsigned int seed)
{
	char payload[MAX_PAYLOAD + 64];

	lab_pattern(payload, len, seed);
	return hv_write(fd, payload, len);
}

/* read() into buf (BUF_LEN bytes, poisoned first); the result or -errno. */
static ssize_t hv_read(int fd, void *buf)
{
	ssize_t n;

	memset(buf, 0xff, BUF_LEN);
	n = read(fd, buf, BUF_LEN);
	return n < 0 ? -errno : n;
}

static short hv_poll(int fd, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN | POLLOUT };

	if (poll(&pfd, 1, timeout_ms) < 0)
		return -1;
	return pfd.revents;
}

/*
 * Wait for POLLIN; false on timeout. POLLHUP, which poll() reports
 * whatever is asked, does not end the wait.
 */
static bool hv_wait_in(int fd, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	long long end = now_ms() + timeout_ms;
	int left;

	do {
		left = end - now_ms();
		if (poll(&pfd, 1, left > 0 ? left : 0) < 0)
			return false;
		if (pfd.revents & POLLIN)
			return true;
		if (pfd.revents)
			usleep(10000);
	} while (now_ms() < end);
	return false;
}

/* Wait for POLLHUP; false on timeout. */
static bool hv_wait_hup(int fd, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd };

	return poll(&pfd, 1, timeout_ms) == 1 && (pfd.revents & POLLHUP);
}

/* Is the header all zero but its flags? */
static bool hdr_clean(const void *buf)
{
	const struct papr_hvpipe_hdr *h = buf;
	size_t i;

	if (h->version)
		return false;
	for (i = 0; i < sizeof(h->reserved); i++)
		if (h->reserved[i])
			return false;
	for (i = 0; i < sizeof(h->reserved2); i++)
		if (h->reserved2[i])
			return false;
	return true;
}

static __u32 hdr_flags(const void *buf)
{
	return ((const struct papr_hvpipe_hdr *)buf)->flags;
}

/* Is buf a message carrying pattern(len, seed)? */
static bool is_msg(const void *buf, ssize_t n, size_t len, unsigned int seed)
{
	char want[MAX_PAYLOAD];

	if (n != HDR_LEN + (ssize_t)len || hdr_flags(buf) != HVPIPE_MSG_AVAILABLE ||
	    !hdr_clean(buf))
		return false;
	lab_pattern(want, len, seed);
	return !memcmp((const char *)buf + HDR_LEN, want, len);
}

/* A counter from debugfs "stats", or -1. */
static long long stat_get(const char *name)
{
	char line[128];
	long long v = -1;
	size_t len = strlen(name);
	FILE *f;

	f = fopen(STATS, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, name, len) && line[len] == ' ') {
			v = strtoll(line + len, NULL, 10);
			break;
		}
	fclose(f);
	return v;
}

/* Wait until stats counter name reaches at least min; its value. */
static long long stat_wait(const char *name, long long min, int timeout_ms)
{
	long long end = now_ms() + timeout_ms, v;

	while ((v = stat_get(name)) < min && now_ms() < end)
		usleep(10000);
	return v;
}

/* A field of srcid's line in debugfs "sources", or -1. */
static long long source_get(__u32 srcid, const char *field)
{
	char line[256], key[16], *p;
	size_t len = strlen(field);
	long long v = -1;
	FILE *f;

	f = fopen(SOURCES, "r");
	if (!f)
		return -1;
	snprintf(key, sizeof(key), "0x%08x ", srcid);
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, strlen(key)))
			continue;
		for (p = strtok(line, "\n "); p; p = strtok(NULL, "\n "))
			if (!strncmp(p, field, len) && p[len] == '=')
				v = strtoll(p + len + 1, NULL, 10);
	}
	fclose(f);
	return v;
}

/* Wait until field of srcid's line reaches at least min; its value. */
static long long source_wait(__u32 srcid, const char *field, long long min,
			     int timeout_ms)
{
	long long end = now_ms() + timeout_ms, v;

	while ((v = source_get(srcid, field)) < min && now_ms() < end)
		usleep(10000);
	return v;
}

/*
 * Does the driver publish its counters? Without them a test still checks
 * the behaviour; it leaves out its counter checks and says so, once.
 */
static bool counters(struct __test_metadata *_metadata)
{
	static bool said;

	if (!access(STATS, R_OK))
		return true;
	if (!said)
		TH_LOG("no %s: counter checks left out", STATS);
	said = true;
	return false;
}

/*
 * A debugfs counter (COUNT), a field of a source's line (SOURCE_COUNT): -1
 * without counters; a counter the driver does not publish fails the test.
 */
#define COUNT(name)		stat_count(_metadata, name)
#define SOURCE_COUNT(id, field)	source_count(_metadata, id, field)

static long long stat_count(struct __test_metadata *_metadata,
			    const char *name)
{
	long long v = stat_get(name);

	if (v < 0 && counters(_metadata))
		EXPECT_LE(0, v) {
			TH_LOG("no counter %s in %s", name, STATS);
		}
	return v;
}

static long long source_count(struct __test_metadata *_metadata, __u32 srcid,
			      const char *field)
{
	long long v = source_get(srcid, field);

	if (v < 0 && counters(_metadata))
		EXPECT_LE(0, v) {
			TH_LOG("no %s of 0x%08x in %s", field, srcid, SOURCES);
		}
	return v;
}

/*
 * A counter check, made only when the driver has counters: the counts must
 * be equal, and -1 (a counter that could not be read) is never a count.
 */
#define EXPECT_COUNT(want, got) do {				\
	if (counters(_metadata)) {				\
		long long __want = (want), __got = (got);	\
								\
		EXPECT_LE(0, __want);				\
		EXPECT_EQ(__want, __got);			\
	}							\
} while (0)

static unsigned int queue_depth(void)
{
	unsigned int depth = 16;
	FILE *f = fopen(DEPTH_PARAM, "r");

	if (f) {
		if (fscanf(f, "%u", &depth) != 1)
			depth = 16;
		fclose(f);
	}
	return depth;
}

/* NULL, hidden from the compiler's checks of read() and write(). */
static __attribute__((noipa)) void *nowhere_ptr(void)
{
	return NULL;
}

/* A page that faults on any access. */
static void *bad_page(void)
{
	void *p = mmap(NULL, getpagesize(), PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/*
 * A counter of the lab's source once QEMU is in sync with it: every frame
 * QEMU sent the source before (an ACK sent as the partition received a
 * payload, a payload the partition sent) is counted. Without the sync,
 * the lab may answer before it has read them.
 */
static long long lab_count(struct lab *lab, __u32 srcid, const char *name)
{
	if (lab_do(lab, "SYNC 0x%08x", srcid))
		return -1;
	return lab_stat(lab, srcid, name);
}

/* What the source received from the partition, once QEMU is in sync. */
static long long lab_rx(struct lab *lab, __u32 srcid)
{
	return lab_count(lab, srcid, "rx");
}

/*
 * Skip the rest of a test, unless it has failed already: SKIP() would
 * report the failure as a skip. True: the test stops here.
 */
static bool skip_test(struct __test_metadata *_metadata, const char *why)
{
	if (_metadata->exit_code == KSFT_FAIL) {
		TH_LOG("not skipped, failed already: %s", why);
		return true;
	}
	SKIP(return true, "%s", why);
}

/* Empty the lab's queues and counters; payloads left unreceived, or -1. */
static int lab_reset(struct __test_metadata *_metadata, struct lab *lab)
{
	char reply[128];

	if (lab_req(lab, reply, sizeof(reply), "RESET")) {
		TH_LOG("lab RESET: %s", reply);
		return -1;
	}
	return atoi(reply);
}

/*
 * The lab's channel, or NULL when this machine has none; a channel that
 * exists but does not answer fails the test. With it, the test sources are
 * the lab's.
 */
static struct lab *lab_setup(struct __test_metadata *_metadata)
{
	struct lab *lab = lab_open();
	int left;

	if (!lab) {
		ASSERT_EQ(ENOENT, errno) {
			TH_LOG("lab control channel %s: %s", LAB_PORT_NAME,
			       strerror(errno));
		}
		return NULL;
	}
	ASSERT_LE(2, lab->nsources);
	test_srcids[0] = lab->srcids[0];
	test_srcids[1] = lab->srcids[1];
	have_peer = true;
	left = lab_reset(_metadata, lab);
	ASSERT_LE(0, left);
	/* A test killed before its teardown left them: it failed already. */
	if (left)
		TH_LOG("lab RESET: %d payloads left unreceived before this test",
		       left);
	return lab;
}

/* The test sources of PAPR_HVPIPE_TEST_SOURCES, when it is set. */
static void env_sources(struct __test_metadata *_metadata)
{
	const char *env = getenv(SOURCES_ENV);
	char *end;
	int i;

	if (!env)
		return;
	for (i = 0; i < 2; i++, env = end) {
		unsigned long id = strtoul(env, &end, 0);

		ASSERT_TRUE(end != env && id <= 0xffffffffUL &&
			    (id & 0xffff0000UL) == HMC_SOURCE) {
			TH_LOG("%s=\"%s\": two HMC source IDs (0x0200QQQQ)",
			       SOURCES_ENV, getenv(SOURCES_ENV));
		}
		test_srcids[i] = id;
		end += strspn(end, " ,");
	}
	ASSERT_NE(SRC_A, SRC_B);
	have_peer = true;
}

/* Skip (and say so) when there is no control channel. */
static bool lab_absent(struct __test_metadata *_metadata, struct lab *lab)
{
	if (lab)
		return false;
	return skip_test(_metadata, "no lab control channel " LAB_PORT_NAME);
}

/* Skip (and say so) when the test sources may not be written to. */
static bool peer_absent(struct __test_metadata *_metadata)
{
	if (have_peer)
		return false;
	return skip_test(_metadata, "no source to send to: no lab, no "
			 SOURCES_ENV);
}

/* A handle on SRC_A for a test of the lab's traffic; -1 when it skips. */
static int lab_handle(struct __test_metadata *_metadata, int dev,
		      struct lab *lab)
{
	int fd;

	if (lab_absent(_metadata, lab))
		return -1;
	fd = hv_handle(dev, SRC_A);
	ASSERT_LE(0, fd);
	return fd;
}

/*
 * Expect the lost-connection notice as the next message on fd; reading it
 * ends the hang-up.
 */
static void expect_lost(struct __test_metadata *_metadata, int fd, void *buf)
{
	ASSERT_TRUE(hv_wait_hup(fd, WAIT_MS));
	ASSERT_TRUE(hv_wait_in(fd, WAIT_MS));
	EXPECT_EQ(HDR_LEN, hv_read(fd, buf));
	EXPECT_EQ(HVPIPE_LOST_CONNECTION, hdr_flags(buf));
	EXPECT_FALSE(hv_poll(fd, 0) & POLLHUP);
}

/*
 * Reconnect SRC_A after a lost connection: fd sends (len bytes) and receives
 * (len + 1) again, and the hang-up is gone.
 */
static void expect_reconnect(struct __test_metadata *_metadata,
			     struct lab *lab, int fd, void *buf, size_t len,
			     unsigned int seed)
{
	ASSERT_EQ(0, lab_do(lab, "CONNECT 0x%08x", SRC_A));
	EXPECT_EQ(HDR_LEN + (ssize_t)len, hv_write_pat(fd, len, seed));
	EXPECT_EQ(POLLOUT, hv_poll(fd, 0));
	ASSERT_EQ(0, lab_do(lab, "SENDPAT 0x%08x %zu %u", SRC_A, len + 1,
			    seed + 1));
	ASSERT_TRUE(hv_wait_in(fd, WAIT_MS));
	EXPECT_TRUE(is_msg(buf, hv_read(fd, buf), len + 1, seed + 1));
}

/* --- fixtures ----------------------------------------------------------- */

/*
 * What every fixture holds: the device, and the lab's channel in *lab (NULL
 * when there is none). False when the test is skipped.
 */
static bool fixture_setup(struct __test_metadata *_metadata, int *dev,
			  struct lab **lab)
{
	*lab = NULL;
	*dev = open(DEVPATH, O_RDONLY);
	if (*dev < 0 && errno == ENOENT)
		SKIP(return false, "no " DEVPATH);
	ASSERT_LE(0, *dev);
	*lab = lab_setup(_metadata);
	if (!*lab)
		env_sources(_metadata);
	return true;
}

/*
 * The fixtures of one source's traffic need the lab and hold a handle on
 * SRC_A in *fd.
 */
static void source_setup(struct __test_metadata *_metadata, int *dev,
			 struct lab **lab, int *fd)
{
	*fd = -1;
	if (fixture_setup(_metadata, dev, lab))
		*fd = lab_handle(_metadata, *dev, *lab);
}

/*
 * Close what the setup opened (fd: -1 in fixtures without a handle). A
 * payload the test left with firmware, unreceived, would block the pipe of
 * every source: it fails the test.
 */
static void fixture_teardown(struct __test_metadata *_metadata, int dev,
			     struct lab *lab, int fd)
{
	if (fd >= 0)
		close(fd);
	if (dev >= 0)
		close(dev);
	if (lab)
		EXPECT_EQ(0, lab_reset(_metadata, lab)) {
			TH_LOG("payloads left unreceived with firmware");
		}
	lab_close(lab);
}

/* The main fixture: each test opens the sources it needs. */
FIXTURE(hvpipe) {
	int dev;
	struct lab *lab;
	char buf[BUF_LEN];
};

FIXTURE_SETUP(hvpipe)
{
	fixture_setup(_metadata, &self->dev, &self->lab);
}

FIXTURE_TEARDOWN(hvpipe)
{
	fixture_teardown(_metadata, self->dev, self->lab, -1);
}

/* Payloads of every interesting size come back byte for byte. */
FIXTURE(roundtrip) {
	int dev, fd;
	struct lab *lab;
	char buf[BUF_LEN];
};

FIXTURE_VARIANT(roundtrip) {
	size_t len;
};

FIXTURE_VARIANT_ADD(roundtrip, bytes_1) { .len = 1 };
FIXTURE_VARIANT_ADD(roundtrip, bytes_2) { .len = 2 };
FIXTURE_VARIANT_ADD(roundtrip, bytes_47) { .len = 47 };
FIXTURE_VARIANT_ADD(roundtrip, bytes_48) { .len = 48 };
FIXTURE_VARIANT_ADD(roundtrip, bytes_49) { .len = 49 };
FIXTURE_VARIANT_ADD(roundtrip, bytes_1024) { .len = 1024 };
FIXTURE_VARIANT_ADD(roundtrip, bytes_4047) { .len = 4047 };
FIXTURE_VARIANT_ADD(roundtrip, bytes_4048) { .len = 4048 };

FIXTURE_SETUP(roundtrip)
{
	self->fd = -1;
	fixture_setup(_metadata, &self->dev, &self->lab);
}

FIXTURE_TEARDOWN(roundtrip)
{
	fixture_teardown(_metadata, self->dev, self->lab, self->fd);
}

TEST_F(roundtrip, echo)
{
	size_t len = variant->len;
	char got[MAX_PAYLOAD], want[MAX_PAYLOAD];

	self->fd = lab_handle(_metadata, self->dev, self->lab);
	if (self->fd < 0)
		return;
	ASSERT_EQ(0, lab_do(self->lab, "ECHO 0x%08x 1", SRC_A));
	ASSERT_EQ(HDR_LEN + (ssize_t)len, hv_write_pat(self->fd, len, len));
	/* The source has it: a successful write means delivered. */
	ASSERT_EQ(1, lab_rx(self->lab, SRC_A));
	ASSERT_TRUE(hv_wait_in(self->fd, WAIT_MS));
	ASSERT_EQ(HDR_LEN + (ssize_t)len, hv_read(self->fd, self->buf));
	EXPECT_EQ(HVPIPE_MSG_AVAILABLE, hdr_flags(self->buf));
	EXPECT_TRUE(hdr_clean(self->buf));
	lab_pattern(want, len, len);
	memcpy(got, self->buf + HDR_LEN, len);
	EXPECT_EQ(0, memcmp(got, want, len));
	/* Nothing more, and exactly one ACK to the source. */
	ASSERT_EQ(0, fcntl(self->fd, F_SETFL, O_NONBLOCK));
	EXPECT_EQ(-EAGAIN, hv_read(self->fd, self->buf));
	EXPECT_EQ(1, lab_count(self->lab, SRC_A, "acked"));
}

/*
 * The same sizes from the partition to a source: delivered, and in the lab
 * checked byte for byte by the host.
 */
TEST_F(roundtrip, send)
{
	size_t len = variant->len;
	char got[MAX_PAYLOAD], want[MAX_PAYLOAD];

	if (peer_absent(_metadata))
		return;
	self->fd = hv_handle(self->dev, SRC_A);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(HDR_LEN + (ssize_t)len, hv_write_pat(self->fd, len, len + 7));
	if (!self->lab)
		return;
	ASSERT_EQ((int)len, lab_recv(self->lab, SRC_A, got, sizeof(got), 1000));
	lab_pattern(want, len, len + 7);
	EXPECT_EQ(0, memcmp(got, want, len));
}

/* Payloads of 0 and 4049 bytes (and headers alone) are not sent. */
TEST_F(hvpipe, write_bad_size)
{
	long long sent = COUNT("sent");
	char buf[HDR_LEN + MAX_PAYLOAD + 2] = { 0 };
	int fd;

	fd = hv_handle(self->dev, SRC_A);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-1, write(fd, buf, HDR_LEN));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, write(fd, buf, HDR_LEN + MAX_PAYLOAD + 1));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, write(fd, buf, 1));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, write(fd, buf, 0));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_COUNT(sent, COUNT("sent"));
	if (self->lab) {
		EXPECT_EQ(0, lab_rx(self->lab, SRC_A));
		/* And the fd still works. */
		EXPECT_EQ(HDR_LEN + 1, hv_write_pat(fd, 1, 1));
		EXPECT_EQ(1, lab_rx(self->lab, SRC_A));
	}
	close(fd);
}

/* Two sources at once: every message stays on its own source. */
TEST_F(hvpipe, sources_do_not_cross)
{
	int a, b, i;
	ssize_t n;

	if (lab_absent(_metadata, self->lab))
		return;
	a = hv_handle(self->dev, SRC_A);
	b = hv_handle(self->dev, SRC_B);
	ASSERT_LE(0, a);
	ASSERT_LE(0, b);
	ASSERT_EQ(0, lab_do(self->lab, "ECHO 0x%08x 1", SRC_A));
	ASSERT_EQ(0, lab_do(self->lab, "ECHO 0x%08x 1", SRC_B));
	for (i = 0; i < 8; i++) {
		ASSERT_EQ(HDR_LEN + 100 + i, hv_write_pat(a, 100 + i, 1000 + i));
		ASSERT_EQ(HDR_LEN + 200 + i, hv_write_pat(b, 200 + i, 2000 + i));
	}
	/*
	 * The lab's commands come on a channel of their own: only once it has
	 * taken in every message are the echoes queued before the patterns.
	 */
	ASSERT_EQ(8, lab_rx(self->lab, SRC_A));
	ASSERT_EQ(8, lab_rx(self->lab, SRC_B));
	ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 64 3000 4", SRC_A));
	ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 65 4000 4", SRC_B));
	for (i = 0; i < 12; i++) {
		ASSERT_TRUE(hv_wait_in(a, WAIT_MS));
		n = hv_read(a, self->buf);
		EXPECT_TRUE(is_msg(self->buf, n, i < 8 ? 100 + i : 64,
				   i < 8 ? 1000 + i : 3000 + i - 8));
		ASSERT_TRUE(hv_wait_in(b, WAIT_MS));
		n = hv_read(b, self->buf);
		EXPECT_TRUE(is_msg(self->buf, n, i < 8 ? 200 + i : 65,
				   i < 8 ? 2000 + i : 4000 + i - 8));
	}
	EXPECT_FALSE(hv_wait_in(a, 100));
	EXPECT_EQ(0, hv_poll(b, 0) & POLLIN);
	EXPECT_EQ(8, lab_stat(self->lab, SRC_A, "rx"));
	EXPECT_EQ(8, lab_stat(self->lab, SRC_B, "rx"));
	close(a);
	close(b);
}

/* --- CREATE_HANDLE ------------------------------------------------------ */

TEST_F(hvpipe, create_handle_bad_type)
{
	static const __u32 ids[] = {
		0x00000001, 0x01000001, 0x03000001, 0x04000001, 0x82000001,
		0xff000001, 0x12000000,
	};
	size_t i;
	int fd;

	for (i = 0; i < ARRAY_SIZE(ids); i++) {
		EXPECT_EQ(-EINVAL, hv_handle(self->dev, ids[i])) {
			TH_LOG("source 0x%08x", ids[i]);
		}
	}
	/* No fd leaked: the next fd is the lowest free one. */
	fd = dup(0);
	close(fd);
	EXPECT_EQ(fd, hv_handle(self->dev, SRC_A));
}

TEST_F(hvpipe, create_handle_reserved_byte)
{
	static const __u32 ids[] = { 0x02010001, 0x02800001, 0x02ff0001,
					0x02ffffff };
	size_t i;

	for (i = 0; i < ARRAY_SIZE(ids); i++) {
		EXPECT_EQ(-EINVAL, hv_handle(self->dev, ids[i])) {
			TH_LOG("source 0x%08x", ids[i]);
		}
	}
}

TEST_F(hvpipe, create_handle_any_index)
{
	int fd;

	/* Opening a source firmware does not know is allowed. */
	fd = hv_handle(self->dev, 0x0200ffff);
	ASSERT_LE(0, fd);
	close(fd);
	fd = hv_handle(self->dev, 0x02000000);
	ASSERT_LE(0, fd);
	close(fd);
}

TEST_F(hvpipe, create_handle_duplicate)
{
	int fd, fd2;

	fd = hv_handle(self->dev, SRC_A);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-EALREADY, hv_handle(self->dev, SRC_A));
	/* Another open of the device does not help. */
	fd2 = open(DEVPATH, O_RDONLY);
	ASSERT_LE(0, fd2);
	EXPECT_EQ(-EALREADY, hv_handle(fd2, SRC_A));
	close(fd2);
	/* The first fd is untouched by the failures. */
	EXPECT_EQ(POLLOUT, hv_poll(fd, 0) & (POLLIN | POLLOUT | POLLHUP));
	if (self->lab) {
		EXPECT_EQ(HDR_LEN + 5, hv_write_pat(fd, 5, 5));
		ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 9 9", SRC_A));
		ASSERT_TRUE(hv_wait_in(fd, WAIT_MS));
		EXPECT_TRUE(is_msg(self->buf, hv_read(fd, self->buf), 9, 9));
	}
	close(fd);
}

TEST_F(hvpipe, create_handle_after_close)
{
	int i, fd;

	for (i = 0; i < 5; i++) {
		fd = hv_handle(self->dev, SRC_A);
		ASSERT_LE(0, fd);
		close(fd);
	}
	/* The device fd can go first; the source fd keeps working. */
	fd = hv_handle(self->dev, SRC_A);
	ASSERT_LE(0, fd);
	close(self->dev);
	self->dev = -1;
	EXPECT_EQ(POLLOUT, hv_poll(fd, 0) & (POLLIN | POLLOUT | POLLHUP));
	if (self->lab)
		EXPECT_EQ(HDR_LEN + 3, hv_write_pat(fd, 3, 3));
	close(fd);
}

TEST_F(hvpipe, create_handle_flags)
{
	int fd;

	fd = hv_handle(self->dev, SRC_A);
	ASSERT_LE(0, fd);
	EXPECT_EQ(FD_CLOEXEC, fcntl(fd, F_GETFD) & FD_CLOEXEC);
	EXPECT_EQ(O_RDWR, fcntl(fd, F_GETFL) & O_ACCMODE);
	close(fd);
}

TEST_F(hvpipe, unknown_ioctl)
{
	__u32 id = SRC_A;
	int fd;

	errno = 0;
	EXPECT_EQ(-1, ioctl(self->dev, _IOW(PAPR_MISCDEV_IOC_ID, 10, __u32), &id));
	EXPECT_EQ(ENOTTY, errno);
	EXPECT_EQ(-1, ioctl(self->dev, _IOR(PAPR_MISCDEV_IOC_ID, 9, __u32), &id));
	EXPECT_EQ(ENOTTY, errno);
	EXPECT_EQ(-1, ioctl(self->dev, _IOW(PAPR_MISCDEV_IOC_ID, 9, __u64), &id));
	EXPECT_EQ(ENOTTY, errno);
	/* The command is checked before the argument. */
	EXPECT_EQ(-1, ioctl(self->dev, _IOW(PAPR_MISCDEV_IOC_ID, 10, __u32), NULL));
	EXPECT_EQ(ENOTTY, errno);
	fd = hv_handle(self->dev, SRC_A);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-1, ioctl(fd, PAPR_HVPIPE_IOC_CREATE_HANDLE, &id));
	EXPECT_EQ(ENOTTY, errno);
	close(fd);
	/* Nothing was created by any of them. */
	fd = hv_handle(self->dev, SRC_A);
	EXPECT_LE(0, fd);
	close(fd);
}

TEST_F(hvpipe, create_handle_bad_pointer)
{
	void *bad = bad_page();
	int fd;

	ASSERT_NE(NULL, bad);
	errno = 0;
	EXPECT_EQ(-1, ioctl(self->dev, PAPR_HVPIPE_IOC_CREATE_HANDLE, NULL));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(-1, ioctl(self->dev, PAPR_HVPIPE_IOC_CREATE_HANDLE, bad));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(-1, ioctl(self->dev, PAPR_HVPIPE_IOC_CREATE_HANDLE,
			    (void *)-8L));
	EXPECT_EQ(EFAULT, errno);
	fd = hv_handle(self->dev, SRC_A);
	EXPECT_LE(0, fd);
	close(fd);
	munmap(bad, getpagesize());
}

/* --- read and write ----------------------------------------------------- */

TEST_F(hvpipe, write_bad_pointer)
{
	long long sent = COUNT("sent");
	void *bad = bad_page();
	int fd;

	ASSERT_NE(NULL, bad);
	fd = hv_handle(self->dev, SRC_A);
	ASSERT_LE(0, fd);
	errno = 0;
	EXPECT_EQ(-1, write(fd, nowhere_ptr(), HDR_LEN + 8));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(-1, write(fd, bad, HDR_LEN + 8));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_COUNT(sent, COUNT("sent"));
	if (self->lab) {
		EXPECT_EQ(0, lab_rx(self->lab, SRC_A));
		EXPECT_EQ(HDR_LEN + 8, hv_write_pat(fd, 8, 8));
	}
	close(fd);
	munmap(bad, getpagesize());
}

TEST_F(hvpipe, read_bad_pointer)
{
	void *bad = bad_page();
	int fd;

	fd = lab_handle(_metadata, self->dev, self->lab);
	if (fd < 0)
		return;
	ASSERT_NE(NULL, bad);
	ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 300 11", SRC_A));
	ASSERT_TRUE(hv_wait_in(fd, WAIT_MS));
	errno = 0;
	EXPECT_EQ(-1, read(fd, nowhere_ptr(), BUF_LEN));
	EXPECT_EQ(EFAULT, errno);
	EXPECT_EQ(-1, read(fd, bad, BUF_LEN));
	EXPECT_EQ(EFAULT, errno);
	/* The message is still there, whole. */
	EXPECT_TRUE(hv_poll(fd, 0) & POLLIN);
	EXPECT_TRUE(is_msg(self->buf, hv_read(fd, self->buf), 300, 11));
	close(fd);
	munmap(bad, getpagesize());
}

TEST_F(hvpipe, read_short_buffer)
{
	char *poison;
	int fd;

	fd = lab_handle(_metadata, self->dev, self->lab);
	if (fd < 0)
		return;
	poison = malloc(BUF_LEN);
	ASSERT_NE(NULL, poison);
	ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 100 12", SRC_A));
	ASSERT_TRUE(hv_wait_in(fd, WAIT_MS));
	memset(poison, 0xa5, BUF_LEN);
	memset(self->buf, 0xa5, BUF_LEN);
	EXPECT_EQ(-1, read(fd, self->buf, HDR_LEN - 1));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, read(fd, self->buf, HDR_LEN));
	EXPECT_EQ(EMSGSIZE, errno);
	EXPECT_EQ(-1, read(fd, self->buf, HDR_LEN + 99));
	EXPECT_EQ(EMSGSIZE, errno);
	/* Failures leave the buffer alone and the message queued. */
	EXPECT_EQ(0, memcmp(self->buf, poison, BUF_LEN));
	EXPECT_TRUE(hv_poll(fd, 0) & POLLIN);
	memset(self->buf, 0xff, BUF_LEN);
	EXPECT_TRUE(is_msg(self->buf, read(fd, self->buf, HDR_LEN + 100),
			   100, 12));
	free(poison);
	close(fd);
}

TEST_F(hvpipe, read_header_zeroed)
{
	int fd;

	fd = lab_handle(_metadata, self->dev, self->lab);
	if (fd < 0)
		return;
	ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 1 13", SRC_A));
	ASSERT_TRUE(hv_wait_in(fd, WAIT_MS));
	EXPECT_EQ(HDR_LEN + 1, hv_read(fd, self->buf));
	EXPECT_TRUE(hdr_clean(self->buf));
	EXPECT_EQ(HVPIPE_MSG_AVAILABLE, hdr_flags(self->buf));
	/* The lost-connection notice too. */
	ASSERT_EQ(0, lab_do(self->lab, "DISCONNECT 0x%08x", SRC_A));
	expect_lost(_metadata, fd, self->buf);
	EXPECT_TRUE(hdr_clean(self->buf));
	close(fd);
}

/* --- blocking, O_NONBLOCK, poll, epoll, signals --------------------------- */

TEST_F(hvpipe, read_blocks_until_message)
{
	char p[32];
	long long t0;
	int fd;

	fd = lab_handle(_metadata, self->dev, self->lab);
	if (fd < 0)
		return;
	t0 = now_ms();
	lab_pattern(p, sizeof(p), 14);
	ASSERT_EQ(0, lab_send(self->lab, SRC_A, p, sizeof(p), 500));
	EXPECT_TRUE(is_msg(self->buf, hv_read(fd, self->buf), 32, 14));
	EXPECT_LE(400, now_ms() - t0);
	close(fd);
}

TEST_F(hvpipe, read_nonblock)
{
	int fd;

	fd = hv_handle(self->dev, SRC_A);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, fcntl(fd, F_SETFL, O_NONBLOCK));
	EXPECT_EQ(-EAGAIN, hv_read(fd, self->buf));
	if (self->lab) {
		ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 20 15", SRC_A));
		ASSERT_TRUE(hv_wait_in(fd, WAIT_MS));
		EXPECT_TRUE(is_msg(self->buf, hv_read(fd, self->buf), 20, 15));
		EXPECT_EQ(-EAGAIN, hv_read(fd, self->buf));
	}
	close(fd);
}

/* An idle fd can be written to and has nothing to read. */
TEST_F(hvpipe, poll_idle)
{
	int fd;

	fd = hv_handle(self->dev, SRC_A);
	ASSERT_LE(0, fd);
	EXPECT_EQ(POLLOUT, hv_poll(fd, 0));
	close(fd);
}

TEST_F(hvpipe, poll_in_out)
{
	int fd;

	fd = lab_handle(_metadata, self->dev, self->lab);
	if (fd < 0)
		return;
	EXPECT_EQ(POLLOUT, hv_poll(fd, 0));
	ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 20 16", SRC_A));
	ASSERT_TRUE(hv_wait_in(fd, WAIT_MS));
	EXPECT_EQ(POLLIN | POLLOUT, hv_poll(fd, 0));
	EXPECT_TRUE(is_msg(self->buf, hv_read(fd, self->buf), 20, 16));
	EXPECT_EQ(POLLOUT, hv_poll(fd, 0));
	close(fd);
}

/* Wait until epoll reports bit (0: any event); the events reported. */
static unsigned int ep_wait_for(int ep, unsigned int bit)
{
	long long end = now_ms() + WAIT_MS;
	struct epoll_event ev;

	do {
		ev.events = 0;
		if (epoll_wait(ep, &ev, 1, WAIT_MS) < 0)
			return 0;
		if (!bit || (ev.events & bit))
			break;
		usleep(10000);
	} while (now_ms() < end);
	return ev.events;
}

TEST_F(hvpipe, epoll_idle)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT };
	int fd, ep;

	fd = hv_handle(self->dev, SRC_A);
	ASSERT_LE(0, fd);
	ep = epoll_create1(0);
	ASSERT_LE(0, ep);
	ASSERT_EQ(0, epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
	ASSERT_EQ(1, epoll_wait(ep, &ev, 1, 0));
	EXPECT_EQ(EPOLLOUT, ev.events);
	close(ep);
	close(fd);
}

TEST_F(hvpipe, epoll_in_out_hup)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT };
	int fd, ep;

	fd = lab_handle(_metadata, self->dev, self->lab);
	if (fd < 0)
		return;
	ep = epoll_create1(0);
	ASSERT_LE(0, ep);
	ASSERT_EQ(0, epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
	ASSERT_EQ(1, epoll_wait(ep, &ev, 1, 0));
	EXPECT_EQ(EPOLLOUT, ev.events);
	ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 20 17", SRC_A));
	EXPECT_EQ(EPOLLIN | EPOLLOUT, ep_wait_for(ep, EPOLLIN));
	EXPECT_TRUE(is_msg(self->buf, hv_read(fd, self->buf), 20, 17));
	EXPECT_EQ(EPOLLOUT, ep_wait_for(ep, 0));
	ASSERT_EQ(0, lab_do(self->lab, "DISCONNECT 0x%08x", SRC_A));
	EXPECT_EQ(EPOLLIN | EPOLLOUT | EPOLLHUP, ep_wait_for(ep, EPOLLHUP));
	EXPECT_EQ(HDR_LEN, hv_read(fd, self->buf));
	/* Reading the notice ends the hang-up: an epoll loop cannot spin. */
	EXPECT_EQ(EPOLLOUT, ep_wait_for(ep, 0));
	close(ep);
	close(fd);
}

static void on_signal(int sig)
{
}

struct kicker {
	pthread_t target;
	int delay_ms;
};

static void *kick(void *arg)
{
	struct kicker *k = arg;

	usleep(k->delay_ms * 1000);
	pthread_kill(k->target, SIGUSR1);
	return NULL;
}

TEST_F(hvpipe, signal_interrupts_read)
{
	struct sigaction sa = { .sa_handler = on_signal };
	struct kicker k = { .target = pthread_self(), .delay_ms = 200 };
	pthread_t t;
	long long t0;
	int fd;

	fd = hv_handle(self->dev, SRC_A);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, sigaction(SIGUSR1, &sa, NULL));
	t0 = now_ms();
	ASSERT_EQ(0, pthread_create(&t, NULL, kick, &k));
	EXPECT_EQ(-EINTR, hv_read(fd, self->buf));
	EXPECT_LE(150, now_ms() - t0);
	pthread_join(t, NULL);
	close(fd);
}

/* With SA_RESTART the read goes on and gets the message. */
TEST_F(hvpipe, signal_restarts_read)
{
	struct sigaction sa = { .sa_handler = on_signal };
	struct kicker k = { .target = pthread_self(), .delay_ms = 200 };
	char p[10];
	pthread_t t;
	int fd;

	fd = lab_handle(_metadata, self->dev, self->lab);
	if (fd < 0)
		return;
	sa.sa_flags = SA_RESTART;
	ASSERT_EQ(0, sigaction(SIGUSR1, &sa, NULL));
	lab_pattern(p, sizeof(p), 18);
	ASSERT_EQ(0, lab_send(self->lab, SRC_A, p, sizeof(p), 800));
	ASSERT_EQ(0, pthread_create(&t, NULL, kick, &k));
	EXPECT_TRUE(is_msg(self->buf, hv_read(fd, self->buf), 10, 18));
	pthread_join(t, NULL);
	close(fd);
}

/* --- connection loss -------------------------------------------------- */

TEST_F(hvpipe, lost_connection_after_messages)
{
	int fd, i;

	fd = lab_handle(_metadata, self->dev, self->lab);
	if (fd < 0)
		return;
	ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 32 20 3", SRC_A));
	ASSERT_EQ(0, lab_do(self->lab, "WAIT 0x%08x acked 3 %d", SRC_A, WAIT_MS));
	ASSERT_EQ(0, lab_do(self->lab, "DISCONNECT 0x%08x", SRC_A));
	/* Wait for the notice before reading anything. */
	ASSERT_TRUE(hv_wait_hup(fd, WAIT_MS));
	for (i = 0; i < 3; i++)
		EXPECT_TRUE(is_msg(self->buf, hv_read(fd, self->buf), 32, 20 + i));
	EXPECT_EQ(HDR_LEN, hv_read(fd, self->buf));
	EXPECT_EQ(HVPIPE_LOST_CONNECTION, hdr_flags(self->buf));
	ASSERT_EQ(0, fcntl(fd, F_SETFL, O_NONBLOCK));
	EXPECT_EQ(-EAGAIN, hv_read(fd, self->buf));
	/* Reading the notice ended the hang-up. */
	EXPECT_EQ(POLLOUT, hv_poll(fd, 0));
	close(fd);
}

TEST_F(hvpipe, send_to_lost_source)
{
	long long closed;
	int fd;

	fd = lab_handle(_metadata, self->dev, self->lab);
	if (fd < 0)
		return;
	ASSERT_EQ(0, lab_do(self->lab, "DISCONNECT 0x%08x", SRC_A));
	closed = COUNT("send_fw_closed");
	EXPECT_EQ(-EPIPE, hv_write_pat(fd, 10, 21));
	EXPECT_COUNT(closed + 1, COUNT("send_fw_closed"));
	ASSERT_EQ(0, lab_do(self->lab, "CONNECT 0x%08x", SRC_A));
	EXPECT_EQ(0, lab_stat(self->lab, SRC_A, "rx"));
	close(fd);
}

TEST_F(hvpipe, reconnect)
{
	int fd;

	fd = lab_handle(_metadata, self->dev, self->lab);
	if (fd < 0)
		return;
	ASSERT_EQ(0, lab_do(self->lab, "DISCONNECT 0x%08x", SRC_A));
	expect_lost(_metadata, fd, self->buf);
	expect_reconnect(_metadata, self->lab, fd, self->buf, 30, 22);
	EXPECT_EQ(1, lab_rx(self->lab, SRC_A));
	close(fd);
}

/* After the notice, a message from the reconnected source arrives. */
TEST_F(hvpipe, reconnect_by_message)
{
	int fd;

	fd = lab_handle(_metadata, self->dev, self->lab);
	if (fd < 0)
		return;
	ASSERT_EQ(0, lab_do(self->lab, "DISCONNECT 0x%08x", SRC_A));
	expect_lost(_metadata, fd, self->buf);
	ASSERT_EQ(0, lab_do(self->lab, "CONNECT 0x%08x", SRC_A));
	ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 33 24", SRC_A));
	ASSERT_TRUE(hv_wait_in(fd, WAIT_MS));
	EXPECT_EQ(POLLIN | POLLOUT, hv_poll(fd, 0));
	EXPECT_TRUE(is_msg(self->buf, hv_read(fd, self->buf), 33, 24));
	close(fd);
}

/* --- queues and counters ------------------------------------------------ */

TEST_F_TIMEOUT(hvpipe, backpressure, 60)
{
	unsigned int depth = queue_depth(), i;
	long long received, bp, drops;
	int a, b;

	a = lab_handle(_metadata, self->dev, self->lab);
	if (a < 0)
		return;
	b = hv_handle(self->dev, SRC_B);
	ASSERT_LE(0, b);
	received = COUNT("received");
	bp = COUNT("backpressure");
	drops = COUNT("dropped_no_handle") + COUNT("dropped_closed");
	ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 40 100 %u", SRC_A,
			    depth + 3));
	ASSERT_EQ(0, lab_do(self->lab, "WAIT 0x%08x acked %u %d", SRC_A, depth,
			    WAIT_MS));
	/* The queue is full: the next payload stays with firmware... */
	usleep(300000);
	EXPECT_EQ(depth, lab_count(self->lab, SRC_A, "acked"));
	EXPECT_COUNT(depth, SOURCE_COUNT(SRC_A, "queued"));
	EXPECT_COUNT(1, COUNT("rx_blocked"));
	EXPECT_COUNT(bp + 1, COUNT("backpressure"));
	/* ...and blocks the pipe for every source. */
	ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 41 200", SRC_B));
	EXPECT_FALSE(hv_wait_in(b, 300));
	/* Reading makes room; everything arrives, in order. */
	for (i = 0; i < depth + 3; i++) {
		ASSERT_TRUE(hv_wait_in(a, WAIT_MS));
		EXPECT_TRUE(is_msg(self->buf, hv_read(a, self->buf), 40, 100 + i)) {
			TH_LOG("message %u", i);
		}
	}
	ASSERT_TRUE(hv_wait_in(b, WAIT_MS));
	EXPECT_TRUE(is_msg(self->buf, hv_read(b, self->buf), 41, 200));
	EXPECT_COUNT(0, COUNT("rx_blocked"));
	EXPECT_COUNT(received + depth + 4, COUNT("received"));
	EXPECT_COUNT(drops, COUNT("dropped_no_handle") + COUNT("dropped_closed"));
	EXPECT_COUNT(depth, SOURCE_COUNT(SRC_A, "hwm"));
	EXPECT_EQ(0, lab_do(self->lab, "WAIT 0x%08x acked %u %d", SRC_A,
			    depth + 3, WAIT_MS));
	close(a);
	close(b);
}

TEST_F(hvpipe, source_without_fd_does_not_block)
{
	long long dropped;
	int a;

	a = lab_handle(_metadata, self->dev, self->lab);
	if (a < 0)
		return;
	dropped = COUNT("dropped_no_handle");
	ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 50 300 2", SRC_B));
	ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 51 301", SRC_A));
	ASSERT_TRUE(hv_wait_in(a, WAIT_MS));
	EXPECT_TRUE(is_msg(self->buf, hv_read(a, self->buf), 51, 301));
	EXPECT_EQ(0, lab_do(self->lab, "WAIT 0x%08x acked 2 %d", SRC_B, WAIT_MS));
	/* Firmware counts a payload acked once received; the drop comes after. */
	EXPECT_COUNT(dropped + 2, stat_wait("dropped_no_handle", dropped + 2,
					    WAIT_MS));
	close(a);
}

TEST_F(hvpipe, close_with_queued_messages)
{
	long long dropped;
	int a;

	a = lab_handle(_metadata, self->dev, self->lab);
	if (a < 0)
		return;
	dropped = COUNT("dropped_closed");
	ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 60 400 3", SRC_A));
	ASSERT_EQ(0, lab_do(self->lab, "WAIT 0x%08x acked 3 %d", SRC_A, WAIT_MS));
	/* Acked once received; queued just after. */
	EXPECT_COUNT(3, source_wait(SRC_A, "queued", 3, WAIT_MS));
	close(a);
	EXPECT_COUNT(dropped + 3, COUNT("dropped_closed"));
	if (counters(_metadata))
		EXPECT_EQ(-1, source_get(SRC_A, "queued")) {
			TH_LOG("a closed source is still listed in %s", SOURCES);
		}
	a = hv_handle(self->dev, SRC_A);
	ASSERT_LE(0, a);
	ASSERT_EQ(0, fcntl(a, F_SETFL, O_NONBLOCK));
	EXPECT_EQ(-EAGAIN, hv_read(a, self->buf));
	close(a);
}

/*
 * The debugfs counters: one "name value" line each, every value a count,
 * and a line in "sources" for each open source, gone when it closes.
 */
TEST_F(hvpipe, counters_listed)
{
	char line[256], name[64];
	int n = 0, fields, fd;
	long long v;
	FILE *f;

	f = fopen(STATS, "r");
	if (!f)
		SKIP(return, "no %s: %s", STATS, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		v = -1;
		fields = sscanf(line, "%63s %lld", name, &v);
		EXPECT_EQ(2, fields) {
			TH_LOG("%s: %s", STATS, line);
		}
		EXPECT_LE(0, v) {
			TH_LOG("%s: %s", STATS, line);
		}
		n++;
	}
	fclose(f);
	EXPECT_LT(0, n);
	EXPECT_LE(0, COUNT("sent"));
	EXPECT_LE(0, COUNT("received"));
	fd = hv_handle(self->dev, SRC_A);
	ASSERT_LE(0, fd);
	EXPECT_EQ(0, SOURCE_COUNT(SRC_A, "queued"));
	close(fd);
	EXPECT_EQ(-1, source_get(SRC_A, "queued"));
}

TEST_F(hvpipe, counters_match)
{
	long long sent, received, open;
	int a, b, i;

	if (lab_absent(_metadata, self->lab))
		return;
	sent = COUNT("sent");
	received = COUNT("received");
	open = COUNT("open_sources");
	a = hv_handle(self->dev, SRC_A);
	b = hv_handle(self->dev, SRC_B);
	ASSERT_LE(0, a);
	ASSERT_LE(0, b);
	EXPECT_COUNT(open + 2, COUNT("open_sources"));
	ASSERT_EQ(0, lab_do(self->lab, "ECHO 0x%08x 1", SRC_A));
	for (i = 0; i < 5; i++) {
		ASSERT_EQ(HDR_LEN + 70, hv_write_pat(a, 70, 500 + i));
		ASSERT_TRUE(hv_wait_in(a, WAIT_MS));
		EXPECT_TRUE(is_msg(self->buf, hv_read(a, self->buf), 70, 500 + i));
	}
	ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 71 600 2", SRC_B));
	for (i = 0; i < 2; i++) {
		ASSERT_TRUE(hv_wait_in(b, WAIT_MS));
		EXPECT_TRUE(is_msg(self->buf, hv_read(b, self->buf), 71, 600 + i));
	}
	EXPECT_COUNT(sent + 5, COUNT("sent"));
	EXPECT_COUNT(received + 7, COUNT("received"));
	EXPECT_COUNT(5, SOURCE_COUNT(SRC_A, "sent"));
	EXPECT_COUNT(5, SOURCE_COUNT(SRC_A, "received"));
	EXPECT_COUNT(0, SOURCE_COUNT(SRC_A, "queued"));
	EXPECT_COUNT(0, SOURCE_COUNT(SRC_B, "sent"));
	EXPECT_COUNT(2, SOURCE_COUNT(SRC_B, "received"));
	EXPECT_EQ(5, lab_rx(self->lab, SRC_A));
	EXPECT_EQ(5, lab_count(self->lab, SRC_A, "acked"));
	EXPECT_EQ(2, lab_count(self->lab, SRC_B, "acked"));
	close(a);
	close(b);
	EXPECT_COUNT(open, COUNT("open_sources"));
}

/* --- threads ------------------------------------------------------------ */

struct writer {
	int fd;
	unsigned int seed;
	int errors;
};

static void *write_many(void *arg)
{
	struct writer *w = arg;
	char buf[BUF_LEN];
	int i;

	for (i = 0; i < 40; i++)
		if (hv_write_pat(w->fd, 16 + i, w->seed + i) != HDR_LEN + 16 + i)
			w->errors++;
	for (i = 0; i < 40; i++) {
		if (!hv_wait_in(w->fd, WAIT_MS)) {
			w->errors++;
			break;
		}
		memset(buf, 0xff, sizeof(buf));
		if (!is_msg(buf, read(w->fd, buf, sizeof(buf)), 16 + i, w->seed + i))
			w->errors++;
	}
	return NULL;
}

TEST_F_TIMEOUT(hvpipe, threads_concurrent_writers, 90)
{
	struct writer w[2];
	pthread_t t[2];
	int i;

	if (lab_absent(_metadata, self->lab))
		return;
	for (i = 0; i < 2; i++) {
		w[i].fd = hv_handle(self->dev, i ? SRC_B : SRC_A);
		w[i].seed = 1000 * (i + 1);
		w[i].errors = 0;
		ASSERT_LE(0, w[i].fd);
		ASSERT_EQ(0, lab_do(self->lab, "ECHO 0x%08x 1", i ? SRC_B : SRC_A));
	}
	for (i = 0; i < 2; i++)
		ASSERT_EQ(0, pthread_create(&t[i], NULL, write_many, &w[i]));
	for (i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		EXPECT_EQ(0, w[i].errors);
		close(w[i].fd);
	}
	EXPECT_EQ(40, lab_rx(self->lab, SRC_A));
	EXPECT_EQ(40, lab_rx(self->lab, SRC_B));
}

struct racer {
	int fd;
	pthread_barrier_t *go;
	ssize_t result;
};

static void *read_one(void *arg)
{
	struct racer *r = arg;
	char buf[BUF_LEN];

	pthread_barrier_wait(r->go);
	r->result = read(r->fd, buf, sizeof(buf));
	if (r->result < 0)
		r->result = -errno;
	return NULL;
}

/* A blocked reader and a closer on one fd: no crash, nothing stuck. */
TEST_F_TIMEOUT(hvpipe, threads_read_close_race, 120)
{
	pthread_barrier_t go;
	struct racer r;
	pthread_t t;
	int i, fd;

	if (lab_absent(_metadata, self->lab))
		return;
	ASSERT_EQ(0, pthread_barrier_init(&go, NULL, 2));
	for (i = 0; i < 30; i++) {
		r.fd = hv_handle(self->dev, SRC_A);
		ASSERT_LE(0, r.fd);
		r.go = &go;
		ASSERT_EQ(0, pthread_create(&t, NULL, read_one, &r));
		pthread_barrier_wait(&go);
		usleep(i * 100);
		close(r.fd);
		/* A read in progress keeps the file: wake it with a message. */
		ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 8 %d", SRC_A, i));
		pthread_join(t, NULL);
		EXPECT_TRUE(r.result == HDR_LEN + 8 || r.result == -EBADF) {
			TH_LOG("iteration %d: read returned %zd", i, r.result);
		}
		/* Everything released: the source opens again. */
		fd = hv_handle(self->dev, SRC_A);
		ASSERT_LE(0, fd);
		close(fd);
		ASSERT_EQ(0, lab_do(self->lab, "WAIT 0x%08x acked %d %d", SRC_A,
				    i + 1, WAIT_MS));
	}
	pthread_barrier_destroy(&go);
}

static void *read_nonblock_loop(void *arg)
{
	struct racer *r = arg;
	char buf[BUF_LEN];
	int i;

	pthread_barrier_wait(r->go);
	for (i = 0; i < 1000; i++)
		if (read(r->fd, buf, sizeof(buf)) < 0 && errno == EBADF)
			break;
	return NULL;
}

/* Non-blocking readers and pollers against close, many times. */
TEST_F_TIMEOUT(hvpipe, threads_poll_close_race, 120)
{
	pthread_barrier_t go;
	struct racer r;
	pthread_t t;
	int i, fd;

	ASSERT_EQ(0, pthread_barrier_init(&go, NULL, 2));
	for (i = 0; i < 300; i++) {
		r.fd = hv_handle(self->dev, SRC_A);
		ASSERT_LE(0, r.fd);
		ASSERT_EQ(0, fcntl(r.fd, F_SETFL, O_NONBLOCK));
		r.go = &go;
		ASSERT_EQ(0, pthread_create(&t, NULL, read_nonblock_loop, &r));
		pthread_barrier_wait(&go);
		hv_poll(r.fd, 0);
		close(r.fd);
		pthread_join(t, NULL);
		fd = hv_handle(self->dev, SRC_A);
		ASSERT_LE(0, fd);
		close(fd);
	}
	pthread_barrier_destroy(&go);
}

#define CREATORS 8

struct creator {
	int dev;
	pthread_barrier_t *go;
	int fd;
};

static void *create_one(void *arg)
{
	struct creator *c = arg;

	pthread_barrier_wait(c->go);
	c->fd = hv_handle(c->dev, SRC_A);
	return NULL;
}

TEST_F_TIMEOUT(hvpipe, threads_create_handle_race, 120)
{
	struct creator c[CREATORS];
	pthread_t t[CREATORS];
	pthread_barrier_t go;
	int i, round, winners;

	ASSERT_EQ(0, pthread_barrier_init(&go, NULL, CREATORS));
	for (round = 0; round < 50; round++) {
		for (i = 0; i < CREATORS; i++) {
			c[i].dev = self->dev;
			c[i].go = &go;
			ASSERT_EQ(0, pthread_create(&t[i], NULL, create_one, &c[i]));
		}
		winners = 0;
		for (i = 0; i < CREATORS; i++) {
			pthread_join(t[i], NULL);
			winners += c[i].fd >= 0;
			EXPECT_TRUE(c[i].fd >= 0 || c[i].fd == -EALREADY);
		}
		EXPECT_EQ(1, winners) {
			TH_LOG("round %d", round);
		}
		for (i = 0; i < CREATORS; i++)
			if (c[i].fd >= 0)
				close(c[i].fd);
	}
	pthread_barrier_destroy(&go);
	i = hv_handle(self->dev, SRC_A);
	EXPECT_LE(0, i);
	close(i);
}

/* --- injected firmware faults ---------------------------------------------- */

FIXTURE(fault) {
	int dev, fd;
	struct lab *lab;
	char buf[BUF_LEN];
};

FIXTURE_SETUP(fault)
{
	source_setup(_metadata, &self->dev, &self->lab, &self->fd);
}

FIXTURE_TEARDOWN(fault)
{
	if (self->lab)
		lab_do(self->lab, "FAULT 0x%08x clear", SRC_A);
	fixture_teardown(_metadata, self->dev, self->lab, self->fd);
}

/*
 * status: what firmware answers count times; err: the errno user space
 * gets (0: the call is retried and succeeds); counter: the stats line that
 * counts it.
 */
FIXTURE_VARIANT(fault) {
	int status;
	int count;
	int err;
	const char *counter;
};

FIXTURE_VARIANT_ADD(fault, hw_error) { -1, 1, EIO, "hw_error" };
FIXTURE_VARIANT_ADD(fault, busy) { -2, 3, 0, NULL };
FIXTURE_VARIANT_ADD(fault, invalid) { -3, 1, EINVAL, "invalid" };
FIXTURE_VARIANT_ADD(fault, closed) { -4, 1, EPIPE, "closed" };
FIXTURE_VARIANT_ADD(fault, not_supported) { -5, 1, EOPNOTSUPP, "not_supported" };
FIXTURE_VARIANT_ADD(fault, unexpected_42) { 42, 1, EIO, "unexpected" };
FIXTURE_VARIANT_ADD(fault, unexpected_max) { 0x7fffffff, 1, EIO, "unexpected" };
FIXTURE_VARIANT_ADD(fault, unexpected_neg) { -9999, 1, EIO, "unexpected" };
FIXTURE_VARIANT_ADD(fault, delay_9900) { 9900, 2, 0, NULL };
FIXTURE_VARIANT_ADD(fault, delay_9901) { 9901, 1, 0, NULL };
FIXTURE_VARIANT_ADD(fault, delay_9902) { 9902, 1, 0, NULL };

TEST_F(fault, send)
{
	long long sent = COUNT("sent"), failed = 0;
	char name[64];
	ssize_t want = variant->err ? -variant->err : HDR_LEN + 24;

	if (variant->counter) {
		snprintf(name, sizeof(name), "send_fw_%s", variant->counter);
		failed = COUNT(name);
	}
	ASSERT_EQ(0, lab_do(self->lab, "FAULT 0x%08x rtas-send:%d:%d", SRC_A,
			    variant->status, variant->count));
	EXPECT_EQ(want, hv_write_pat(self->fd, 24, 700));
	EXPECT_EQ(variant->err ? 0 : 1, lab_rx(self->lab, SRC_A));
	EXPECT_COUNT(sent + !variant->err, COUNT("sent"));
	if (variant->counter)
		EXPECT_COUNT(failed + 1, COUNT(name));
	/* The fault is used up and the fd works as before. */
	EXPECT_EQ(HDR_LEN + 25, hv_write_pat(self->fd, 25, 701));
	EXPECT_EQ(variant->err ? 1 : 2, lab_rx(self->lab, SRC_A));
	EXPECT_EQ(POLLOUT, hv_poll(self->fd, 0));
}

/*
 * A failed receive is not seen by user space, but it is counted and the
 * payload, which firmware still holds, must not block the pipe for good:
 * the driver tries again. "Not supported" is the exception: the driver
 * gives the event up, and the payload waits for the next event.
 */
TEST_F(fault, receive)
{
	long long failed = 0, given_up = COUNT("dropped_rx_failed");
	char name[64];

	if (variant->counter) {
		snprintf(name, sizeof(name), "recv_fw_%s", variant->counter);
		failed = COUNT(name);
	}
	ASSERT_EQ(0, lab_do(self->lab, "FAULT 0x%08x rtas-receive:%d:%d",
			    SRC_A, variant->status, variant->count));
	ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 26 702", SRC_A));
	if (variant->counter)
		EXPECT_COUNT(failed + 1, stat_wait(name, failed + 1, WAIT_MS));
	if (variant->err == EOPNOTSUPP) {
		EXPECT_COUNT(given_up + 1, stat_wait("dropped_rx_failed",
						     given_up + 1, WAIT_MS));
		EXPECT_FALSE(hv_wait_in(self->fd, 300));
		ASSERT_EQ(0, lab_do(self->lab, "FAULT 0x%08x spurious:0x%08x:1",
				    SRC_A, SRC_A));
	} else {
		EXPECT_COUNT(given_up, COUNT("dropped_rx_failed"));
	}
	EXPECT_TRUE(hv_wait_in(self->fd, WAIT_MS)) {
		TH_LOG("the payload never arrived after receive status %d",
		       variant->status);
	}
	if (hv_poll(self->fd, 0) & POLLIN)
		EXPECT_TRUE(is_msg(self->buf, hv_read(self->fd, self->buf), 26, 702));
	/* Later traffic flows, from every source. */
	ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 27 703", SRC_A));
	EXPECT_TRUE(hv_wait_in(self->fd, WAIT_MS));
	if (hv_poll(self->fd, 0) & POLLIN)
		EXPECT_TRUE(is_msg(self->buf, hv_read(self->fd, self->buf), 27, 703));
}

/* Events raised late still arrive, in order. */
TEST_F(hvpipe, delayed_events)
{
	long long t0;
	int fd;

	fd = lab_handle(_metadata, self->dev, self->lab);
	if (fd < 0)
		return;
	ASSERT_EQ(0, lab_do(self->lab, "FAULT 0x%08x delay:400", SRC_A));
	t0 = now_ms();
	ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 28 704 2", SRC_A));
	ASSERT_TRUE(hv_wait_in(fd, WAIT_MS));
	EXPECT_LE(300, now_ms() - t0);
	EXPECT_TRUE(is_msg(self->buf, hv_read(fd, self->buf), 28, 704));
	ASSERT_TRUE(hv_wait_in(fd, WAIT_MS));
	EXPECT_TRUE(is_msg(self->buf, hv_read(fd, self->buf), 28, 705));
	ASSERT_EQ(0, lab_do(self->lab, "FAULT 0x%08x clear", SRC_A));
	close(fd);
}

/* --- connections dropped by firmware ---------------------------------------- */

FIXTURE(drop) {
	int dev, fd;
	struct lab *lab;
	char buf[BUF_LEN];
};

FIXTURE_VARIANT(drop) {
	int moment;
};

/* The moments as the lab spells them (lab/hmc-sim --inject drop:...). */
static const char *const drop_moments[] = {
	"now", "after:200", "on-send", "on-event", "on-receive"
};

FIXTURE_VARIANT_ADD(drop, now) { 0 };
FIXTURE_VARIANT_ADD(drop, after_ms) { 1 };
FIXTURE_VARIANT_ADD(drop, on_send) { 2 };
FIXTURE_VARIANT_ADD(drop, on_event) { 3 };
FIXTURE_VARIANT_ADD(drop, on_receive) { 4 };

FIXTURE_SETUP(drop)
{
	source_setup(_metadata, &self->dev, &self->lab, &self->fd);
}

FIXTURE_TEARDOWN(drop)
{
	fixture_teardown(_metadata, self->dev, self->lab, self->fd);
}

TEST_F(drop, lost_then_reconnect)
{
	int m = variant->moment, fd = self->fd;
	bool payload = m == 3 || m == 4;

	ASSERT_EQ(0, lab_do(self->lab, "FAULT 0x%08x drop:%s", SRC_A,
			    drop_moments[m]));
	if (m == 2)
		EXPECT_EQ(-EPIPE, hv_write_pat(fd, 29, 800));
	if (payload)
		ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 30 801", SRC_A));
	/* Any payload first, then the notice. */
	if (payload) {
		ASSERT_TRUE(hv_wait_in(fd, WAIT_MS));
		EXPECT_TRUE(is_msg(self->buf, hv_read(fd, self->buf), 30, 801));
	}
	expect_lost(_metadata, fd, self->buf);
	if (m == 4)	/* received, but the ACK was lost with the connection */
		EXPECT_EQ(0, lab_stat(self->lab, SRC_A, "acked"));
	EXPECT_EQ(-EPIPE, hv_write_pat(fd, 31, 802));
	expect_reconnect(_metadata, self->lab, fd, self->buf, 32, 803);
}

/* --- spurious and malformed events ------------------------------------------ */

static long long malformed_total(struct __test_metadata *_metadata)
{
	return COUNT("events_bad_log_type") + COUNT("events_no_section") +
	       COUNT("events_short_section") + COUNT("events_unknown_type");
}

static long long malformed_wait(struct __test_metadata *_metadata,
				long long min)
{
	long long end = now_ms() + WAIT_MS, v;

	while ((v = malformed_total(_metadata)) < min && now_ms() < end)
		usleep(10000);
	return v;
}

TEST_F(hvpipe, spurious_events)
{
	const struct {
		__u32 srcid;
		int type;
		bool unknown;	/* counted as an unknown event type */
	} ev[] = {
		{ SRC_A, 1, false },		/* nothing is pending */
		{ SRC_B, 1, false },		/* no fd for it */
		{ 0x02001234, 1, false },	/* no such source */
		{ 0x05000001, 1, false },	/* not an HMC */
		{ SRC_A, 0, true },
		{ SRC_A, 4, true },
		{ SRC_A, 0x80, true },
	};
	long long irqs, unknown, received, dropped;
	size_t i;
	int fd;

	fd = lab_handle(_metadata, self->dev, self->lab);
	if (fd < 0)
		return;
	ASSERT_EQ(0, fcntl(fd, F_SETFL, O_NONBLOCK));
	for (i = 0; i < ARRAY_SIZE(ev); i++) {
		irqs = COUNT("events_interrupts");
		unknown = COUNT("events_unknown_type");
		received = COUNT("received");
		dropped = COUNT("dropped_no_handle");
		ASSERT_EQ(0, lab_do(self->lab, "FAULT 0x%08x spurious:0x%08x:%d",
				    SRC_A, ev[i].srcid, ev[i].type));
		if (counters(_metadata)) {
			EXPECT_EQ(irqs + 1, stat_wait("events_interrupts",
						      irqs + 1, WAIT_MS)) {
				TH_LOG("event %zu", i);
			}
			usleep(50000);
			EXPECT_EQ(unknown + ev[i].unknown,
				  COUNT("events_unknown_type")) {
				TH_LOG("event %zu", i);
			}
			/* No message made up, none dropped: there was none. */
			EXPECT_EQ(received, COUNT("received"));
			EXPECT_EQ(dropped, COUNT("dropped_no_handle")) {
				TH_LOG("event %zu", i);
			}
		} else {
			/* Nothing to wait on: give the event time. */
			usleep(500000);
		}
		/* No message made up: there was none. */
		EXPECT_EQ(-EAGAIN, hv_read(fd, self->buf)) {
			TH_LOG("event %zu", i);
		}
	}
	/* Normal traffic goes on. */
	ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 34 900", SRC_A));
	ASSERT_TRUE(hv_wait_in(fd, WAIT_MS));
	EXPECT_TRUE(is_msg(self->buf, hv_read(fd, self->buf), 34, 900));
	close(fd);
}

FIXTURE(malformed) {
	int dev, fd;
	struct lab *lab;
	char buf[BUF_LEN];
};

/* kind: the model's malformation; next: on the next genuine event. */
FIXTURE_VARIANT(malformed) {
	int kind;
	int next;
	const char *counter;
};

/* The kinds, 1 to 4, as the lab spells them. */
static const char *const malformed_kinds[] = {
	NULL, "wrong-type", "no-pe", "truncated", "short-pe"
};

FIXTURE_VARIANT_ADD(malformed, wrong_type) { 1, 0, "events_bad_log_type" };
FIXTURE_VARIANT_ADD(malformed, no_pe) { 2, 0, "events_no_section" };
FIXTURE_VARIANT_ADD(malformed, truncated) { 3, 0, NULL };
FIXTURE_VARIANT_ADD(malformed, short_pe) { 4, 0, NULL };
FIXTURE_VARIANT_ADD(malformed, wrong_type_next) { 1, 1, "events_bad_log_type" };
FIXTURE_VARIANT_ADD(malformed, no_pe_next) { 2, 1, "events_no_section" };
FIXTURE_VARIANT_ADD(malformed, truncated_next) { 3, 1, NULL };
FIXTURE_VARIANT_ADD(malformed, short_pe_next) { 4, 1, NULL };

FIXTURE_SETUP(malformed)
{
	source_setup(_metadata, &self->dev, &self->lab, &self->fd);
}

FIXTURE_TEARDOWN(malformed)
{
	if (self->lab)
		lab_do(self->lab, "FAULT 0x%08x clear", SRC_A);
	fixture_teardown(_metadata, self->dev, self->lab, self->fd);
}

/*
 * Counted, ignored, and normal traffic goes on. A malformed genuine event
 * leaves its payload with firmware: it must still get through.
 */
TEST_F(malformed, event)
{
	long long total = malformed_total(_metadata), one = 0, payloads;
	int fd = self->fd;
	char to[16];

	if (variant->counter)
		one = COUNT(variant->counter);
	payloads = COUNT("events_payload");
	/* With next, the event is the next genuine one: no source ID. */
	snprintf(to, sizeof(to), "0x%08x", SRC_A);
	ASSERT_EQ(0, lab_do(self->lab, "FAULT 0x%08x malformed:%s:%s:%d",
			    SRC_A, malformed_kinds[variant->kind],
			    variant->next ? "next" : to,
			    variant->kind == 1 ? 0xe7 : 0xe6));
	if (variant->next)
		ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 35 901", SRC_A));
	EXPECT_COUNT(total + 1, malformed_wait(_metadata, total + 1));
	if (variant->counter)
		EXPECT_COUNT(one + 1, COUNT(variant->counter));
	EXPECT_COUNT(payloads, COUNT("events_payload"));
	if (variant->next) {
		EXPECT_TRUE(hv_wait_in(fd, WAIT_MS)) {
			TH_LOG("the payload of the malformed event never arrived");
		}
		if (hv_poll(fd, 0) & POLLIN)
			EXPECT_TRUE(is_msg(self->buf, hv_read(fd, self->buf),
					   35, 901));
	} else {
		EXPECT_FALSE(hv_wait_in(fd, 200));
	}
	ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 36 902", SRC_B));
	ASSERT_EQ(0, lab_do(self->lab, "SENDPAT 0x%08x 37 903", SRC_A));
	EXPECT_TRUE(hv_wait_in(fd, WAIT_MS));
	if (hv_poll(fd, 0) & POLLIN)
		EXPECT_TRUE(is_msg(self->buf, hv_read(fd, self->buf), 37, 903));
}

TEST_HARNESS_MAIN
