// SPDX-License-Identifier: GPL-2.0
/*
 * hvpipe-echo: the guest side of lab/bench.
 *
 * Usage: hvpipe-echo [-t|-m] -s SIZE -n COUNT [-w WARMUP] hvpipe SRCID
 *        hvpipe-echo -s SIZE -n COUNT [-w WARMUP] port NAME
 *
 * hvpipe: open source SRCID on /dev/papr-hvpipe and write back each payload
 * read from it, WARMUP + COUNT payloads of SIZE bytes, then exit. Each
 * read() is made once poll() reports the payload queued, so that it and
 * the write() are CPU-bound calls; both are timed after the warm-up.
 *
 * port: write back what arrives on the virtio-serial port NAME (the
 * /dev/vportNpM whose /sys/class/virtio-ports/vportNpM/name is NAME), until
 * (WARMUP + COUNT) * SIZE bytes went through, then exit.
 *
 * -t: where the driver's time goes. WARMUP + 3 * COUNT + 1 payloads. A
 * slot is the write() of one message and the receive path of the next
 * (interrupt, work item, read()); after the warm-up the slots take turns,
 * one in three each:
 *   plain  nothing recorded;
 *   rtas   the rtas_ll_entry and rtas_ll_exit events are recorded, which
 *          time each call of ibm,send-hvpipe-msg, ibm,receive-hvpipe-msg
 *          and check-exception: the firmware call alone;
 *   irq    irq_handler_entry/exit, workqueue_execute_start/end,
 *          sched_switch and sched_wakeup are recorded, which time the
 *          handler of the hvpipe event interrupt and every work item run
 *          in the slot (less the time its task was switched out), and
 *          count the wake-ups of this program and of kworkers in the slot.
 *          No name of a driver is needed: the interrupt is found by the
 *          hardware number the device tree gives the event source
 *          (/event-sources/ibm,hvpipe-msg-events), and the work items are
 *          whichever run between the write() and the read() that ends the
 *          slot (the driver's receive work, if it has one; others are
 *          rare, and the medians leave them out).
 * After each write() of a plain slot, a read() and a write() of one byte,
 * which both drivers refuse with EINVAL before doing anything, time the
 * system call itself (entry, the VFS, exit): the part of read() and write()
 * that is neither the driver's nor firmware's.
 * Each kind of event has a trace instance of its own, switched on for its
 * slots only, so that no timed interval contains the recording of another
 * kind, and the three kinds of slots see the same conditions. The switch
 * is made between a read() and the write() after it, when the driver is
 * idle but for the end of the work item that woke the reader: a work item
 * ending in the next slot is not timed (one in a hundred or so). An
 * instance is switched with its tracing_cpumask: switching its tracing_on
 * off (which wakes the trace readers) made the write() that followed
 * several times slower.
 *
 * Everything is timed with the timebase (mftb, and the trace clock ppc-tb),
 * converted with /proc/cpuinfo's timebase frequency.
 *
 * -m: one of several at once: only the words " many" in the output lines.
 *
 * Output: "hvpipe-echo: ready MODE SIZE[ traced| many]" once the channel is open
 * (the sender may start), then "hvpipe-echo: result MODE SIZE[ traced| many]:"
 * and NAME=NS:N for each timing (with -t also away and wake, see
 * irq_parse(), and syscall_read and syscall_write, the refused calls):
 * the median in nanoseconds of the N
 * intervals timed; with -t also wakeups=TOTAL:N, the wake-ups counted in
 * the N irq slots. Exit status 0, or 1 with a message on stderr.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asm/papr-hvpipe.h>

#define DEVPATH		"/dev/papr-hvpipe"
#define TRACEFS		"/sys/kernel/tracing"
#define RTAS_DT		"/sys/firmware/devicetree/base/rtas"
#define EVENT_DT	"/sys/firmware/devicetree/base/event-sources/" \
			"ibm,hvpipe-msg-events/interrupts"
#define MAX_PAYLOAD	4048
#define HDR_LEN		sizeof(struct papr_hvpipe_hdr)

/* One kind of interval, and the durations timed (timebase ticks). */
struct timing {
	const char *name;
	uint64_t *tb;
	size_t n, max;
};

enum state { PLAIN, RTAS, IRQ, NR_STATES };

/* A trace instance recording one kind of events. */
struct instance {
	const char *name;
	const char * const *events;
	int on;			/* fd of its tracing_cpumask */
};

static const char * const rtas_events[] = {
	"powerpc/rtas_ll_entry", "powerpc/rtas_ll_exit", NULL
};

static const char * const irq_events[] = {
	"irq/irq_handler_entry", "irq/irq_handler_exit",
	"workqueue/workqueue_execute_start", "workqueue/workqueue_execute_end",
	"sched/sched_switch", "sched/sched_wakeup", NULL
};

static struct instance instances[NR_STATES] = {
	[RTAS] = { "hvpipe-echo-rtas", rtas_events, -1 },
	[IRQ] = { "hvpipe-echo-irq", irq_events, -1 },
};

static const char *prog = "hvpipe-echo";
static uint64_t tb_hz;		/* timebase frequency */
static char all_cpus[32];	/* tracing_cpumask of every CPU */

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t now(void)
{
	return __builtin_ppc_get_timebase();
}

static void timing_init(struct timing *t, const char *name, size_t max)
{
	t->name = name;
	t->n = 0;
	t->max = max;
	t->tb = calloc(max, sizeof(*t->tb));
	if (!t->tb)
		die("out of memory");
}

static void add(struct timing *t, uint64_t tb)
{
	if (t->n == t->max)
		die("%s: more than %zu intervals", t->name, t->max);
	t->tb[t->n++] = tb;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Print " NAME=MEDIAN_NS:N". */
static void print_median(struct timing *t)
{
	uint64_t m;

	if (!t->n)
		die("%s: nothing timed", t->name);
	qsort(t->tb, t->n, sizeof(*t->tb), cmp_u64);
	m = t->n % 2 ? t->tb[t->n / 2] :
	    (t->tb[t->n / 2 - 1] + t->tb[t->n / 2]) / 2;
	printf(" %s=%llu:%zu", t->name,
	       (unsigned long long)(m * 1000000000ULL / tb_hz), t->n);
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_TRUNC);

	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	if (write(fd, text, strlen(text)) < 0)
		die("%s: writing \"%s\": %s", path, text, strerror(errno));
	close(fd);
}

/* The token of an RTAS function, from the device tree. */
static uint32_t rtas_token(const char *name)
{
	char path[256];
	uint8_t be[4];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", RTAS_DT, name);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	if (read(fd, be, sizeof(be)) != sizeof(be))
		die("%s: not a 4-byte token", path);
	close(fd);
	return (uint32_t)be[0] << 24 | be[1] << 16 | be[2] << 8 | be[3];
}

/*
 * The Linux interrupt number of the hvpipe event source: the device tree
 * gives its hardware number (the first cell of "interrupts"), and
 * /sys/kernel/irq/N/hwirq the hardware number of each Linux interrupt.
 */
static int hvpipe_irq(void)
{
	char path[300], text[32];
	unsigned long hwirq;
	struct dirent *d;
	uint8_t be[4];
	int fd, irq = -1;
	DIR *dir;

	fd = open(EVENT_DT, O_RDONLY);
	if (fd < 0)
		die("%s: %s (no hvpipe event source?)", EVENT_DT,
		    strerror(errno));
	if (read(fd, be, sizeof(be)) != sizeof(be))
		die("%s: shorter than one cell", EVENT_DT);
	close(fd);
	hwirq = (uint32_t)be[0] << 24 | be[1] << 16 | be[2] << 8 | be[3];
	dir = opendir("/sys/kernel/irq");
	if (!dir)
		die("/sys/kernel/irq: %s", strerror(errno));
	while ((d = readdir(dir)) && irq < 0) {
		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/kernel/irq/%s/hwirq",
			 d->d_name);
		fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		memset(text, 0, sizeof(text));
		if (read(fd, text, sizeof(text) - 1) > 0 &&
		    strtoul(text, NULL, 0) == hwirq)
			irq = atoi(d->d_name);
		close(fd);
	}
	closedir(dir);
	if (irq < 0)
		die("no interrupt has hardware number %lu (the hvpipe event "
		    "source's): is a driver bound to it?", hwirq);
	return irq;
}

static uint64_t timebase_hz(void)
{
	unsigned long long hz = 0;
	char line[256];
	FILE *f;

	f = fopen("/proc/cpuinfo", "r");
	if (!f)
		die("/proc/cpuinfo: %s", strerror(errno));
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "timebase : %llu", &hz) == 1)
			break;
	fclose(f);
	if (!hz)
		die("/proc/cpuinfo: no timebase frequency");
	return hz;
}

/* A file of a trace instance. */
static const char *ipath(struct instance *in, const char *file)
{
	static char path[256];

	snprintf(path, sizeof(path), TRACEFS "/instances/%s/%s", in->name,
		 file);
	return path;
}

/*
 * Create the instance, recording on no CPU, with its events enabled, the
 * timebase clock and room for @msgs messages (1 KiB each per CPU: a few
 * hundred bytes of events are recorded per message).
 */
static void instance_create(struct instance *in, size_t msgs)
{
	const char * const *ev;
	char file[128], kb[32];

	snprintf(file, sizeof(file), TRACEFS "/instances/%s", in->name);
	rmdir(file);
	if (mkdir(file, 0755))
		die("%s: %s (is tracefs mounted on " TRACEFS "?)", file,
		    strerror(errno));
	write_file(ipath(in, "tracing_cpumask"), "0");
	write_file(ipath(in, "trace_clock"), "ppc-tb");
	snprintf(kb, sizeof(kb), "%zu", msgs < 1408 ? 1408 : msgs);
	write_file(ipath(in, "buffer_size_kb"), kb);
	for (ev = in->events; *ev; ev++) {
		snprintf(file, sizeof(file), "events/%s/enable", *ev);
		write_file(ipath(in, file), "1");
	}
	in->on = open(ipath(in, "tracing_cpumask"), O_WRONLY);
	if (in->on < 0)
		die("%s: %s", ipath(in, "tracing_cpumask"), strerror(errno));
}

static void instance_remove(struct instance *in)
{
	char dir[128];

	close(in->on);
	snprintf(dir, sizeof(dir), TRACEFS "/instances/%s", in->name);
	if (rmdir(dir))
		die("%s: %s", dir, strerror(errno));
}

/* Record the events of @s only. */
static void set_state(enum state s)
{
	const char *mask;
	int i;

	for (i = RTAS; i < NR_STATES; i++) {
		mask = i == (int)s ? all_cpus : "0";
		if (pwrite(instances[i].on, mask, strlen(mask), 0) < 0)
			die("%s: %s", ipath(&instances[i], "tracing_cpumask"),
			    strerror(errno));
	}
}

/*
 * One kind of interval being timed. The RTAS calls are serialised
 * (rtas_lock), the handler of one interrupt line never runs twice at once,
 * and the ordered workqueue runs one item at a time, so an entry is closed
 * by the next exit of its kind, on whichever CPU. The time the work
 * item's task spends switched out is not counted.
 */
struct span {
	struct timing *t;
	uint64_t start, off, off_start;
	int open, pid, away;
};

static void span_begin(struct span *s, struct timing *t, uint64_t ts, int pid)
{
	s->t = t;
	s->start = ts;
	s->off = 0;
	s->open = 1;
	s->pid = pid;
	s->away = 0;
}

static void span_end(struct span *s, uint64_t ts)
{
	if (s->open && s->t)
		add(s->t, ts - s->start - s->off);
	s->open = 0;
}

/* A sched_switch: note when the span's task leaves and comes back. */
static void span_switch(struct span *s, const char *ev, uint64_t ts)
{
	const char *prev = strstr(ev, " prev_pid=");
	const char *next = strstr(ev, " next_pid=");

	if (!s->open || !prev || !next)
		return;
	if (atoi(prev + strlen(" prev_pid=")) == s->pid && !s->away) {
		s->away = 1;
		s->off_start = ts;
	}
	if (atoi(next + strlen(" next_pid=")) == s->pid && s->away) {
		s->away = 0;
		s->off += ts - s->off_start;
	}
}

/* The pid of the task a trace line was recorded in ("comm-pid"). */
static int trace_pid(const char *line)
{
	const char *p = line + strspn(line, " ");
	const char *end = p + strcspn(p, " ");

	while (end > p && end[-1] != '-')
		end--;
	return atoi(end);
}

static FILE *trace_open(struct instance *in)
{
	FILE *f = fopen(ipath(in, "trace"), "r");

	if (!f)
		die("%s: %s", ipath(in, "trace"), strerror(errno));
	return f;
}

/* Where the event of a trace line starts, and its timestamp. */
static const char *trace_event(const char *line, uint64_t *ts)
{
	const char *ev, *p;

	if (line[0] == '#')
		return NULL;
	/* The event name follows the ": " after the timestamp. */
	for (ev = strstr(line, ": "); ev; ev = strstr(ev + 2, ": "))
		if (ev > line && ev[-1] >= '0' && ev[-1] <= '9')
			break;
	if (!ev)
		return NULL;
	for (p = ev; p > line && p[-1] != ' '; p--)
		;
	*ts = strtoull(p, NULL, 10);
	return ev + 2;
}

/*
 * Read the trace of the RTAS instance: "comm-pid [cpu] flags TIMESTAMP:
 * event: fields". The RTAS calls go to @t[0..2] (send, receive,
 * check-exception).
 */
static void rtas_parse(struct instance *in, struct timing *t)
{
	uint32_t send = rtas_token("ibm,send-hvpipe-msg");
	uint32_t recv = rtas_token("ibm,receive-hvpipe-msg");
	uint32_t check = rtas_token("check-exception");
	struct span rtas = { 0 };
	static char line[1024];
	unsigned long token;
	const char *ev;
	uint64_t ts;
	FILE *f;

	f = trace_open(in);
	while (fgets(line, sizeof(line), f)) {
		ev = trace_event(line, &ts);
		if (!ev)
			continue;
		if (!strncmp(ev, "rtas_ll_entry: token=", 21)) {
			token = strtoul(ev + 21, NULL, 10);
			span_begin(&rtas, token == send ? &t[0] :
				   token == recv ? &t[1] :
				   token == check ? &t[2] : NULL, ts, 0);
		} else if (!strncmp(ev, "rtas_ll_exit: ", 14)) {
			span_end(&rtas, ts);
		}
	}
	fclose(f);
}

/* The traced slots of -t's irq kind: from the write() to the read(). */
struct slot {
	uint64_t start, end;
	uint64_t irq, work;	/* Time in the handler and in work items. */
	uint64_t irq_at, read_at;	/* First handler entry, read() start. */
	unsigned int wakeups;
};

static struct slot *slot_at(struct slot *sl, size_t n, uint64_t ts)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (sl[mid].end < ts)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && sl[lo].start <= ts ? &sl[lo] : NULL;
}

/*
 * Read the trace of the irq instance into the slots @sl: the time spent
 * in the handler of interrupt @hvirq, in work items (less the time their
 * task was switched out), and the wake-ups of @pid (this program, the
 * reader) and of kworkers. Then the per-slot sums go to @t[0] (handler)
 * and @t[1] (work items), and for slots with an hvpipe interrupt, the time
 * from the write() to the first one to @t[2] (away: the host's side and
 * QEMU's) and from it to the read() to @t[3] (wake: the handler, the
 * wake-up and poll()).
 */
static void irq_parse(struct instance *in, int hvirq, int pid,
		      struct slot *sl, size_t n, struct timing *t)
{
	struct span handler = { 0 }, work = { 0 };
	static char line[1024];
	const char *ev, *p;
	struct slot *at;
	uint64_t ts;
	size_t i;
	FILE *f;

	f = trace_open(in);
	while (fgets(line, sizeof(line), f)) {
		ev = trace_event(line, &ts);
		if (!ev)
			continue;
		if (!strncmp(ev, "irq_handler_entry: irq=", 23)) {
			if (atoi(ev + 23) == hvirq) {
				span_begin(&handler, NULL, ts, 0);
				at = slot_at(sl, n, ts);
				if (at && !at->irq_at)
					at->irq_at = ts;
			}
		} else if (!strncmp(ev, "irq_handler_exit: irq=", 22)) {
			if (atoi(ev + 22) == hvirq && handler.open) {
				at = slot_at(sl, n, handler.start);
				if (at)
					at->irq += ts - handler.start;
				handler.open = 0;
			}
		} else if (!strncmp(ev, "workqueue_execute_start: ", 25)) {
			if (!work.open)
				span_begin(&work, NULL, ts, trace_pid(line));
		} else if (!strncmp(ev, "workqueue_execute_end: ", 23)) {
			if (work.open && trace_pid(line) == work.pid) {
				at = slot_at(sl, n, work.start);
				if (at)
					at->work += ts - work.start - work.off;
				work.open = 0;
			}
		} else if (!strncmp(ev, "sched_switch: ", 14)) {
			span_switch(&work, ev, ts);
		} else if (!strncmp(ev, "sched_wakeup: comm=", 19)) {
			p = strstr(ev, " pid=");
			at = slot_at(sl, n, ts);
			if (at && p && (atoi(p + 5) == pid ||
					!strncmp(ev + 19, "kworker", 7)))
				at->wakeups++;
		}
	}
	fclose(f);
	for (i = 0; i < n; i++) {
		add(&t[0], sl[i].irq);
		add(&t[1], sl[i].work);
		if (!sl[i].irq_at)
			continue;
		add(&t[2], sl[i].irq_at - sl[i].start);
		add(&t[3], sl[i].read_at - sl[i].irq_at);
	}
}

/* The /dev/vportNpM named @name. */
static int open_port(const char *name)
{
	char path[300], buf[256];
	struct dirent *d;
	DIR *dir;
	int fd;

	dir = opendir("/sys/class/virtio-ports");
	if (!dir)
		die("/sys/class/virtio-ports: %s (no virtio-serial device?)",
		    strerror(errno));
	while ((d = readdir(dir))) {
		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/class/virtio-ports/%s/name",
			 d->d_name);
		fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		memset(buf, 0, sizeof(buf));
		if (read(fd, buf, sizeof(buf) - 1) < 0)
			buf[0] = '\0';
		close(fd);
		buf[strcspn(buf, "\n")] = '\0';
		if (strcmp(buf, name))
			continue;
		snprintf(path, sizeof(path), "/dev/%s", d->d_name);
		closedir(dir);
		fd = open(path, O_RDWR);
		if (fd < 0)
			die("%s: %s", path, strerror(errno));
		return fd;
	}
	closedir(dir);
	die("no virtio-serial port named %s", name);
	return -1;
}

static void echo_port(const char *name, size_t size, size_t msgs)
{
	static char buf[65536];
	size_t left = size * msgs;
	ssize_t n, done, w;
	int fd = open_port(name);

	printf("%s: ready port %zu\n", prog, size);
	while (left) {
		n = read(fd, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("read %s: %s", name, strerror(errno));
		if (!n)
			die("%s: closed by the host, %zu bytes short", name, left);
		for (done = 0; done < n; done += w) {
			w = write(fd, buf + done, n - done);
			if (w < 0 && errno == EINTR)
				w = 0;
			else if (w < 0)
				die("write %s: %s", name, strerror(errno));
		}
		left -= (size_t)n > left ? left : (size_t)n;
	}
	close(fd);
	printf("%s: result port %zu: bytes=%zu\n", prog, size, size * msgs);
}

/* Whether slot @i is timed (-t): not in the warm-up, nor the last. */
static int slot_timed(size_t i, size_t warmup, size_t count)
{
	return i >= warmup && i < warmup + NR_STATES * count;
}

/* The state of slot @i (-t): plain, then the three in turn. */
static enum state slot_state(size_t i, size_t warmup, size_t count)
{
	return slot_timed(i, warmup, count) ? (i - warmup) % NR_STATES : PLAIN;
}

/*
 * Time a read() and a write() of one byte on @fd: every driver refuses them
 * (shorter than the header) before it does anything.
 */
static void syscall_floor(int fd, char *buf, struct timing nul[2])
{
	uint64_t t0, t1, t2;
	ssize_t r, w;
	int rerr;

	t0 = now();
	r = read(fd, buf, 1);
	t1 = now();
	rerr = errno;
	w = write(fd, buf, 1);
	t2 = now();
	if (r != -1 || rerr != EINVAL || w != -1 || errno != EINVAL)
		die("a one-byte read() and write() gave %zd and %zd, not EINVAL",
		    r, w);
	add(&nul[0], t1 - t0);
	add(&nul[1], t2 - t1);
}

static void echo_hvpipe(uint32_t srcid, size_t size, size_t warmup,
			size_t count, int traced, const char *label)
{
	static const char * const names[NR_STATES][2] = {
		[PLAIN] = { "read", "write" },
		[RTAS] = { "read_rtas", "write_rtas" },
		[IRQ] = { "read_irq", "write_irq" },
	};
	static char buf[HDR_LEN + MAX_PAYLOAD];
	struct papr_hvpipe_hdr *hdr = (void *)buf;
	size_t i, msgs = warmup + (traced ? NR_STATES * count + 1 : count);
	struct timing io[NR_STATES][2], tr[7], nul[2];
	struct slot *sl = NULL;
	size_t nsl = 0, wakeups = 0;
	uint64_t t0, t1, t2, t3;
	int hvirq = -1;
	struct pollfd pfd;
	int dev, fd, s;
	enum state st, prev = PLAIN;
	ssize_t n;

	for (s = 0; s < NR_STATES; s++) {
		timing_init(&io[s][0], names[s][0], count);
		timing_init(&io[s][1], names[s][1], count);
	}
	dev = open(DEVPATH, O_RDONLY);
	if (dev < 0)
		die("%s: %s", DEVPATH, strerror(errno));
	fd = ioctl(dev, PAPR_HVPIPE_IOC_CREATE_HANDLE, &srcid);
	if (fd < 0)
		die("source 0x%08x: %s", srcid, strerror(errno));
	close(dev);
	if (traced) {
		/* Room for twice the calls expected. */
		timing_init(&tr[0], "rtas_send", 2 * count + 16);
		timing_init(&tr[1], "rtas_recv", 2 * count + 16);
		timing_init(&tr[2], "rtas_check", 2 * count + 16);
		timing_init(&tr[3], "irq", 2 * count + 16);
		timing_init(&tr[4], "work", 2 * count + 16);
		timing_init(&tr[5], "away", count);
		timing_init(&tr[6], "wake", count);
		timing_init(&nul[0], "syscall_read", count);
		timing_init(&nul[1], "syscall_write", count);
		instance_create(&instances[RTAS], count);
		instance_create(&instances[IRQ], count);
		hvirq = hvpipe_irq();
		sl = calloc(count, sizeof(*sl));
		if (!sl)
			die("out of memory");
	}
	printf("%s: ready hvpipe %zu%s\n", prog, size, label);

	pfd.fd = fd;
	pfd.events = POLLIN;
	for (i = 0; i < msgs; i++) {
		while (poll(&pfd, 1, -1) < 0)
			if (errno != EINTR)
				die("poll: %s", strerror(errno));
		t0 = now();
		n = read(fd, buf, sizeof(buf));
		t1 = now();
		if (n < 0)
			die("read 0x%08x: %s", srcid, strerror(errno));
		if (hdr->flags & HVPIPE_LOST_CONNECTION)
			die("0x%08x: connection lost", srcid);
		if (n != (ssize_t)(HDR_LEN + size))
			die("message %zu: %zd bytes, %zu expected", i,
			    n - (ssize_t)HDR_LEN, size);
		/* The read() ended slot i - 1, the write() begins slot i. */
		st = traced ? slot_state(i, warmup, count) : PLAIN;
		if (traced && prev == IRQ && i &&
		    slot_timed(i - 1, warmup, count)) {
			sl[nsl - 1].end = t1;
			sl[nsl - 1].read_at = t0;
		}
		if (st != prev)
			set_state(st);
		t2 = now();
		if (traced && st == IRQ && slot_timed(i, warmup, count)) {
			if (nsl == count)
				die("more than %zu irq slots", count);
			sl[nsl++].start = t2;
		}
		if (write(fd, buf, n) != n)
			die("write 0x%08x: %s", srcid, strerror(errno));
		t3 = now();
		if (traced ? i && slot_timed(i - 1, warmup, count) : i >= warmup)
			add(&io[prev][0], t1 - t0);
		if (traced ? slot_timed(i, warmup, count) : i >= warmup)
			add(&io[st][1], t3 - t2);
		if (traced && st == PLAIN && slot_timed(i, warmup, count))
			syscall_floor(fd, buf, nul);
		prev = st;
	}
	close(fd);
	if (traced) {
		set_state(PLAIN);
		rtas_parse(&instances[RTAS], &tr[0]);
		irq_parse(&instances[IRQ], hvirq, getpid(), sl, nsl, &tr[3]);
		for (i = 0; i < nsl; i++)
			wakeups += sl[i].wakeups;
		free(sl);
		instance_remove(&instances[RTAS]);
		instance_remove(&instances[IRQ]);
	}

	printf("%s: result hvpipe %zu%s:", prog, size, label);
	for (s = 0; s < (traced ? NR_STATES : 1); s++) {
		print_median(&io[s][0]);
		print_median(&io[s][1]);
	}
	for (s = 0; traced && s < 7; s++)
		print_median(&tr[s]);
	for (s = 0; traced && s < 2; s++)
		print_median(&nul[s]);
	if (traced)
		printf(" wakeups=%zu:%zu", wakeups, nsl);
	printf("\n");
}

static unsigned long number(const char *text, const char *what,
			    unsigned long min, unsigned long max)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = strtoul(text, &end, 0);
	if (errno || *end || !*text || v < min || v > max)
		die("%s %s: must be a number from %lu to %lu", what, text, min,
		    max);
	return v;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: %s [-t|-m] -s SIZE -n COUNT [-w WARMUP] hvpipe SRCID\n"
		"       %s -s SIZE -n COUNT [-w WARMUP] port NAME\n",
		prog, prog);
	exit(2);
}

int main(int argc, char **argv)
{
	size_t size = 0, count = 0, warmup = 0;
	int opt, traced = 0, many = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	while ((opt = getopt(argc, argv, "s:n:w:tm")) != -1) {
		switch (opt) {
		case 's':
			size = number(optarg, "-s", 1, MAX_PAYLOAD);
			break;
		case 'n':
			count = number(optarg, "-n", 1, 1000000);
			break;
		case 'w':
			warmup = number(optarg, "-w", 0, 1000000);
			break;
		case 't':
			traced = 1;
			break;
		case 'm':
			many = 1;
			break;
		default:
			usage();
		}
	}
	if (!size || !count || argc - optind != 2 || (traced && many))
		usage();
	tb_hz = timebase_hz();
	snprintf(all_cpus, sizeof(all_cpus), "%lx",
		 (1UL << sysconf(_SC_NPROCESSORS_ONLN)) - 1);

	if (!strcmp(argv[optind], "hvpipe"))
		echo_hvpipe(number(argv[optind + 1], "SRCID", 0, 0xffffffff),
			    size, warmup, count, traced,
			    traced ? " traced" : many ? " many" : "");
	else if (!strcmp(argv[optind], "port") && !traced && !many)
		echo_port(argv[optind + 1], size, warmup + count);
	else
		usage();
	return 0;
}
