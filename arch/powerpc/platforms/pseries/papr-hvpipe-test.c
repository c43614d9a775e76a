// SPDX-License-Identifier: GPL-2.0-only
/*
 * KUnit suite for the PAPR hvpipe driver.
 *
 * Firmware is a fake at the driver's one-call firmware wrappers that keeps
 * the firmware rules: sources' payloads wait in order, one is offered at a
 * time, its event is raised only once the one before was received, and a
 * receive with nothing offered returns 0 bytes. Faults are scripted on top
 * (statuses, malformed or misnamed events, withdrawn payloads). The suite
 * runs the interrupt and receive paths itself, since the stubs only answer
 * its own thread (and the helper threads it marks), and sees the driver as
 * user space does: through source files and the debugfs text. Each case
 * gets its own driver instance, without the device tree.
 */

#include <kunit/static_stub.h>
#include <kunit/test.h>
#include <linux/debug_locks.h>
#include <linux/delay.h>
#include <linux/fdtable.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/interrupt.h>
#include <linux/irq.h>
#include <linux/irq_work.h>
#include <linux/kthread.h>
#include <linux/ktime.h>
#include <linux/math64.h>
#include <linux/mm.h>
#include <linux/mman.h>
#include <linux/panic.h>
#include <linux/poll.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/seq_file.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/unaligned.h>
#include <linux/xarray.h>
#include <asm/rtas.h>
#include <uapi/asm/papr-hvpipe.h>

#include "papr-hvpipe.h"

MODULE_IMPORT_NS("EXPORTED_FOR_KUNIT_TESTING");

#define SRC_A		0x02000001
#define SRC_B		0x02000002
#define SRC_NONE	0x02000009
#define HDR		48
#define MAX_SCRIPT	4
#define FW_PAYLOADS	40
#define FW_LOGS		40
#define SEND_AREA	SZ_8K

/* The error log an event interrupt makes check-exception return. */
struct log_spec {
	u8 type;		/* Error log type. */
	bool filler;		/* A 48-byte "PH" section before "PE". */
	bool no_pe;		/* Leave the "PE" section out. */
	bool zero_len;		/* Give the filler section length 0. */
	u16 pe_len;		/* "PE" section length, 0 for 13. */
	u32 ext_extra;		/* Added to the extended log length. */
	u32 srcid;
	u8 evtype;
};

/**
 * struct fw_payload - A payload a source sent to the partition.
 * @srcid: Source it comes from.
 * @named: Source its event names (a firmware fault if not @srcid).
 * @len:   Bytes.
 * @bytes: Byte count the receive reports, if not @len.
 */
struct fw_payload {
	u32 srcid;
	u32 named;
	u32 len;
	u32 bytes;
};

/**
 * struct fake_fw - The fake firmware: its state and what it saw.
 * @fifo:        Payloads the sources sent, oldest first.
 * @nfifo:       Entries in @fifo.
 * @offered:     An event was raised for @fifo[0]; the next receive returns it.
 * @next_log:    Log to raise for the next offered payload instead of its
 *               payload event (a malformed or combined event).
 * @next_log_set: @next_log is armed.
 * @logs:        Events raised, not yet fetched: each is an interrupt.
 * @nlogs:       Entries in @logs.
 * @irq_dev:     If set, a raised event interrupts this instance at once
 *               (even in the middle of a receive), else run_irqs() does.
 * @ce_rc:       Statuses of successive check-exception calls that fetch a
 *               log (0 = return it); a failing one loses the log.
 * @ce_nrc:      Entries in @ce_rc; the last repeats; 0 means success.
 * @ce_calls:    check-exception calls.
 * @send_rc:     Statuses of successive ibm,send-hvpipe-msg calls.
 * @send_nrc:    Entries in @send_rc, as @ce_nrc.
 * @send_calls:  ibm,send-hvpipe-msg calls.
 * @send_srcid:  Source ID of the last send.
 * @send_phys:   Buffer list address of the last send.
 * @send_area:   Copy of the send work area at the last send.
 * @recv_rc:     As @send_rc, for ibm,receive-hvpipe-msg.
 * @recv_nrc:    Entries in @recv_rc.
 * @recv_calls:  ibm,receive-hvpipe-msg calls.
 * @recv_size:   Buffer size the driver passed.
 * @recv_phys:   Buffer address the driver passed.
 * @recv_empty:  Receives that found nothing offered.
 * @recv_task:   Task that made the last receive.
 * @recv_gate:   If set, a receive completes @recv_at_gate, then waits for
 *               it: its caller holds the receive path meanwhile.
 * @recv_at_gate: See @recv_gate.
 * @recv_gate_late: Wait at the gate after taking the payload (and raising
 *               the next events), not before.
 * @recv_lost:   If set, the next receive that takes a payload raises a
 *               lost-connection event for this source after the next
 *               payload's event.
 * @seq:         Written as the first byte of each payload received.
 * @enable_rc:   Status of system parameter 64 updates.
 * @enable_calls: System parameter 64 updates.
 * @enabled:     Last value written.
 * @kicks:       Receive path kicks.
 * @kick_delay:  Delay of the last kick.
 * @text:        Buffer for the debugfs text.
 */
struct fake_fw {
	struct fw_payload fifo[FW_PAYLOADS];
	int nfifo;
	bool offered;
	struct log_spec next_log;
	bool next_log_set;
	struct log_spec logs[FW_LOGS];
	int nlogs;
	struct hvpipe_dev *irq_dev;
	s32 ce_rc[MAX_SCRIPT];
	int ce_nrc;
	int ce_calls;
	s32 send_rc[MAX_SCRIPT];
	int send_nrc;
	int send_calls;
	u32 send_srcid;
	phys_addr_t send_phys;
	u8 send_area[SEND_AREA];
	s32 recv_rc[MAX_SCRIPT];
	int recv_nrc;
	int recv_calls;
	u32 recv_size;
	phys_addr_t recv_phys;
	int recv_empty;
	struct task_struct *recv_task;
	struct completion *recv_gate;
	struct completion *recv_at_gate;
	bool recv_gate_late;
	u32 recv_lost;
	u8 seq;
	int enable_rc;
	int enable_calls;
	bool enabled;
	int kicks;
	unsigned long kick_delay;
	char text[PAGE_SIZE];
};

static struct fake_fw *fake(void)
{
	return kunit_get_current_test()->priv;
}

static s32 script(const s32 *rc, int nrc, int call)
{
	if (!nrc)
		return 0;
	return rc[min(call, nrc) - 1];
}

static void build_log(u8 *log, const struct log_spec *s)
{
	u8 *ext = log + 8, *p = ext + 16;
	u16 pe_len = s->pe_len ? s->pe_len : 13;

	memset(log, 0, RTAS_ERROR_LOG_MAX);
	log[0] = 6;
	log[1] = 0x04;			/* Extended log present. */
	log[3] = s->type;
	ext[0] = 0x84;
	ext[2] = 0x80 | RTAS_V6EXT_LOG_FORMAT_EVENT_LOG;
	put_unaligned_be32(RTAS_V6EXT_COMPANY_ID_IBM, ext + 12);
	if (s->filler) {
		put_unaligned_be16(PSERIES_ELOG_SECT_ID_PRIV_HDR, p);
		put_unaligned_be16(s->zero_len ? 0 : 48, p + 2);
		p += 48;
	}
	if (!s->no_pe) {
		put_unaligned_be16(PSERIES_ELOG_SECT_ID_HVPIPE_EVENT, p);
		put_unaligned_be16(pe_len, p + 2);
		put_unaligned_be32(s->srcid, p + 8);
		p[12] = s->evtype;
		p += max_t(u16, pe_len, 8);
	}
	put_unaligned_be32(p - ext + s->ext_extra, log + 4);
}

/* Firmware raises an event: an interrupt now, or for run_irqs(). */
static void fw_raise(const struct log_spec *s)
{
	struct fake_fw *f = fake();

	if (WARN_ON(f->nlogs == FW_LOGS))
		return;
	f->logs[f->nlogs++] = *s;
	if (f->irq_dev)
		hvpipe_handle_event(f->irq_dev, 0);
}

static void fw_event(u32 srcid, u8 evtype)
{
	struct log_spec s = {
		.type = RTAS_TYPE_HVPIPE, .srcid = srcid, .evtype = evtype,
	};

	fw_raise(&s);
}

/* Offer the oldest payload, if none is offered: raise its event. */
static void fw_offer(void)
{
	struct fake_fw *f = fake();

	if (f->offered || !f->nfifo)
		return;
	f->offered = true;
	if (f->next_log_set) {
		f->next_log_set = false;
		fw_raise(&f->next_log);
	} else {
		fw_event(f->fifo[0].named, HVPIPE_MSG_AVAILABLE);
	}
}

/* A source sends len bytes; its event names @named. */
static void fw_send_named(u32 srcid, u32 named, u32 len)
{
	struct fake_fw *f = fake();

	if (WARN_ON(f->nfifo == FW_PAYLOADS))
		return;
	f->fifo[f->nfifo++] = (struct fw_payload) {
		.srcid = srcid, .named = named, .len = len,
	};
	fw_offer();
}

static void fw_send(u32 srcid, u32 len)
{
	fw_send_named(srcid, srcid, len);
}

/* Remove the oldest payload and offer the next. */
static void fw_pop(void)
{
	struct fake_fw *f = fake();

	f->nfifo--;
	memmove(f->fifo, f->fifo + 1, f->nfifo * sizeof(f->fifo[0]));
	f->offered = false;
	fw_offer();
}

/* Firmware gives up the offered payload unreceived (its source was lost). */
static void fw_withdraw(void)
{
	if (fake()->offered)
		fw_pop();
}

/* The next offered payload's event is this log instead. */
static void fw_next_log(const struct log_spec *s)
{
	fake()->next_log = *s;
	fake()->next_log_set = true;
}

static s32 fake_send(u32 srcid, phys_addr_t list)
{
	struct fake_fw *f = fake();

	/* The driver holds the function's lock, as sys_rtas() would. */
	KUNIT_EXPECT_TRUE(kunit_get_current_test(),
			  mutex_is_locked(&rtas_ibm_send_hvpipe_msg_lock));
	f->send_calls++;
	f->send_srcid = srcid;
	f->send_phys = list;
	memcpy(f->send_area, __va(list), SEND_AREA);
	return script(f->send_rc, f->send_nrc, f->send_calls);
}

/* The receive path is held here until the test opens the gate. */
static void recv_wait_at_gate(struct fake_fw *f)
{
	complete(f->recv_at_gate);
	wait_for_completion(f->recv_gate);
}

static s32 fake_receive(phys_addr_t buf, u32 size, u32 *srcid, u32 *bytes)
{
	struct fake_fw *f = fake();
	struct fw_payload p;
	s32 rc;

	KUNIT_EXPECT_TRUE(kunit_get_current_test(),
			  mutex_is_locked(&rtas_ibm_receive_hvpipe_msg_lock));
	f->recv_calls++;
	f->recv_size = size;
	f->recv_phys = buf;
	f->recv_task = current;
	if (f->recv_gate && !f->recv_gate_late)
		recv_wait_at_gate(f);
	*srcid = 0;
	*bytes = 0;
	rc = script(f->recv_rc, f->recv_nrc, f->recv_calls);
	if (rc)
		return rc;
	if (!f->offered) {
		f->recv_empty++;
		return 0;
	}
	p = f->fifo[0];
	memset(__va(buf), 0x5a, min(p.len, size));
	if (p.len)
		*(u8 *)__va(buf) = ++f->seq;
	*srcid = p.srcid;
	*bytes = p.bytes ? p.bytes : p.len;
	/* Received: the next payload's event may come before we return. */
	fw_pop();
	if (f->recv_lost) {
		fw_event(f->recv_lost, HVPIPE_LOST_CONNECTION);
		f->recv_lost = 0;
	}
	if (f->recv_gate && f->recv_gate_late)
		recv_wait_at_gate(f);
	return 0;
}

static s32 fake_check_exception(unsigned long hwirq, void *log, size_t len)
{
	struct fake_fw *f = fake();
	struct log_spec s;
	s32 rc;

	f->ce_calls++;
	if (!f->nlogs)
		return 1;
	s = f->logs[0];
	f->nlogs--;
	memmove(f->logs, f->logs + 1, f->nlogs * sizeof(f->logs[0]));
	rc = script(f->ce_rc, f->ce_nrc, f->ce_calls);
	if (rc)
		return rc;
	build_log(log, &s);
	return 0;
}

static int fake_set_enable(bool enable)
{
	struct fake_fw *f = fake();

	f->enable_calls++;
	f->enabled = enable;
	return f->enable_rc;
}

static void fake_kick(struct hvpipe_dev *dev, unsigned long delay)
{
	fake()->kicks++;
	fake()->kick_delay = delay;
}

static int hvpipe_test_init(struct kunit *test)
{
	struct fake_fw *f;

	f = kunit_kzalloc(test, sizeof(*f), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, f);
	test->priv = f;

	kunit_activate_static_stub(test, hvpipe_call_send, fake_send);
	kunit_activate_static_stub(test, hvpipe_call_receive, fake_receive);
	kunit_activate_static_stub(test, hvpipe_call_check_exception,
				   fake_check_exception);
	kunit_activate_static_stub(test, hvpipe_call_set_enable, fake_set_enable);
	kunit_activate_static_stub(test, hvpipe_kick, fake_kick);
	return 0;
}

KUNIT_DEFINE_ACTION_WRAPPER(dev_destroy_action, hvpipe_dev_destroy,
			    struct hvpipe_dev *);
KUNIT_DEFINE_ACTION_WRAPPER(dev_remove_action, hvpipe_dev_remove,
			    struct hvpipe_dev *);

static struct hvpipe_dev *new_dev(struct kunit *test, unsigned int depth)
{
	struct hvpipe_config cfg = { .queue_depth = depth };
	struct hvpipe_dev *dev;

	dev = hvpipe_dev_create(&cfg);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, dev);
	KUNIT_ASSERT_EQ(test, 0,
			kunit_add_action_or_reset(test, dev_destroy_action, dev));
	return dev;
}

/* Closing from a kthread defers ->release; run it here and now. */
static void file_close(void *file)
{
	fput(file);
	flush_delayed_fput();
}

static struct file *new_file(struct kunit *test, struct hvpipe_dev *dev,
			     u32 srcid)
{
	struct file *file = hvpipe_source_file(dev, srcid);

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, file);
	KUNIT_ASSERT_EQ(test, 0, kunit_add_action_or_reset(test, file_close, file));
	return file;
}

static char __user *user_buf(struct kunit *test, size_t len)
{
	unsigned long addr;

	addr = kunit_vm_mmap(test, NULL, 0, len, PROT_READ | PROT_WRITE,
			     MAP_ANONYMOUS | MAP_PRIVATE, 0);
	KUNIT_ASSERT_NE_MSG(test, addr, 0, "no user memory");
	KUNIT_ASSERT_LT(test, addr, (unsigned long)TASK_SIZE);
	return (char __user *)addr;
}

/*
 * User memory already faulted in: a reader that receives for itself copies
 * with page faults disabled, and a fresh mapping would send every payload
 * the queue's way.
 */
static char __user *user_buf_resident(struct kunit *test, size_t len)
{
	char __user *buf = user_buf(test, len);

	KUNIT_ASSERT_EQ(test, clear_user(buf, len), 0);
	return buf;
}

/* Take the interrupts firmware raised. */
static void run_irqs(struct hvpipe_dev *dev)
{
	while (fake()->nlogs)
		hvpipe_handle_event(dev, 0);
}

/* Interrupts and the receive path, until firmware raises nothing more. */
static void pump(struct hvpipe_dev *dev)
{
	do {
		run_irqs(dev);
		hvpipe_rx_run(dev);
	} while (fake()->nlogs);
}

/* The decimal number at the start of p. */
static long long parse_num(struct kunit *test, const char *p)
{
	char num[24];
	long long val;
	size_t n = strspn(p, "-0123456789");

	KUNIT_ASSERT_GT(test, n, 0);
	KUNIT_ASSERT_LT(test, n, sizeof(num));
	memcpy(num, p, n);
	num[n] = '\0';
	KUNIT_ASSERT_EQ(test, kstrtoll(num, 10, &val), 0);
	return val;
}

/* A counter of the instance, as debugfs shows it. */
static u64 stat(struct kunit *test, struct hvpipe_dev *dev, const char *name)
{
	struct fake_fw *f = fake();
	struct seq_file m = {
		.buf = f->text, .size = sizeof(f->text), .private = dev,
	};
	size_t n = strlen(name);
	const char *p;

	KUNIT_ASSERT_EQ(test, hvpipe_stats_show(&m, NULL), 0);
	KUNIT_ASSERT_FALSE(test, seq_has_overflowed(&m));
	f->text[m.count] = '\0';
	for (p = f->text; p; p = strchr(p, '\n')) {
		p += *p == '\n';
		if (!strncmp(p, name, n) && p[n] == ' ')
			break;
	}
	KUNIT_ASSERT_NOT_NULL_MSG(test, p, "no counter %s", name);
	return parse_num(test, p + n + 1);
}

/* A field of a source's debugfs line ("queued", "hup"...); -1 if closed. */
static long long src_stat(struct kunit *test, struct hvpipe_dev *dev,
			  u32 srcid, const char *field)
{
	struct fake_fw *f = fake();
	struct seq_file m = {
		.buf = f->text, .size = sizeof(f->text), .private = dev,
	};
	char key[24], *line, *p;

	KUNIT_ASSERT_EQ(test, hvpipe_sources_show(&m, NULL), 0);
	f->text[m.count] = '\0';
	snprintf(key, sizeof(key), "0x%08x ", srcid);
	line = strstr(f->text, key);
	if (!line)
		return -1;
	snprintf(key, sizeof(key), " %s=", field);
	p = strstr(line, key);
	KUNIT_ASSERT_NOT_NULL_MSG(test, p, "no field %s", field);
	return parse_num(test, p + strlen(key));
}

static ssize_t do_read(struct file *file, char __user *buf, size_t count)
{
	return file->f_op->read(file, buf, count, NULL);
}

static ssize_t do_write(struct file *file, const char __user *buf, size_t count)
{
	return file->f_op->write(file, buf, count, NULL);
}

static u32 read_flags(struct kunit *test, struct file *file, char __user *buf,
		      ssize_t *len)
{
	struct papr_hvpipe_hdr hdr = {};

	*len = do_read(file, buf, PAGE_SIZE);
	if (*len >= HDR)
		KUNIT_EXPECT_EQ(test, copy_from_user(&hdr, buf, sizeof(hdr)), 0);
	return hdr.flags;
}

/* The poll() mask as a plain integer, for comparisons. */
static unsigned int poll_mask(struct file *file)
{
	return (__force unsigned int)file->f_op->poll(file, NULL);
}

#define MASK_OUT	((__force unsigned int)(EPOLLOUT | EPOLLWRNORM))
#define MASK_IN		((__force unsigned int)(EPOLLIN | EPOLLRDNORM))
#define MASK_HUP	((__force unsigned int)EPOLLHUP)

/* Status-to-errno tables. */

struct status_case {
	const char *desc;
	s32 rc[MAX_SCRIPT];
	int nrc;
	int ret;
	int calls;
	const char *counter;	/* Counter the failure bumps. */
};

static const struct status_case send_cases[] = {
	{ "success", { 0 }, 1, 0, 1, "sent" },
	{ "-1 hardware error is EIO", { -1 }, 1, -EIO, 1, "send_fw_hw_error" },
	{ "-2 busy is retried", { -2, -2, 0 }, 3, 0, 3, "sent" },
	{ "-3 invalid parameter is EINVAL", { -3 }, 1, -EINVAL, 1,
	  "send_fw_invalid" },
	{ "-4 pipe closed is EPIPE", { -4 }, 1, -EPIPE, 1, "send_fw_closed" },
	{ "-5 not supported is EOPNOTSUPP", { -5 }, 1, -EOPNOTSUPP, 1,
	  "send_fw_not_supported" },
	{ "9900 extended delay is retried", { 9900, 0 }, 2, 0, 2, "sent" },
	{ "9901 extended delay is retried", { 9901, 0 }, 2, 0, 2, "sent" },
	{ "9902 extended delay is retried", { 9902, 0 }, 2, 0, 2, "sent" },
	{ "9903 extended delay is retried", { 9903, 0 }, 2, 0, 2, "sent" },
	{ "9904 extended delay is retried", { 9904, 0 }, 2, 0, 2, "sent" },
	{ "9905 extended delay is retried", { 9905, 0 }, 2, 0, 2, "sent" },
	{ "busy then error keeps the error", { -2, -4 }, 2, -EPIPE, 2,
	  "send_fw_closed" },
	{ "unexpected -9999 is EIO", { -9999 }, 1, -EIO, 1,
	  "send_fw_unexpected" },
	{ "unexpected 1 is EIO", { 1 }, 1, -EIO, 1, "send_fw_unexpected" },
};

KUNIT_ARRAY_PARAM_DESC(send_status, send_cases, desc);

static void hvpipe_test_send_status(struct kunit *test)
{
	const struct status_case *c = test->param_value;
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf(test, PAGE_SIZE);

	memcpy(f->send_rc, c->rc, sizeof(c->rc));
	f->send_nrc = c->nrc;
	KUNIT_EXPECT_EQ(test, do_write(file, buf, HDR + 8),
			c->ret ? c->ret : HDR + 8);
	KUNIT_EXPECT_EQ(test, f->send_calls, c->calls);
	KUNIT_EXPECT_EQ(test, f->send_srcid, SRC_A);
	KUNIT_EXPECT_EQ(test, stat(test, dev, c->counter), 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "sent"), c->ret ? 0 : 1);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "sent"), c->ret ? 0 : 1);
}

/*
 * Receive statuses. Busy and extended delay are retried inside the call.
 * Any other failure leaves the payload with firmware, which raises no new
 * event for it: the driver counts it and tries again later, and the
 * payload arrives once firmware answers. Only "not supported" ends it.
 */
static const struct status_case recv_cases[] = {
	{ "success", { 0 }, 1, 0, 1, "received" },
	{ "-2 busy is retried at once", { -2, 0 }, 2, 0, 2, "received" },
	{ "9900 extended delay is retried at once", { 9900, 0 }, 2, 0, 2,
	  "received" },
	{ "9902 extended delay is retried at once", { 9902, 0 }, 2, 0, 2,
	  "received" },
	{ "9905 extended delay is retried at once", { 9905, 0 }, 2, 0, 2,
	  "received" },
	{ "-1 once is retried later", { -1, 0 }, 2, -EIO, 2,
	  "recv_fw_hw_error" },
	{ "-3 once is retried later", { -3, 0 }, 2, -EINVAL, 2,
	  "recv_fw_invalid" },
	{ "-4 once is retried later", { -4, 0 }, 2, -EPIPE, 2,
	  "recv_fw_closed" },
	{ "unexpected 42 once is retried later", { 42, 0 }, 2, -EIO, 2,
	  "recv_fw_unexpected" },
	{ "-5 gives the event up", { -5 }, 1, -EOPNOTSUPP, 1,
	  "dropped_rx_failed" },
};

KUNIT_ARRAY_PARAM_DESC(recv_status, recv_cases, desc);

static void hvpipe_test_recv_status(struct kunit *test)
{
	const struct status_case *c = test->param_value;
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	bool later = c->ret && c->ret != -EOPNOTSUPP;

	new_file(test, dev, SRC_A);
	memcpy(f->recv_rc, c->rc, sizeof(c->rc));
	f->recv_nrc = c->nrc;
	fw_send(SRC_A, 100);
	pump(dev);
	KUNIT_EXPECT_EQ(test, f->recv_size, SZ_4K);
	KUNIT_EXPECT_EQ(test, stat(test, dev, c->counter), 1);
	if (later) {
		KUNIT_EXPECT_EQ(test, f->recv_calls, 1);
		KUNIT_EXPECT_EQ(test, stat(test, dev, "rx_retries"), 1);
		KUNIT_EXPECT_GT(test, f->kick_delay, 0);
		KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 0);
		hvpipe_rx_run(dev);
	}
	KUNIT_EXPECT_EQ(test, f->recv_calls, c->calls);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"),
			c->ret == -EOPNOTSUPP ? 0 : 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 0);
}

/*
 * Firmware may keep failing for minutes (a service action, say): the
 * driver keeps the event, tries again with a delay that doubles up to
 * 10 s, never gives up, and delivers the payload once a receive works.
 * Firmware raises no new event in the meantime.
 */
struct retry_case {
	const char *desc;
	s32 rc;
	const char *counter;
};

static const struct retry_case retry_cases[] = {
	{ "-1 hardware error", -1, "recv_fw_hw_error" },
	{ "-3 invalid parameter", -3, "recv_fw_invalid" },
	{ "-4 pipe closed", -4, "recv_fw_closed" },
	{ "unexpected -9999", -9999, "recv_fw_unexpected" },
};

KUNIT_ARRAY_PARAM_DESC(recv_retry, retry_cases, desc);

#define RETRY_RUNS	30

static void hvpipe_test_recv_retry(struct kunit *test)
{
	const struct retry_case *c = test->param_value;
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	unsigned long delay = 0;
	int i;

	new_file(test, dev, SRC_A);
	f->recv_rc[0] = c->rc;
	f->recv_nrc = 1;
	fw_send(SRC_A, 16);
	pump(dev);
	for (i = 1; i < RETRY_RUNS; i++) {
		/* Kept, and the receive path runs again later, never later than 10 s. */
		KUNIT_ASSERT_EQ(test, f->recv_calls, i);
		KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 1);
		KUNIT_EXPECT_GE(test, f->kick_delay, delay);
		KUNIT_EXPECT_LE(test, f->kick_delay, (unsigned long)(10 * HZ));
		delay = f->kick_delay;
		hvpipe_rx_run(dev);
	}
	KUNIT_EXPECT_EQ(test, delay, (unsigned long)(10 * HZ));
	KUNIT_EXPECT_EQ(test, f->ce_calls, 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, c->counter), RETRY_RUNS);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "rx_retries"), RETRY_RUNS);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "dropped_rx_failed"), 0);

	/* Firmware recovers: the payload arrives, the pipe works on. */
	f->recv_rc[0] = 0;
	hvpipe_rx_run(dev);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 0);
	fw_send(SRC_A, 16);
	pump(dev);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 2);
}

/*
 * Sources send at most 4048 bytes, and a 48 + 4048-byte read() buffer is
 * promised to be enough: a larger byte count is a firmware fault on data
 * a source controls. The payload was ACKed by the receive, so it is
 * dropped and counted, never copied, never retried, and never a WARN
 * (panic_on_warn kernels would go down on it).
 */
static const u32 oversize_cases[] = {
	HVPIPE_MAX_PAYLOAD + 1, SZ_4K - 1, SZ_4K, SZ_4K + 1, U32_MAX,
};

static void oversize_desc(const u32 *bytes, char *desc)
{
	snprintf(desc, KUNIT_PARAM_DESC_SIZE, "firmware reports %u bytes",
		 *bytes);
}

KUNIT_ARRAY_PARAM(oversize, oversize_cases, oversize_desc);

static void hvpipe_test_recv_oversize(struct kunit *test)
{
	const u32 *bytes = test->param_value;
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf(test, 2 * PAGE_SIZE);
	bool tainted = test_taint(TAINT_WARN);
	ssize_t len;

	fw_send(SRC_A, 16);
	f->fifo[0].bytes = *bytes;
	pump(dev);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 1);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 0);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "dropped_oversize"), 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "received"), 0);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "recv_fw_unexpected"), 0);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 0);
	if (!tainted)
		KUNIT_EXPECT_FALSE_MSG(test, test_taint(TAINT_WARN),
				       "a WARN on firmware data");

	/* The pipe works on; a 6.18 program's buffer is enough. */
	fw_send(SRC_A, HVPIPE_MAX_PAYLOAD);
	pump(dev);
	KUNIT_EXPECT_EQ(test, read_flags(test, file, buf, &len),
			HVPIPE_MSG_AVAILABLE);
	KUNIT_EXPECT_EQ(test, len, HDR + HVPIPE_MAX_PAYLOAD);
}

/* What a received payload carries, byte for byte. */
static void hvpipe_test_recv_bytes(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf(test, PAGE_SIZE);
	u8 *page;

	page = kunit_kmalloc(test, PAGE_SIZE, GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, page);
	fw_send(SRC_A, 16);
	fw_send(SRC_A, 100);
	pump(dev);
	KUNIT_ASSERT_EQ(test, do_read(file, buf, PAGE_SIZE), HDR + 16);
	KUNIT_ASSERT_EQ(test, copy_from_user(page, buf, HDR + 16), 0);
	KUNIT_EXPECT_EQ(test, page[HDR], 1);
	KUNIT_EXPECT_EQ(test, page[HDR + 15], 0x5a);
	KUNIT_ASSERT_EQ(test, do_read(file, buf, PAGE_SIZE), HDR + 100);
	KUNIT_ASSERT_EQ(test, copy_from_user(page, buf, HDR + 100), 0);
	KUNIT_EXPECT_EQ(test, page[HDR], 2);
	KUNIT_EXPECT_EQ(test, page[HDR + 99], 0x5a);
}

/*
 * The exact big-endian bytes of the buffer list, and the payload in a
 * page-aligned 4 KiB buffer of its own after it: the format as its author
 * describes it ("Address of 4K buffer 1").
 */
static void hvpipe_test_send_layout(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf(test, 2 * PAGE_SIZE);
	static const u8 be24[8] = { 0, 0, 0, 0, 0, 0, 0, 24 };
	static const u8 be4048[8] = { 0, 0, 0, 0, 0, 0, 0x0f, 0xd0 };
	u8 *payload;
	int i;

	payload = kunit_kmalloc(test, HDR + HVPIPE_MAX_PAYLOAD, GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, payload);
	for (i = 0; i < HDR + HVPIPE_MAX_PAYLOAD; i++)
		payload[i] = i * 7;
	KUNIT_ASSERT_EQ(test, copy_to_user(buf, payload,
					   HDR + HVPIPE_MAX_PAYLOAD), 0);

	KUNIT_ASSERT_EQ(test, do_write(file, buf, HDR + HVPIPE_MAX_PAYLOAD),
			HDR + HVPIPE_MAX_PAYLOAD);
	KUNIT_EXPECT_MEMEQ(test, f->send_area, be24, 8);
	KUNIT_EXPECT_EQ(test, get_unaligned_be64(f->send_area + 8),
			(u64)f->send_phys + SZ_4K);
	KUNIT_EXPECT_MEMEQ(test, f->send_area + 16, be4048, 8);
	KUNIT_EXPECT_MEMEQ(test, f->send_area + SZ_4K, payload + HDR,
			   HVPIPE_MAX_PAYLOAD);
	KUNIT_EXPECT_EQ(test, (f->send_phys + SZ_4K) & (SZ_4K - 1), 0);
	KUNIT_EXPECT_EQ(test, f->send_phys & 7, 0);
}

/*
 * A write() buffer not yet faulted in cannot be copied to the work area
 * with page faults disabled: it is fetched the slow way and sent the same,
 * once. A buffer that cannot be read at all fails with EFAULT, unsent.
 */
static void hvpipe_test_send_not_resident(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf(test, PAGE_SIZE);	/* Never touched. */
	static const u8 zeros[100];

	KUNIT_ASSERT_EQ(test, do_write(file, buf, HDR + 100), HDR + 100);
	KUNIT_EXPECT_EQ(test, f->send_calls, 1);
	KUNIT_EXPECT_EQ(test, get_unaligned_be64(f->send_area + 16), 100);
	KUNIT_EXPECT_MEMEQ(test, f->send_area + SZ_4K, zeros, 100);

	KUNIT_EXPECT_EQ(test, do_write(file, (char __user *)TASK_SIZE - HDR,
				       HDR + 100), -EFAULT);
	KUNIT_EXPECT_EQ(test, f->send_calls, 1);
}

/* Event parsing. */

struct event_case {
	const char *desc;
	struct log_spec log;
	s32 ce_rc;
	int pending;		/* Events noted. */
	const char *counter;	/* The counter bumped. */
	bool receives;		/* A receive follows. */
};

static const struct event_case event_cases[] = {
	{ "payload available", { RTAS_TYPE_HVPIPE, .srcid = SRC_A, .evtype = 1 },
	  0, 1, "events_payload", true },
	{ "lost connection", { RTAS_TYPE_HVPIPE, .srcid = SRC_A, .evtype = 2 },
	  0, 1, "events_lost", false },
	{ "both bits: payload, then notice",
	  { RTAS_TYPE_HVPIPE, .srcid = SRC_A, .evtype = 3 },
	  0, 2, "events_payload", true },
	{ "PE after another section",
	  { RTAS_TYPE_HVPIPE, .filler = true, .srcid = SRC_A, .evtype = 1 },
	  0, 1, "events_payload", true },
	{ "wrong log type", { RTAS_TYPE_HOTPLUG, .srcid = SRC_A, .evtype = 1 },
	  0, 1, "events_bad_log_type", true },
	{ "missing PE section",
	  { RTAS_TYPE_HVPIPE, .filler = true, .no_pe = true },
	  0, 1, "events_no_section", true },
	{ "zero-length section before PE",
	  { RTAS_TYPE_HVPIPE, .filler = true, .zero_len = true, .srcid = SRC_A,
	    .evtype = 1 },
	  0, 1, "events_no_section", true },
	{ "short PE section",
	  { RTAS_TYPE_HVPIPE, .pe_len = 12, .srcid = SRC_A, .evtype = 1 },
	  0, 1, "events_short_section", true },
	{ "section overrunning the log",
	  { RTAS_TYPE_HVPIPE, .pe_len = 0xffff, .srcid = SRC_A, .evtype = 1 },
	  0, 1, "events_no_section", true },
	{ "extended length beyond the buffer",
	  { RTAS_TYPE_HVPIPE, .ext_extra = RTAS_ERROR_LOG_MAX, .srcid = SRC_A,
	    .evtype = 1 },
	  0, 1, "events_no_section", true },
	{ "unknown event type", { RTAS_TYPE_HVPIPE, .srcid = SRC_A, .evtype = 4 },
	  0, 1, "events_unknown_type", true },
	{ "check-exception failed (-1): the log may be an event",
	  { RTAS_TYPE_HVPIPE, .srcid = SRC_A, .evtype = 1 },
	  -1, 1, "events_ce_failed", true },
	{ "check-exception failed (unexpected -77)",
	  { RTAS_TYPE_HVPIPE, .srcid = SRC_A, .evtype = 1 },
	  -77, 1, "events_ce_failed", true },
};

KUNIT_ARRAY_PARAM_DESC(event, event_cases, desc);

static void hvpipe_test_event(struct kunit *test)
{
	const struct event_case *c = test->param_value;
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);

	f->ce_rc[0] = c->ce_rc;
	f->ce_nrc = 1;
	fw_raise(&c->log);
	run_irqs(dev);

	KUNIT_EXPECT_EQ(test, f->ce_calls, 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "events_interrupts"), 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, c->counter), 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), c->pending);
	KUNIT_EXPECT_EQ(test, f->kicks, 1);
	hvpipe_rx_run(dev);
	KUNIT_EXPECT_EQ(test, f->recv_calls, c->receives ? 1 : 0);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 0);
}

/* check-exception with no event to return: nothing noted, no receive. */
static void hvpipe_test_event_none(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);

	hvpipe_handle_event(dev, 0);
	KUNIT_EXPECT_EQ(test, f->ce_calls, 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "events_no_event"), 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 0);
	KUNIT_EXPECT_EQ(test, f->kicks, 0);
}

/*
 * An event that cannot be read may stand for a waiting payload that would
 * block the pipe for good: one receive follows it. Firmware names the
 * source, and the payload is routed there (not counted as misrouted); 0
 * bytes means nothing was pending.
 */
struct malformed_case {
	const char *desc;
	struct log_spec log;
	s32 ce_rc;
	bool pending;		/* Firmware holds a payload from SRC_B. */
	s32 rc[MAX_SCRIPT];	/* Receive statuses. */
	int nrc;
};

static const struct malformed_case malformed_cases[] = {
	{ "wrong log type, payload delivered",
	  { RTAS_TYPE_HOTPLUG, .srcid = SRC_A, .evtype = 1 }, 0, true },
	{ "missing PE section, payload delivered",
	  { RTAS_TYPE_HVPIPE, .filler = true, .no_pe = true }, 0, true },
	{ "short PE section, payload delivered",
	  { RTAS_TYPE_HVPIPE, .pe_len = 12, .srcid = SRC_A, .evtype = 1 }, 0,
	  true },
	{ "unknown event type, payload delivered",
	  { RTAS_TYPE_HVPIPE, .srcid = SRC_A, .evtype = 4 }, 0, true },
	{ "check-exception failed, payload delivered",
	  { RTAS_TYPE_HVPIPE, .srcid = SRC_A, .evtype = 1 }, -1, true },
	{ "short PE section, -1 once, payload delivered",
	  { RTAS_TYPE_HVPIPE, .pe_len = 12, .srcid = SRC_A, .evtype = 1 }, 0,
	  true, { -1, 0 }, 2 },
	{ "missing PE section, nothing pending: spurious",
	  { RTAS_TYPE_HVPIPE, .filler = true, .no_pe = true }, 0, false },
};

KUNIT_ARRAY_PARAM_DESC(malformed, malformed_cases, desc);

static void hvpipe_test_malformed_receive(struct kunit *test)
{
	const struct malformed_case *c = test->param_value;
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);

	new_file(test, dev, SRC_A);
	new_file(test, dev, SRC_B);
	memcpy(f->recv_rc, c->rc, sizeof(c->rc));
	f->recv_nrc = c->nrc;
	f->ce_rc[0] = c->ce_rc;
	f->ce_nrc = 1;
	if (c->pending) {
		fw_next_log(&c->log);
		fw_send(SRC_B, 16);
	} else {
		fw_raise(&c->log);
	}
	pump(dev);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "events_payload"), 0);
	/* The event's kick, and one for the retry after a failed receive. */
	KUNIT_EXPECT_EQ(test, f->kicks, c->nrc > 1 ? 2 : 1);
	if (c->nrc > 1) {
		KUNIT_EXPECT_EQ(test, f->recv_calls, 1);
		KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 1);
		hvpipe_rx_run(dev);
	}

	KUNIT_EXPECT_EQ(test, f->recv_calls, c->nrc > 1 ? c->nrc : 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 0);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 0);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_B, "queued"),
			c->pending ? 1 : 0);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "received"), c->pending ? 1 : 0);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "events_spurious"),
			c->pending ? 0 : 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "misrouted"), 0);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "dropped_no_handle"), 0);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "dropped_rx_failed"), 0);

	/* The pipe works on. */
	f->recv_nrc = 0;
	f->ce_nrc = 0;
	fw_send(SRC_A, 16);
	pump(dev);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 1);
}

/* Fill the event ring with lost-connection events of a source nobody has. */
static void fill_ring(struct hvpipe_dev *dev)
{
	int i;

	for (i = 0; i < 16; i++) {
		fw_event(SRC_NONE, HVPIPE_LOST_CONNECTION);
		run_irqs(dev);
	}
}

/*
 * A payload event kept aside while the ring is full wins over a probe kept
 * aside; a probe does not replace a deferred payload event. Here firmware
 * raises the malformed event for a payload, then a duplicate event naming
 * it, then another malformed one.
 */
static void hvpipe_test_malformed_overflow(struct kunit *test)
{
	struct log_spec bad = { RTAS_TYPE_HVPIPE, .filler = true, .no_pe = true };
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf(test, PAGE_SIZE);
	ssize_t len;

	fill_ring(dev);
	fw_next_log(&bad);
	fw_send(SRC_A, 16);
	run_irqs(dev);
	fw_event(SRC_A, HVPIPE_MSG_AVAILABLE);
	fw_raise(&bad);
	run_irqs(dev);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "events_deferred"), 3);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "events_overflow"), 0);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 17);

	hvpipe_rx_run(dev);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 0);
	KUNIT_EXPECT_EQ(test, read_flags(test, file, buf, &len),
			HVPIPE_MSG_AVAILABLE);
	KUNIT_EXPECT_EQ(test, len, HDR + 16);
}

static void hvpipe_test_event_overflow(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 4);

	fill_ring(dev);
	fw_event(SRC_A, HVPIPE_LOST_CONNECTION);
	fw_event(SRC_A, HVPIPE_LOST_CONNECTION);
	run_irqs(dev);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 16);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "events_overflow"), 2);
}

/*
 * A payload event finding the ring full of lost-connection events is kept
 * aside, not dropped: firmware would raise no further event, and the pipe
 * would stay blocked. It is handled after the older events.
 */
static void hvpipe_test_event_overflow_payload(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf(test, PAGE_SIZE);
	ssize_t len;

	fill_ring(dev);
	fw_event(SRC_A, HVPIPE_LOST_CONNECTION);
	fw_send(SRC_A, 16);
	run_irqs(dev);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "events_overflow"), 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "events_deferred"), 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 17);

	hvpipe_rx_run(dev);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 0);
	KUNIT_EXPECT_EQ(test, read_flags(test, file, buf, &len),
			HVPIPE_MSG_AVAILABLE);
	KUNIT_EXPECT_EQ(test, len, HDR + 16);
}

/*
 * Firmware raises the next event as soon as a payload is received, before
 * the receive call has returned: it is noted, and handled next.
 */
static void hvpipe_test_event_during_receive(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);

	new_file(test, dev, SRC_A);
	fw_send(SRC_A, 16);
	fw_send(SRC_A, 16);
	run_irqs(dev);
	f->irq_dev = dev;
	hvpipe_rx_run(dev);
	KUNIT_EXPECT_EQ(test, f->ce_calls, 2);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "events_payload"), 2);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 2);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 2);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 0);
}

/* Routing. */

static void hvpipe_test_unknown_source(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);

	new_file(test, dev, SRC_A);
	fw_send(SRC_NONE, 16);
	fw_send(SRC_A, 16);
	pump(dev);
	/* Received (so the pipe is not blocked), then dropped and counted. */
	KUNIT_EXPECT_EQ(test, f->recv_calls, 2);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "dropped_no_handle"), 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "received"), 1);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 0);
}

/*
 * Sources are kept by the index of their ID (its low 16 bits): IDs with
 * SRC_A's index but another type, or the reserved byte set, are no
 * source's, whether they name the event or the payload.
 */
static void hvpipe_test_unknown_source_index(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 4);

	new_file(test, dev, SRC_A);
	fw_send(0x03000001, 16);
	fw_send(0x00000001, 16);
	fw_send_named(0x02010001, SRC_A, 16);
	fw_send_named(SRC_A, 0x82000001, 16);
	pump(dev);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "dropped_no_handle"), 3);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "misrouted"), 2);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "received"), 1);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 0);
}

/*
 * Spurious events: firmware has nothing pending, the receive succeeds with
 * 0 bytes. Not a message: not misrouted, not dropped, not received.
 */
static void hvpipe_test_spurious(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);

	new_file(test, dev, SRC_A);
	/* An event naming an open source, then one naming no open source. */
	fw_event(SRC_A, HVPIPE_MSG_AVAILABLE);
	pump(dev);
	fw_event(SRC_NONE, HVPIPE_MSG_AVAILABLE);
	pump(dev);
	/* Firmware may also name the event's source with 0 bytes. */
	fw_send(SRC_A, 0);
	pump(dev);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 3);
	KUNIT_EXPECT_EQ(test, f->recv_empty, 2);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "events_payload"), 3);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "events_spurious"), 3);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "misrouted"), 0);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "dropped_no_handle"), 0);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "received"), 0);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 0);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "received"), 0);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 0);

	/* The pipe works on. */
	fw_send(SRC_A, 16);
	pump(dev);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "events_spurious"), 3);
}

/* A payload goes where the receive says it came from, not the event. */
static void hvpipe_test_source_mismatch(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 4);

	new_file(test, dev, SRC_A);
	new_file(test, dev, SRC_B);
	fw_send_named(SRC_B, SRC_A, 16);
	pump(dev);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 0);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_B, "queued"), 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "misrouted"), 1);

	fw_send_named(SRC_NONE, SRC_A, 16);
	pump(dev);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 0);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "misrouted"), 2);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "dropped_no_handle"), 1);
}

/* Queue bound and back-pressure. */
static void hvpipe_test_backpressure(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 2);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf(test, PAGE_SIZE);
	int kicks;

	fw_send(SRC_A, 16);
	fw_send(SRC_A, 16);
	fw_send(SRC_A, 16);
	pump(dev);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 2);

	/* Full: the third payload stays with firmware. */
	KUNIT_EXPECT_EQ(test, f->recv_calls, 2);
	KUNIT_EXPECT_EQ(test, f->nfifo, 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "rx_blocked"), 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "backpressure"), 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 1);

	/* Still full: nothing more is received. */
	hvpipe_rx_run(dev);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 2);

	/* Reading makes room and kicks the receive path. */
	kicks = f->kicks;
	KUNIT_EXPECT_EQ(test, do_read(file, buf, PAGE_SIZE), HDR + 16);
	KUNIT_EXPECT_EQ(test, f->kicks, kicks + 1);
	hvpipe_rx_run(dev);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 3);
	KUNIT_EXPECT_EQ(test, f->nfifo, 0);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 2);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "rx_blocked"), 0);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 0);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "queue_hwm"), 2);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "received"), 3);
}

/*
 * Back-pressure is judged by the event's source, but the event may be
 * stale: here A's queue is full and firmware withdraws A's payload (A was
 * lost), then offers B's. The newer event shows the old one stands for
 * nothing: B's payload must not wait for A's reader, who may never read.
 */
static void hvpipe_test_backpressure_stale(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 1);
	struct file *a = new_file(test, dev, SRC_A);
	char __user *buf = user_buf(test, PAGE_SIZE);
	ssize_t len;

	new_file(test, dev, SRC_B);
	fw_send(SRC_A, 16);
	fw_send(SRC_A, 16);
	pump(dev);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "rx_blocked"), 1);

	fw_event(SRC_A, HVPIPE_LOST_CONNECTION);
	fw_withdraw();
	fw_send(SRC_B, 16);
	pump(dev);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_B, "queued"), 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "events_stale"), 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "rx_blocked"), 0);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 0);
	KUNIT_EXPECT_EQ(test, f->recv_empty, 0);

	/* A's reader finds its message, then the notice. */
	KUNIT_EXPECT_EQ(test, read_flags(test, a, buf, &len),
			HVPIPE_MSG_AVAILABLE);
	KUNIT_EXPECT_EQ(test, read_flags(test, a, buf, &len),
			HVPIPE_LOST_CONNECTION);
}

/* Closing a blocked source lets the waiting payload through. */
static void hvpipe_test_close_unblocks(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 1);
	struct file *file = new_file(test, dev, SRC_A);
	int kicks;

	fw_send(SRC_A, 16);
	fw_send(SRC_A, 16);
	pump(dev);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "rx_blocked"), 1);
	kicks = f->kicks;
	kunit_release_action(test, file_close, file);
	KUNIT_EXPECT_EQ(test, f->kicks, kicks + 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "dropped_closed"), 1);
	hvpipe_rx_run(dev);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 2);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "dropped_no_handle"), 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 0);
}

static void hvpipe_test_close_queued(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 8);
	struct file *file = new_file(test, dev, SRC_A);
	int i;

	for (i = 0; i < 3; i++)
		fw_send(SRC_A, 16);
	pump(dev);
	fw_event(SRC_A, HVPIPE_LOST_CONNECTION);
	pump(dev);
	kunit_release_action(test, file_close, file);
	/* Three messages dropped; the notice is not a message. */
	KUNIT_EXPECT_EQ(test, stat(test, dev, "dropped_closed"), 3);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "open_sources"), 0);
	/* The source can be opened again. */
	new_file(test, dev, SRC_A);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "open_sources"), 1);
}

/* Reading and writing. */

struct size_case {
	const char *desc;
	size_t count;
	ssize_t ret;
};

static const struct size_case write_cases[] = {
	{ "47 bytes: shorter than the header", 47, -EINVAL },
	{ "48 bytes: header without payload", 48, -EINVAL },
	{ "49 bytes: one payload byte", 49, 49 },
	{ "4096 bytes: largest payload", 4096, 4096 },
	{ "4097 bytes: payload too large", 4097, -EINVAL },
};

KUNIT_ARRAY_PARAM_DESC(write_size, write_cases, desc);

static void hvpipe_test_write_size(struct kunit *test)
{
	const struct size_case *c = test->param_value;
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf(test, 2 * PAGE_SIZE);

	KUNIT_EXPECT_EQ(test, do_write(file, buf, c->count), c->ret);
	KUNIT_EXPECT_EQ(test, f->send_calls, c->ret > 0 ? 1 : 0);
	if (c->ret > 0)
		KUNIT_EXPECT_EQ(test, get_unaligned_be64(f->send_area + 16),
				c->count - HDR);
}

static void hvpipe_test_write_fault(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);

	KUNIT_EXPECT_EQ(test, do_write(file, (char __user *)16, 100), -EFAULT);
	KUNIT_EXPECT_EQ(test, f->send_calls, 0);
}

static void hvpipe_test_read_sizes(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf(test, 2 * PAGE_SIZE);

	fw_send(SRC_A, 100);
	pump(dev);

	KUNIT_EXPECT_EQ(test, do_read(file, buf, 47), -EINVAL);
	KUNIT_EXPECT_EQ(test, do_read(file, buf, 48), -EMSGSIZE);
	KUNIT_EXPECT_EQ(test, do_read(file, buf, 49), -EMSGSIZE);
	KUNIT_EXPECT_EQ(test, do_read(file, buf, 147), -EMSGSIZE);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 1);
	/* A bad pointer fails and the message stays queued. */
	KUNIT_EXPECT_EQ(test, do_read(file, (char __user *)16, 4096), -EFAULT);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 1);
	KUNIT_EXPECT_EQ(test, do_read(file, buf, 148), 148);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 0);

	/* The largest payload fits a 4096-byte buffer. */
	fw_send(SRC_A, HVPIPE_MAX_PAYLOAD);
	pump(dev);
	KUNIT_EXPECT_EQ(test, do_read(file, buf, 4095), -EMSGSIZE);
	KUNIT_EXPECT_EQ(test, do_read(file, buf, 4096), 4096);
}

/*
 * The header copies out, the payload faults: -EFAULT, and the message stays
 * queued, whole and first. So does a lost-connection notice.
 */
static void hvpipe_test_read_partial_fault(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf(test, 2 * PAGE_SIZE);
	char __user *edge = buf + PAGE_SIZE - HDR;
	struct papr_hvpipe_hdr hdr;
	ssize_t len;

	KUNIT_ASSERT_EQ(test, vm_munmap((unsigned long)buf + PAGE_SIZE,
					PAGE_SIZE), 0);
	fw_send(SRC_A, 16);
	pump(dev);
	fw_event(SRC_A, HVPIPE_LOST_CONNECTION);
	pump(dev);
	KUNIT_EXPECT_EQ(test, do_read(file, edge, HDR + 16), -EFAULT);
	KUNIT_ASSERT_EQ(test, copy_from_user(&hdr, edge, sizeof(hdr)), 0);
	KUNIT_EXPECT_EQ(test, hdr.flags, HVPIPE_MSG_AVAILABLE);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 1);

	/* A notice read into a bad buffer stays queued too. */
	KUNIT_EXPECT_EQ(test, read_flags(test, file, buf, &len),
			HVPIPE_MSG_AVAILABLE);
	KUNIT_EXPECT_EQ(test, len, HDR + 16);
	KUNIT_EXPECT_EQ(test, do_read(file, (char __user *)16, HDR), -EFAULT);
	KUNIT_EXPECT_TRUE(test, poll_mask(file) & MASK_HUP);
	KUNIT_EXPECT_EQ(test, read_flags(test, file, buf, &len),
			HVPIPE_LOST_CONNECTION);
	file->f_flags |= O_NONBLOCK;
	KUNIT_EXPECT_EQ(test, do_read(file, buf, PAGE_SIZE), -EAGAIN);
}

static void hvpipe_test_read_header(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf(test, PAGE_SIZE);
	struct papr_hvpipe_hdr hdr;
	u8 *page, zero[40] = {};

	page = kunit_kmalloc(test, PAGE_SIZE, GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, page);
	memset(page, 0xaa, PAGE_SIZE);
	KUNIT_ASSERT_EQ(test, copy_to_user(buf, page, PAGE_SIZE), 0);

	fw_send(SRC_A, 16);
	pump(dev);
	KUNIT_ASSERT_EQ(test, do_read(file, buf, PAGE_SIZE), HDR + 16);
	KUNIT_ASSERT_EQ(test, copy_from_user(&hdr, buf, sizeof(hdr)), 0);
	KUNIT_EXPECT_EQ(test, hdr.version, 0);
	KUNIT_EXPECT_MEMEQ(test, hdr.reserved, zero, sizeof(hdr.reserved));
	KUNIT_EXPECT_EQ(test, hdr.flags, HVPIPE_MSG_AVAILABLE);
	KUNIT_EXPECT_MEMEQ(test, hdr.reserved2, zero, sizeof(hdr.reserved2));
	KUNIT_ASSERT_EQ(test, copy_from_user(page, buf, HDR + 17), 0);
	KUNIT_EXPECT_EQ(test, page[HDR + 1], 0x5a);
	/* Nothing beyond the message is written. */
	KUNIT_EXPECT_EQ(test, page[HDR + 16], 0xaa);
}

static void hvpipe_test_read_nonblock(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf(test, PAGE_SIZE);

	file->f_flags |= O_NONBLOCK;
	KUNIT_EXPECT_EQ(test, do_read(file, buf, PAGE_SIZE), -EAGAIN);
}

/*
 * A thread that reads or writes a source file. The fakes answer it as they
 * answer the test, and it may borrow the test's user memory; it can be
 * stopped with SIGKILL if it blocks for good.
 */
struct worker {
	struct kunit *test;
	struct file *file;
	struct mm_struct *mm;
	char __user *buf;
	size_t count;
	bool write;
	ssize_t ret;
	struct task_struct *task;
	struct completion started;
	struct completion done;
};

static int worker_fn(void *data)
{
	struct worker *w = data;

	allow_signal(SIGKILL);
	current->kunit_test = w->test;
	if (w->mm)
		kthread_use_mm(w->mm);
	complete(&w->started);
	w->ret = w->write ? do_write(w->file, w->buf, w->count) :
			    do_read(w->file, w->buf, w->count);
	if (w->mm)
		kthread_unuse_mm(w->mm);
	current->kunit_test = NULL;
	complete(&w->done);
	return 0;
}

/* Start a worker; with mm NULL its buffer is a bad pointer. */
static void worker_start(struct kunit *test, struct worker *w,
			 struct file *file, struct mm_struct *mm,
			 char __user *buf, size_t count, bool write)
{
	*w = (struct worker) {
		.test = test, .file = file, .mm = mm, .count = count,
		.buf = mm ? buf : (char __user *)16, .write = write, .ret = 1,
	};
	init_completion(&w->started);
	init_completion(&w->done);
	w->task = kthread_run(worker_fn, w, "hvpipe-worker");
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, w->task);
	get_task_struct(w->task);
	wait_for_completion(&w->started);
}

/* Wait for a worker; false (and it is killed) if it is still blocked. */
static bool worker_wait(struct worker *w, unsigned int ms)
{
	bool done = wait_for_completion_timeout(&w->done,
						msecs_to_jiffies(ms));

	if (!done) {
		send_sig(SIGKILL, w->task, 1);
		wait_for_completion(&w->done);
	}
	put_task_struct(w->task);
	return done;
}

/* A blocked reader wakes when a message arrives. */
static void hvpipe_test_read_blocks(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf(test, PAGE_SIZE);
	struct worker r;

	worker_start(test, &r, file, current->mm, buf, PAGE_SIZE, false);
	msleep(50);
	KUNIT_EXPECT_EQ(test, r.ret, 1);	/* Still blocked. */
	fw_send(SRC_A, 16);
	pump(dev);
	KUNIT_EXPECT_TRUE(test, worker_wait(&r, 2000));
	KUNIT_EXPECT_EQ(test, r.ret, HDR + 16);
}

/* Counts the wake-ups of a file's wait queue, as a poller would see them. */
struct wake_counter {
	poll_table pt;
	wait_queue_entry_t entry;
	wait_queue_head_t *head;
	int wakes;
};

static int wake_counter_fn(wait_queue_entry_t *entry, unsigned int mode,
			   int sync, void *key)
{
	container_of(entry, struct wake_counter, entry)->wakes++;
	return 0;
}

static void wake_counter_add(struct file *file, wait_queue_head_t *head,
			     poll_table *pt)
{
	struct wake_counter *c = container_of(pt, struct wake_counter, pt);

	init_waitqueue_func_entry(&c->entry, wake_counter_fn);
	c->head = head;
	add_wait_queue(head, &c->entry);
}

static void wake_counter_remove(void *data)
{
	struct wake_counter *c = data;

	remove_wait_queue(c->head, &c->entry);
}

/*
 * A reader that takes a message and cannot copy it out puts it back. Other
 * readers and pollers found the queue empty meanwhile and went back to
 * sleep: putting it back must wake them, or the message waits for the
 * next event while one of them waits for it.
 */
static void hvpipe_test_read_fault_wakes(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf(test, PAGE_SIZE);
	struct wake_counter *c;
	struct worker bad, good;
	int wakes;

	/* Queued first: a poller waiting at the event would be offered it. */
	fw_send(SRC_A, 16);
	pump(dev);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 1);
	c = kunit_kzalloc(test, sizeof(*c), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, c);
	init_poll_funcptr(&c->pt, wake_counter_add);
	KUNIT_EXPECT_TRUE(test, file->f_op->poll(file, &c->pt) & EPOLLIN);
	KUNIT_ASSERT_EQ(test, 0, kunit_add_action_or_reset(test,
							   wake_counter_remove,
							   c));
	wakes = c->wakes;
	KUNIT_EXPECT_EQ(test, do_read(file, (char __user *)16, PAGE_SIZE),
			-EFAULT);
	KUNIT_EXPECT_EQ(test, c->wakes, wakes + 1);
	KUNIT_EXPECT_EQ(test, do_read(file, buf, PAGE_SIZE), HDR + 16);

	/* Two blocked readers, one with a bad pointer: the other gets it. */
	worker_start(test, &bad, file, NULL, NULL, PAGE_SIZE, false);
	worker_start(test, &good, file, current->mm, buf, PAGE_SIZE, false);
	msleep(50);
	fw_send(SRC_A, 16);
	pump(dev);
	KUNIT_EXPECT_TRUE(test, worker_wait(&good, 2000));
	KUNIT_EXPECT_EQ(test, good.ret, HDR + 16);
	worker_wait(&bad, 100);
}

/*
 * A reader that waits for its source is woken by the interrupt and receives
 * the payload itself, straight into its buffer: one wake-up on the way, no
 * work item (kicked only with a delay, in case the reader does not come).
 */
static void hvpipe_test_direct_read(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf_resident(test, PAGE_SIZE);
	struct worker r;
	u8 first;

	worker_start(test, &r, file, current->mm, buf, PAGE_SIZE, false);
	msleep(50);
	fw_send(SRC_A, 16);
	run_irqs(dev);
	KUNIT_EXPECT_EQ(test, f->kicks, 1);
	KUNIT_EXPECT_GT(test, f->kick_delay, 0);
	KUNIT_ASSERT_TRUE(test, worker_wait(&r, 2000));
	KUNIT_EXPECT_EQ(test, r.ret, HDR + 16);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 1);
	KUNIT_EXPECT_PTR_EQ(test, f->recv_task, r.task);
	KUNIT_ASSERT_EQ(test, get_user(first, (u8 __user *)buf + HDR), 0);
	KUNIT_EXPECT_EQ(test, first, 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "received"), 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "received_direct"), 1);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "received"), 1);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 0);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 0);
	/* The late work item finds nothing to do. */
	hvpipe_rx_run(dev);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 1);
}

/*
 * A reader receiving the largest payload itself gets the header, cleared
 * but for its flags, and every payload byte, in a buffer that held other
 * bytes; firmware was given a page-aligned 4 KiB buffer, as it expects.
 */
static void hvpipe_test_direct_read_largest(struct kunit *test)
{
	struct papr_hvpipe_hdr want = { .flags = HVPIPE_MSG_AVAILABLE };
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf_resident(test, PAGE_SIZE);
	u8 *got;
	int i;

	got = kunit_kmalloc(test, HDR + HVPIPE_MAX_PAYLOAD, GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, got);
	memset(got, 0xff, HDR + HVPIPE_MAX_PAYLOAD);
	KUNIT_ASSERT_EQ(test, copy_to_user(buf, got, HDR + HVPIPE_MAX_PAYLOAD),
			0);

	fw_send(SRC_A, HVPIPE_MAX_PAYLOAD);
	run_irqs(dev);
	KUNIT_EXPECT_EQ(test, hvpipe_read_direct(file->private_data, buf,
						 PAGE_SIZE),
			HDR + HVPIPE_MAX_PAYLOAD);
	KUNIT_EXPECT_EQ(test, f->recv_size, SZ_4K);
	KUNIT_EXPECT_EQ(test, f->recv_phys & (SZ_4K - 1), 0);
	KUNIT_ASSERT_EQ(test, copy_from_user(got, buf, HDR + HVPIPE_MAX_PAYLOAD),
			0);
	KUNIT_EXPECT_MEMEQ(test, got, &want, HDR);
	KUNIT_EXPECT_EQ(test, got[HDR], 1);
	for (i = 1; i < HVPIPE_MAX_PAYLOAD; i++)
		if (got[HDR + i] != 0x5a)
			break;
	KUNIT_EXPECT_EQ(test, i, HVPIPE_MAX_PAYLOAD);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "received_direct"), 1);
}

/*
 * A reader that found its queue empty and a payload offered may find, once
 * it holds the receive path, that the work item queued that payload in the
 * meantime and firmware now offers the next: it must not take the newer one
 * past the older (a run of echoes from two sources showed them swapped).
 */
static void hvpipe_test_direct_order(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf_resident(test, PAGE_SIZE);
	u8 first;

	fw_send(SRC_A, 16);
	fw_send(SRC_A, 16);
	run_irqs(dev);
	hvpipe_rx_run(dev);		/* The first is queued... */
	run_irqs(dev);			/* ...and the second offered. */
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 1);

	KUNIT_EXPECT_EQ(test, hvpipe_read_direct(file->private_data, buf,
						 PAGE_SIZE), 0);
	KUNIT_ASSERT_EQ(test, do_read(file, buf, PAGE_SIZE), HDR + 16);
	KUNIT_ASSERT_EQ(test, get_user(first, (u8 __user *)buf + HDR), 0);
	KUNIT_EXPECT_EQ(test, first, 1);
	/* Now the queue is empty: the reader receives the second itself. */
	KUNIT_ASSERT_EQ(test, do_read(file, buf, PAGE_SIZE), HDR + 16);
	KUNIT_ASSERT_EQ(test, get_user(first, (u8 __user *)buf + HDR), 0);
	KUNIT_EXPECT_EQ(test, first, 2);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "received"), 2);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "received_direct"), 1);
}

/*
 * Readers of SRC_A and SRC_B waiting in read(), then a payload from each,
 * A's first: firmware offers B's once A's is received.
 */
static void two_readers_start(struct kunit *test, struct hvpipe_dev *dev,
			      struct worker *ra, struct worker *rb)
{
	struct file *a = new_file(test, dev, SRC_A);
	struct file *b = new_file(test, dev, SRC_B);
	char __user *buf = user_buf_resident(test, 2 * PAGE_SIZE);

	worker_start(test, ra, a, current->mm, buf, PAGE_SIZE, false);
	worker_start(test, rb, b, current->mm, buf + PAGE_SIZE, PAGE_SIZE,
		     false);
	msleep(50);
	fw_send(SRC_A, 16);
	fw_send(SRC_B, 32);
}

/* Each of two_readers_start()'s readers received its payload itself. */
static void two_readers_received(struct kunit *test, struct hvpipe_dev *dev,
				 struct worker *ra, struct worker *rb)
{
	KUNIT_ASSERT_TRUE(test, worker_wait(ra, 2000));
	KUNIT_ASSERT_TRUE(test, worker_wait(rb, 2000));
	KUNIT_EXPECT_EQ(test, ra->ret, HDR + 16);
	KUNIT_EXPECT_EQ(test, rb->ret, HDR + 32);
	KUNIT_EXPECT_EQ(test, fake()->recv_calls, 2);
	KUNIT_EXPECT_PTR_EQ(test, fake()->recv_task, rb->task);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "received_direct"), 2);
}

/*
 * Firmware offers the next payload as soon as the last one is received,
 * before the reader receiving it has removed its event: the next payload's
 * reader is woken all the same, and receives it itself.
 */
static void hvpipe_test_direct_next(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct worker ra, rb;

	two_readers_start(test, dev, &ra, &rb);
	f->irq_dev = dev;	/* B's event comes during A's receive. */
	run_irqs(dev);
	two_readers_received(test, dev, &ra, &rb);
	/* Both readers were woken: the work item was never kicked at once. */
	KUNIT_EXPECT_EQ(test, f->kicks, 2);
	KUNIT_EXPECT_GT(test, f->kick_delay, 0);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 0);
}

/*
 * The work item, already running for a payload no reader waits for, leaves
 * the next one, offered meanwhile to the reader woken for it, to that
 * reader; it only looks again when the offer ends.
 */
static void hvpipe_test_direct_offer_kept(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *b = new_file(test, dev, SRC_B);
	char __user *buf = user_buf_resident(test, PAGE_SIZE);
	struct worker rb;

	new_file(test, dev, SRC_A);
	worker_start(test, &rb, b, current->mm, buf, PAGE_SIZE, false);
	msleep(50);
	fw_send(SRC_A, 16);
	fw_send(SRC_B, 32);
	run_irqs(dev);		/* No reader waits for A's: kicked at once. */
	KUNIT_EXPECT_EQ(test, f->kicks, 1);
	KUNIT_EXPECT_EQ(test, f->kick_delay, 0);
	f->irq_dev = dev;
	hvpipe_rx_run(dev);
	KUNIT_ASSERT_TRUE(test, worker_wait(&rb, 2000));
	KUNIT_EXPECT_EQ(test, rb.ret, HDR + 32);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 2);
	KUNIT_EXPECT_PTR_EQ(test, f->recv_task, rb.task);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "received_direct"), 1);
	/* B's wake-up kicked with the grace; the work item again with the rest. */
	KUNIT_EXPECT_EQ(test, f->kicks, 3);
	KUNIT_EXPECT_GT(test, f->kick_delay, 0);
	KUNIT_EXPECT_LE(test, f->kick_delay, (unsigned long)(HZ / 20));
}

/*
 * The next payload is offered while the last one is being received, and a
 * lost-connection event comes behind it before that receive has ended: its
 * reader still sees POLLIN, and takes the payload itself once the receive
 * path is free, without waiting for the work item.
 */
static void hvpipe_test_direct_next_then_lost(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	DECLARE_COMPLETION_ONSTACK(at_gate);
	DECLARE_COMPLETION_ONSTACK(gate);
	struct worker ra, rb;
	int kicks;

	two_readers_start(test, dev, &ra, &rb);
	f->irq_dev = dev;
	f->recv_lost = SRC_NONE;
	f->recv_gate = &gate;
	f->recv_at_gate = &at_gate;
	f->recv_gate_late = true;
	run_irqs(dev);
	wait_for_completion(&at_gate);	/* A's receive has not ended. */
	msleep(50);			/* B's reader has looked. */
	KUNIT_EXPECT_EQ(test, poll_mask(rb.file), MASK_OUT | MASK_IN);
	kicks = f->kicks;
	f->recv_gate = NULL;
	complete(&gate);
	two_readers_received(test, dev, &ra, &rb);
	/*
	 * Left for the work item, and kicked for at once by the reader that
	 * took the payload in front of it: the notice for a source nobody
	 * has open.
	 */
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 1);
	KUNIT_EXPECT_EQ(test, f->kicks, kicks + 1);
	KUNIT_EXPECT_EQ(test, f->kick_delay, 0);
}

/*
 * What a reader receives for itself is routed like any payload: another
 * source's goes to that source, one too large for the buffer is queued
 * (read() then says EMSGSIZE), and a failed receive is the work item's to
 * retry, not the reader's.
 */
static void hvpipe_test_direct_routing(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *a = new_file(test, dev, SRC_A);
	char __user *buf = user_buf(test, PAGE_SIZE);
	struct worker r;

	new_file(test, dev, SRC_B);
	worker_start(test, &r, a, current->mm, buf, HDR + 16, false);
	msleep(50);
	fw_send_named(SRC_B, SRC_A, 16);
	run_irqs(dev);
	msleep(50);
	KUNIT_EXPECT_EQ(test, r.ret, 1);	/* Still waiting for its own. */
	KUNIT_EXPECT_EQ(test, f->recv_calls, 1);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_B, "queued"), 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "misrouted"), 1);

	/* Failing: the reader tries once and leaves it to the work item. */
	f->recv_rc[0] = 0;	/* By call number: the second fails. */
	f->recv_rc[1] = -1;
	f->recv_rc[2] = 0;
	f->recv_nrc = 3;
	fw_send(SRC_A, 100);
	run_irqs(dev);
	msleep(50);
	KUNIT_EXPECT_EQ(test, r.ret, 1);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 2);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "rx_retries"), 1);
	/* The retry receives it, too large for the reader's buffer. */
	hvpipe_rx_run(dev);
	KUNIT_ASSERT_TRUE(test, worker_wait(&r, 2000));
	KUNIT_EXPECT_EQ(test, r.ret, -EMSGSIZE);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 3);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 1);
}

/* The work item's run of the receive path, in a thread of its own. */
struct rx_runner {
	struct kunit *test;
	struct hvpipe_dev *dev;
	struct completion done;
};

static int rx_runner_fn(void *data)
{
	struct rx_runner *w = data;

	current->kunit_test = w->test;
	hvpipe_rx_run(w->dev);
	current->kunit_test = NULL;
	complete(&w->done);
	return 0;
}

/*
 * poll() reported POLLIN for an offered payload, then the work item took
 * the receive path: POLLIN stays (a kselftest saw it go and come back),
 * and a read() that must not block waits for it and gets the payload it
 * queues, not -EAGAIN (a kselftest saw -EAGAIN after POLLIN).
 */
static void hvpipe_test_read_while_busy(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf_resident(test, PAGE_SIZE);
	struct rx_runner w = { .test = test, .dev = dev };
	DECLARE_COMPLETION_ONSTACK(at_gate);
	DECLARE_COMPLETION_ONSTACK(gate);
	struct task_struct *task;
	struct worker r;

	fw_send(SRC_A, 16);
	run_irqs(dev);
	KUNIT_EXPECT_EQ(test, poll_mask(file), MASK_OUT | MASK_IN);

	f->recv_gate = &gate;
	f->recv_at_gate = &at_gate;
	init_completion(&w.done);
	task = kthread_run(rx_runner_fn, &w, "hvpipe-rx");
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, task);
	wait_for_completion(&at_gate);	/* It holds the receive path. */
	KUNIT_EXPECT_EQ(test, poll_mask(file), MASK_OUT | MASK_IN);

	file->f_flags |= O_NONBLOCK;
	worker_start(test, &r, file, current->mm, buf, PAGE_SIZE, false);
	msleep(50);
	KUNIT_EXPECT_EQ(test, r.ret, 1);	/* Waiting for it. */
	f->recv_gate = NULL;
	complete(&gate);
	wait_for_completion(&w.done);
	KUNIT_ASSERT_TRUE(test, worker_wait(&r, 2000));
	KUNIT_EXPECT_EQ(test, r.ret, HDR + 16);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "received_direct"), 0);
}

/*
 * poll() reports POLLIN for a payload firmware offers from the source,
 * and read() then receives it, even without blocking.
 */
static void hvpipe_test_poll_offered(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *a = new_file(test, dev, SRC_A);
	struct file *b = new_file(test, dev, SRC_B);
	char __user *buf = user_buf(test, PAGE_SIZE);

	fw_send(SRC_A, 16);
	run_irqs(dev);
	KUNIT_EXPECT_EQ(test, poll_mask(a), MASK_OUT | MASK_IN);
	KUNIT_EXPECT_EQ(test, poll_mask(b), MASK_OUT);
	b->f_flags |= O_NONBLOCK;
	KUNIT_EXPECT_EQ(test, do_read(b, buf, PAGE_SIZE), -EAGAIN);
	a->f_flags |= O_NONBLOCK;
	KUNIT_EXPECT_EQ(test, do_read(a, buf, PAGE_SIZE), HDR + 16);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 1);
	KUNIT_EXPECT_EQ(test, poll_mask(a), MASK_OUT);
	KUNIT_EXPECT_EQ(test, do_read(a, buf, PAGE_SIZE), -EAGAIN);
}

static void hvpipe_test_poll(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf(test, PAGE_SIZE);

	KUNIT_EXPECT_EQ(test, poll_mask(file), MASK_OUT);
	fw_send(SRC_A, 16);
	pump(dev);
	KUNIT_EXPECT_EQ(test, poll_mask(file), MASK_OUT | MASK_IN);
	fw_event(SRC_A, HVPIPE_LOST_CONNECTION);
	pump(dev);
	KUNIT_EXPECT_EQ(test, poll_mask(file), MASK_OUT | MASK_IN | MASK_HUP);
	KUNIT_EXPECT_EQ(test, do_read(file, buf, PAGE_SIZE), HDR + 16);
	KUNIT_EXPECT_EQ(test, poll_mask(file), MASK_OUT | MASK_IN | MASK_HUP);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "hup"), 1);
	/* Reading the notice ends the hang-up, so a poll() loop cannot spin. */
	KUNIT_EXPECT_EQ(test, do_read(file, buf, PAGE_SIZE), HDR);
	KUNIT_EXPECT_EQ(test, poll_mask(file), MASK_OUT);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "hup"), 0);
	/* A new loss sets it again; neither a send nor a message clears it. */
	fw_event(SRC_A, HVPIPE_LOST_CONNECTION);
	pump(dev);
	KUNIT_EXPECT_EQ(test, poll_mask(file), MASK_OUT | MASK_IN | MASK_HUP);
	KUNIT_EXPECT_EQ(test, do_write(file, buf, 49), 49);
	fw_send(SRC_A, 16);
	pump(dev);
	KUNIT_EXPECT_EQ(test, poll_mask(file), MASK_OUT | MASK_IN | MASK_HUP);
	KUNIT_EXPECT_EQ(test, do_read(file, buf, PAGE_SIZE), HDR);
	KUNIT_EXPECT_EQ(test, poll_mask(file), MASK_OUT | MASK_IN);
}

/* A lost-connection notice comes after the messages queued before it. */
static void hvpipe_test_lost_order(struct kunit *test)
{
	struct log_spec both = {
		RTAS_TYPE_HVPIPE, .srcid = SRC_A,
		.evtype = HVPIPE_MSG_AVAILABLE | HVPIPE_LOST_CONNECTION,
	};
	struct hvpipe_dev *dev = new_dev(test, 8);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf(test, PAGE_SIZE);
	ssize_t len;

	fw_send(SRC_A, 16);
	pump(dev);
	fw_next_log(&both);
	fw_send(SRC_A, 16);
	pump(dev);
	KUNIT_EXPECT_EQ(test, read_flags(test, file, buf, &len),
			HVPIPE_MSG_AVAILABLE);
	KUNIT_EXPECT_EQ(test, len, HDR + 16);
	KUNIT_EXPECT_EQ(test, read_flags(test, file, buf, &len),
			HVPIPE_MSG_AVAILABLE);
	KUNIT_EXPECT_EQ(test, read_flags(test, file, buf, &len),
			HVPIPE_LOST_CONNECTION);
	KUNIT_EXPECT_EQ(test, len, HDR);

	/* Unread notices merge into one, after the newest message. */
	fw_event(SRC_A, HVPIPE_LOST_CONNECTION);
	fw_send(SRC_A, 16);
	pump(dev);
	fw_event(SRC_A, HVPIPE_LOST_CONNECTION);
	pump(dev);
	KUNIT_EXPECT_EQ(test, read_flags(test, file, buf, &len),
			HVPIPE_MSG_AVAILABLE);
	KUNIT_EXPECT_EQ(test, read_flags(test, file, buf, &len),
			HVPIPE_LOST_CONNECTION);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "lost"), 3);
	file->f_flags |= O_NONBLOCK;
	KUNIT_EXPECT_EQ(test, do_read(file, buf, PAGE_SIZE), -EAGAIN);
}

/* CREATE_HANDLE. */

static void hvpipe_test_duplicate(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);

	KUNIT_EXPECT_PTR_EQ(test, hvpipe_source_file(dev, SRC_A),
			    ERR_PTR(-EALREADY));
	new_file(test, dev, SRC_B);
	kunit_release_action(test, file_close, file);
	new_file(test, dev, SRC_A);
}

struct racer {
	struct hvpipe_dev *dev;
	struct completion *go;
	struct file *file;
	struct completion done;
};

static int racer_fn(void *data)
{
	struct racer *r = data;

	wait_for_completion(r->go);
	r->file = hvpipe_source_file(r->dev, SRC_A);
	complete(&r->done);
	return 0;
}

/* Of racing CREATE_HANDLEs exactly one wins, every round. */
static void hvpipe_test_concurrent_create(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct racer r[4];
	struct task_struct *task;
	DECLARE_COMPLETION_ONSTACK(go);
	int round, i, winners;

	for (round = 0; round < 50; round++) {
		reinit_completion(&go);
		for (i = 0; i < ARRAY_SIZE(r); i++) {
			r[i] = (struct racer) { .dev = dev, .go = &go };
			init_completion(&r[i].done);
			task = kthread_run(racer_fn, &r[i], "hvpipe-race%d", i);
			KUNIT_ASSERT_NOT_ERR_OR_NULL(test, task);
		}
		complete_all(&go);
		for (i = 0; i < ARRAY_SIZE(r); i++)
			wait_for_completion(&r[i].done);
		/* Close only once all have tried, or a late one may win. */
		winners = 0;
		for (i = 0; i < ARRAY_SIZE(r); i++) {
			if (!IS_ERR(r[i].file)) {
				winners++;
				file_close(r[i].file);
			} else {
				KUNIT_EXPECT_EQ(test, PTR_ERR(r[i].file),
						-EALREADY);
			}
		}
		KUNIT_ASSERT_EQ(test, winners, 1);
	}
	KUNIT_EXPECT_EQ(test, stat(test, dev, "open_sources"), 0);
}

struct ioctl_case {
	const char *desc;
	unsigned int cmd;
	u32 srcid;
	bool bad_ptr;
	long ret;
};

static const struct ioctl_case ioctl_cases[] = {
	{ "source type 0x03 is EINVAL", PAPR_HVPIPE_IOC_CREATE_HANDLE,
	  0x03000001, false, -EINVAL },
	{ "source type 0x00 is EINVAL", PAPR_HVPIPE_IOC_CREATE_HANDLE,
	  0x00000001, false, -EINVAL },
	{ "reserved byte set is EINVAL", PAPR_HVPIPE_IOC_CREATE_HANDLE,
	  0x02010001, false, -EINVAL },
	{ "bad pointer is EFAULT", PAPR_HVPIPE_IOC_CREATE_HANDLE,
	  SRC_A, true, -EFAULT },
	{ "unknown command is ENOTTY before the argument is read",
	  _IOW(0xb2, 10, __u32), SRC_A, true, -ENOIOCTLCMD },
	{ "_IOR variant is ENOTTY", _IOR(0xb2, 9, __u32), SRC_A, true,
	  -ENOIOCTLCMD },
};

KUNIT_ARRAY_PARAM_DESC(ioctl, ioctl_cases, desc);

static void hvpipe_test_ioctl(struct kunit *test)
{
	const struct ioctl_case *c = test->param_value;
	struct hvpipe_dev *dev = new_dev(test, 4);
	char __user *buf = user_buf(test, PAGE_SIZE);
	unsigned long arg;

	KUNIT_ASSERT_EQ(test, put_user(c->srcid, (u32 __user *)buf), 0);
	arg = (unsigned long)(c->bad_ptr ? (char __user *)16 : buf);
	KUNIT_EXPECT_EQ(test, hvpipe_ioctl(dev, c->cmd, arg), c->ret);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "open_sources"), 0);
}

/* The fd CREATE_HANDLE returns: read-write, close-on-exec, the source's. */
static void hvpipe_test_create_handle(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	char __user *buf = user_buf(test, PAGE_SIZE);
	struct file *file;
	long fd;

	KUNIT_ASSERT_EQ(test, put_user(SRC_A, (u32 __user *)buf), 0);
	fd = hvpipe_ioctl(dev, PAPR_HVPIPE_IOC_CREATE_HANDLE, (unsigned long)buf);
	KUNIT_ASSERT_GE(test, fd, 0);

	file = fget(fd);
	KUNIT_ASSERT_NOT_NULL(test, file);
	KUNIT_EXPECT_TRUE(test, file->f_mode & FMODE_READ);
	KUNIT_EXPECT_TRUE(test, file->f_mode & FMODE_WRITE);
	KUNIT_EXPECT_EQ(test, file->f_flags & O_ACCMODE, O_RDWR);
	rcu_read_lock();
	KUNIT_EXPECT_TRUE(test, close_on_exec(fd, current->files));
	rcu_read_unlock();
	KUNIT_EXPECT_EQ(test, stat(test, dev, "open_sources"), 1);
	KUNIT_EXPECT_EQ(test, src_stat(test, dev, SRC_A, "queued"), 0);
	/* It is the source's: what it writes goes there. */
	KUNIT_EXPECT_EQ(test, do_write(file, buf, 49), 49);
	KUNIT_EXPECT_EQ(test, f->send_srcid, SRC_A);
	KUNIT_EXPECT_EQ(test, hvpipe_ioctl(dev, PAPR_HVPIPE_IOC_CREATE_HANDLE,
					   (unsigned long)buf),
			-EALREADY);
	fput(file);

	KUNIT_EXPECT_EQ(test, close_fd(fd), 0);
	flush_delayed_fput();
	KUNIT_EXPECT_EQ(test, stat(test, dev, "open_sources"), 0);
}

static void hvpipe_test_abi(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, sizeof(struct papr_hvpipe_hdr), 48);
	KUNIT_EXPECT_EQ(test, offsetof(struct papr_hvpipe_hdr, flags), 4);
	KUNIT_EXPECT_EQ(test, offsetof(struct papr_hvpipe_hdr, reserved2), 8);
	KUNIT_EXPECT_EQ(test, PAPR_HVPIPE_IOC_CREATE_HANDLE, 0x8004B209);
	KUNIT_EXPECT_EQ(test, HVPIPE_MSG_AVAILABLE, 1);
	KUNIT_EXPECT_EQ(test, HVPIPE_LOST_CONNECTION, 2);
}

/* Partition migration. */

static void hvpipe_test_migration(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *a = new_file(test, dev, SRC_A);
	struct file *b = new_file(test, dev, SRC_B);
	char __user *buf = user_buf(test, PAGE_SIZE);
	ssize_t len;

	KUNIT_EXPECT_TRUE(test, f->enabled);
	hvpipe_migrate(dev, HVPIPE_SUSPEND);
	KUNIT_EXPECT_FALSE(test, f->enabled);
	KUNIT_EXPECT_EQ(test, poll_mask(a), 0);

	/* No send and no receive while suspended. */
	a->f_flags |= O_NONBLOCK;
	KUNIT_EXPECT_EQ(test, do_write(a, buf, 100), -EAGAIN);
	KUNIT_EXPECT_EQ(test, f->send_calls, 0);
	fw_send(SRC_A, 16);
	pump(dev);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 0);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 1);

	/* Failed migration: enabled again, pending payload received. */
	hvpipe_migrate(dev, HVPIPE_RESUME);
	KUNIT_EXPECT_TRUE(test, f->enabled);
	hvpipe_rx_run(dev);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 1);
	KUNIT_EXPECT_EQ(test, read_flags(test, a, buf, &len),
			HVPIPE_MSG_AVAILABLE);
	KUNIT_EXPECT_EQ(test, do_read(a, buf, PAGE_SIZE), -EAGAIN);
	KUNIT_EXPECT_EQ(test, do_write(a, buf, 100), 100);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "migrations"), 0);

	/* Moved: every open fd is told its source may be gone. */
	hvpipe_migrate(dev, HVPIPE_SUSPEND);
	hvpipe_migrate(dev, HVPIPE_MIGRATED);
	KUNIT_EXPECT_TRUE(test, f->enabled);
	KUNIT_EXPECT_EQ(test, f->enable_calls, 5);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "migrations"), 1);
	KUNIT_EXPECT_TRUE(test, poll_mask(a) & MASK_HUP);
	KUNIT_EXPECT_TRUE(test, poll_mask(b) & MASK_HUP);
	KUNIT_EXPECT_EQ(test, read_flags(test, b, buf, &len),
			HVPIPE_LOST_CONNECTION);
	KUNIT_EXPECT_FALSE(test, poll_mask(b) & MASK_HUP);
	/* A write started after the migration goes out. */
	KUNIT_EXPECT_EQ(test, do_write(a, buf, 100), 100);
}

struct migration_case {
	const char *desc;
	enum hvpipe_migrate_action end;
	ssize_t ret;
	int sends;
};

static const struct migration_case migration_cases[] = {
	{ "partition moved: EPIPE, nothing sent", HVPIPE_MIGRATED,
	  -EPIPE, 0 },
	{ "migration failed: sent once resumed", HVPIPE_RESUME,
	  100, 1 },
};

KUNIT_ARRAY_PARAM_DESC(migration_write, migration_cases, desc);

/*
 * A write() blocked across a migration: if the partition moved, its source
 * ID may name another source on the destination, so it must not be sent.
 */
static void hvpipe_test_migration_write(struct kunit *test)
{
	const struct migration_case *c = test->param_value;
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf(test, PAGE_SIZE);
	struct worker w;

	hvpipe_migrate(dev, HVPIPE_SUSPEND);
	worker_start(test, &w, file, current->mm, buf, 100, true);
	msleep(50);
	KUNIT_EXPECT_EQ(test, w.ret, 1);	/* Blocked. */
	hvpipe_migrate(dev, c->end);
	KUNIT_EXPECT_TRUE(test, worker_wait(&w, 2000));
	KUNIT_EXPECT_EQ(test, w.ret, c->ret);
	KUNIT_EXPECT_EQ(test, f->send_calls, c->sends);
}

/* Instance creation and its unwinding. */

static void irq_free_action(void *data)
{
	irq_free_desc((unsigned long)data);
}

static unsigned int new_irq(struct kunit *test, bool requestable)
{
	int virq = irq_alloc_desc(NUMA_NO_NODE);

	KUNIT_ASSERT_GT(test, virq, 0);
	KUNIT_ASSERT_EQ(test, 0,
			kunit_add_action_or_reset(test, irq_free_action,
						  (void *)(unsigned long)virq));
	irq_set_chip_and_handler(virq, &dummy_irq_chip, handle_simple_irq);
	if (requestable)
		irq_clear_status_flags(virq, IRQ_NOREQUEST);
	return virq;
}

struct init_case {
	const char *desc;
	bool second_requestable;
	int enable_rc;
	int ret;
	int enable_calls;
};

static const struct init_case init_cases[] = {
	{ "success", true, 0, 0, 1 },
	{ "enabling fails: interrupts freed", true, -EIO, -EIO, 1 },
	{ "second interrupt fails: first freed, never enabled", false, 0,
	  -EINVAL, 0 },
};

KUNIT_ARRAY_PARAM_DESC(init, init_cases, desc);

static void hvpipe_test_init_unwind(struct kunit *test)
{
	const struct init_case *c = test->param_value;
	struct fake_fw *f = fake();
	struct hvpipe_config cfg = { .nr_irqs = 2 };
	struct hvpipe_dev *dev;

	cfg.irqs[0] = new_irq(test, true);
	cfg.irqs[1] = new_irq(test, c->second_requestable);
	f->enable_rc = c->enable_rc;
	dev = hvpipe_dev_create(&cfg);
	KUNIT_EXPECT_EQ(test, f->enable_calls, c->enable_calls);
	if (c->ret) {
		KUNIT_EXPECT_PTR_EQ(test, dev, ERR_PTR(c->ret));
		KUNIT_EXPECT_FALSE(test, irq_has_action(cfg.irqs[0]));
		KUNIT_EXPECT_FALSE(test, irq_has_action(cfg.irqs[1]));
		return;
	}

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, dev);
	KUNIT_EXPECT_TRUE(test, f->enabled);
	KUNIT_EXPECT_TRUE(test, irq_has_action(cfg.irqs[0]));
	KUNIT_EXPECT_TRUE(test, irq_has_action(cfg.irqs[1]));

	/* The real interrupt path reaches the handler. */
	fw_event(SRC_A, HVPIPE_MSG_AVAILABLE);
	KUNIT_EXPECT_EQ(test, generic_handle_irq_safe(cfg.irqs[1]), 0);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 1);

	hvpipe_dev_destroy(dev);
	KUNIT_EXPECT_FALSE(test, f->enabled);
	KUNIT_EXPECT_FALSE(test, irq_has_action(cfg.irqs[0]));
	KUNIT_EXPECT_FALSE(test, irq_has_action(cfg.irqs[1]));
}

/*
 * misc_register() failing (here: the name is taken by a first instance)
 * unwinds the whole instance: interrupt freed, hvpipe disabled again.
 */
static void hvpipe_test_probe_unwind(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_config cfg = {};
	struct hvpipe_dev *first, *dev;

	first = hvpipe_dev_probe(&cfg);
	/*
	 * Booted with the hypervisor pipe (the lab guest running the suite),
	 * the firmware instance holds /dev/papr-hvpipe already.
	 */
	if (PTR_ERR_OR_ZERO(first) == -EEXIST)
		kunit_skip(test, "/dev/papr-hvpipe belongs to the firmware instance");
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, first);
	KUNIT_ASSERT_EQ(test, 0,
			kunit_add_action_or_reset(test, dev_remove_action, first));

	cfg.irqs[0] = new_irq(test, true);
	cfg.nr_irqs = 1;
	dev = hvpipe_dev_probe(&cfg);
	KUNIT_EXPECT_TRUE(test, IS_ERR(dev));
	KUNIT_EXPECT_EQ(test, f->enable_calls, 3);
	KUNIT_EXPECT_FALSE(test, f->enabled);
	KUNIT_EXPECT_FALSE(test, irq_has_action(cfg.irqs[0]));
}

struct hardirq_ctx {
	struct irq_work work;
	struct hvpipe_dev *dev;
	bool in_hardirq;
	bool done;
};

static void hardirq_fn(struct irq_work *work)
{
	struct hardirq_ctx *c = container_of(work, struct hardirq_ctx, work);

	c->in_hardirq = in_hardirq();
	hvpipe_handle_event(c->dev, 0);
	WRITE_ONCE(c->done, true);
}

/*
 * The event lock is taken in hard interrupt context, then by every process
 * context path: with lockdep, any of them taking it with interrupts on
 * would turn debug_locks off. Without lockdep this shows nothing.
 */
static void hvpipe_test_hardirq(struct kunit *test)
{
	struct hvpipe_dev *dev;
	struct file *file;
	char __user *buf;
	struct hardirq_ctx c = {};

	if (!IS_ENABLED(CONFIG_PROVE_LOCKING))
		kunit_skip(test, "needs CONFIG_PROVE_LOCKING");
	/* Lockdep must still be on, or the test below proves nothing. */
	KUNIT_ASSERT_TRUE(test, debug_locks);
	dev = new_dev(test, 4);
	file = new_file(test, dev, SRC_A);
	buf = user_buf(test, PAGE_SIZE);
	c.dev = dev;
	fw_send(SRC_A, 16);
	init_irq_work(&c.work, hardirq_fn);
	preempt_disable();
	irq_work_queue(&c.work);
	while (!READ_ONCE(c.done))
		cpu_relax();
	preempt_enable();
	irq_work_sync(&c.work);
	KUNIT_EXPECT_TRUE(test, c.in_hardirq);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "pending_events"), 1);

	hvpipe_rx_run(dev);
	KUNIT_EXPECT_EQ(test, do_read(file, buf, PAGE_SIZE), HDR + 16);
	stat(test, dev, "events_interrupts");
	KUNIT_EXPECT_TRUE(test, debug_locks);
}

/* debugfs formats, as the selftests parse them. */
static void hvpipe_test_debugfs(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct seq_file m = {
		.buf = f->text, .size = sizeof(f->text), .private = dev,
	};

	new_file(test, dev, SRC_A);
	fw_send(SRC_A, 16);
	fw_send(SRC_NONE, 16);
	pump(dev);

	KUNIT_EXPECT_EQ(test, stat(test, dev, "open_sources"), 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "received"), 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "dropped_no_handle"), 1);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "events_payload"), 2);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "events_spurious"), 0);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "recv_fw_unexpected"), 0);

	KUNIT_EXPECT_EQ(test, hvpipe_sources_show(&m, NULL), 0);
	f->text[m.count] = '\0';
	KUNIT_EXPECT_STREQ(test, f->text,
			   "0x02000001 queued=1 depth=4 hwm=1 sent=0 received=1 lost=0 hup=0\n");
}

/*
 * Measurements for the lab, not pass/fail: event dispatch cost with one
 * and with 4096 open sources, and memory per open source.
 */
#define BENCH_SOURCES	4096
#define BENCH_EVENTS	1000

static u64 bench_dispatch(struct kunit *test, struct hvpipe_dev *dev,
			  struct file *file, u32 srcid, char __user *buf)
{
	u64 start, ns;
	int i;

	start = ktime_get_ns();
	for (i = 0; i < BENCH_EVENTS; i++) {
		fw_send(srcid, 16);
		run_irqs(dev);
		hvpipe_rx_run(dev);
	}
	ns = ktime_get_ns() - start;

	for (i = 0; i < BENCH_EVENTS; i++)
		KUNIT_ASSERT_EQ(test, do_read(file, buf, PAGE_SIZE), HDR + 16);
	return div_u64(ns, BENCH_EVENTS);
}

static void hvpipe_test_measure(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, HVPIPE_MAX_DEPTH);
	char __user *buf = user_buf(test, PAGE_SIZE);
	struct file **files, *file;
	u32 i, failed = 0, mid = BENCH_SOURCES / 2;
	size_t xa_bytes;
	u64 one, many;

	/*
	 * No KUnit action per source: static stub lookups walk the test's
	 * resources, which would then grow with the number of sources.
	 */
	files = kunit_kcalloc(test, BENCH_SOURCES, sizeof(*files), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, files);
	file = new_file(test, dev, 0x02000000 | mid);
	bench_dispatch(test, dev, file, 0x02000000 | mid, buf);	/* warm up */
	one = bench_dispatch(test, dev, file, 0x02000000 | mid, buf);

	for (i = 0; i < BENCH_SOURCES; i++)
		if (i != mid)
			files[i] = hvpipe_source_file(dev, 0x02000000 | i);
	many = bench_dispatch(test, dev, file, 0x02000000 | mid, buf);

	/* A full radix tree of 4096 dense IDs: 64 leaves and a root. */
	xa_bytes = DIV_ROUND_UP((BENCH_SOURCES / XA_CHUNK_SIZE + 1) *
				sizeof(struct xa_node), BENCH_SOURCES);
	kunit_info(test, "memory per open source: %zu bytes (slab %zu) + %zu bytes xarray (target <= 512)\n",
		   ksize(file->private_data) + xa_bytes,
		   ksize(file->private_data), xa_bytes);
	kunit_info(test, "dispatch: %llu ns/event with 1 source, %llu ns/event with %d sources, ratio %llu.%02llu (target <= 1.20)\n",
		   one, many, BENCH_SOURCES, div64_u64(many, one),
		   div64_u64(many * 100, one) % 100);

	for (i = 0; i < BENCH_SOURCES; i++) {
		if (i == mid)
			continue;
		if (IS_ERR(files[i]))
			failed++;
		else
			fput(files[i]);
	}
	flush_delayed_fput();
	KUNIT_EXPECT_EQ(test, failed, 0);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "received"), 3 * BENCH_EVENTS);
	KUNIT_EXPECT_EQ(test, stat(test, dev, "open_sources"), 1);
}

static struct kunit_case hvpipe_test_cases[] = {
	KUNIT_CASE(hvpipe_test_abi),
	KUNIT_CASE_PARAM(hvpipe_test_send_status, send_status_gen_params),
	KUNIT_CASE_PARAM(hvpipe_test_recv_status, recv_status_gen_params),
	KUNIT_CASE_PARAM(hvpipe_test_recv_retry, recv_retry_gen_params),
	KUNIT_CASE_PARAM(hvpipe_test_recv_oversize, oversize_gen_params),
	KUNIT_CASE(hvpipe_test_recv_bytes),
	KUNIT_CASE(hvpipe_test_send_layout),
	KUNIT_CASE(hvpipe_test_send_not_resident),
	KUNIT_CASE_PARAM(hvpipe_test_event, event_gen_params),
	KUNIT_CASE(hvpipe_test_event_none),
	KUNIT_CASE_PARAM(hvpipe_test_malformed_receive, malformed_gen_params),
	KUNIT_CASE(hvpipe_test_malformed_overflow),
	KUNIT_CASE(hvpipe_test_event_overflow),
	KUNIT_CASE(hvpipe_test_event_overflow_payload),
	KUNIT_CASE(hvpipe_test_event_during_receive),
	KUNIT_CASE(hvpipe_test_unknown_source),
	KUNIT_CASE(hvpipe_test_unknown_source_index),
	KUNIT_CASE(hvpipe_test_spurious),
	KUNIT_CASE(hvpipe_test_source_mismatch),
	KUNIT_CASE(hvpipe_test_backpressure),
	KUNIT_CASE(hvpipe_test_backpressure_stale),
	KUNIT_CASE(hvpipe_test_close_unblocks),
	KUNIT_CASE(hvpipe_test_close_queued),
	KUNIT_CASE_PARAM(hvpipe_test_write_size, write_size_gen_params),
	KUNIT_CASE(hvpipe_test_write_fault),
	KUNIT_CASE(hvpipe_test_read_sizes),
	KUNIT_CASE(hvpipe_test_read_partial_fault),
	KUNIT_CASE(hvpipe_test_read_header),
	KUNIT_CASE(hvpipe_test_read_nonblock),
	KUNIT_CASE(hvpipe_test_read_blocks),
	KUNIT_CASE(hvpipe_test_read_fault_wakes),
	KUNIT_CASE(hvpipe_test_direct_read),
	KUNIT_CASE(hvpipe_test_direct_read_largest),
	KUNIT_CASE(hvpipe_test_direct_routing),
	KUNIT_CASE(hvpipe_test_direct_order),
	KUNIT_CASE(hvpipe_test_direct_next),
	KUNIT_CASE(hvpipe_test_direct_offer_kept),
	KUNIT_CASE(hvpipe_test_direct_next_then_lost),
	KUNIT_CASE(hvpipe_test_poll_offered),
	KUNIT_CASE(hvpipe_test_read_while_busy),
	KUNIT_CASE(hvpipe_test_poll),
	KUNIT_CASE(hvpipe_test_lost_order),
	KUNIT_CASE(hvpipe_test_duplicate),
	KUNIT_CASE(hvpipe_test_concurrent_create),
	KUNIT_CASE_PARAM(hvpipe_test_ioctl, ioctl_gen_params),
	KUNIT_CASE(hvpipe_test_create_handle),
	KUNIT_CASE(hvpipe_test_migration),
	KUNIT_CASE_PARAM(hvpipe_test_migration_write, migration_write_gen_params),
	KUNIT_CASE_PARAM(hvpipe_test_init_unwind, init_gen_params),
	KUNIT_CASE(hvpipe_test_probe_unwind),
	KUNIT_CASE(hvpipe_test_hardirq),
	KUNIT_CASE(hvpipe_test_debugfs),
	KUNIT_CASE_SLOW(hvpipe_test_measure),
	{}
};

static struct kunit_suite hvpipe_test_suite = {
	.name = "papr_hvpipe",
	.init = hvpipe_test_init,
	.test_cases = hvpipe_test_cases,
};

kunit_test_suite(hvpipe_test_suite);

MODULE_DESCRIPTION("KUnit tests for the PAPR hvpipe driver");
MODULE_LICENSE("GPL");
