// SPDX-License-Identifier: GPL-2.0-only
/*
 * KUnit suite for the PAPR hvpipe driver.
 *
 * Firmware is faked with static stubs at the driver's one-call firmware
 * wrappers, and the receive path is kicked by hand: stubs only catch calls
 * from the test's own thread, so interrupt and work functions are called
 * here directly. Each case gets its own driver instance, without the
 * device tree.
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
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/mman.h>
#include <linux/poll.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/unaligned.h>
#include <asm/rtas.h>

#include "papr-hvpipe.h"

MODULE_IMPORT_NS(EXPORTED_FOR_KUNIT_TESTING);

#define SRC_A		0x02000001
#define SRC_B		0x02000002
#define SRC_NONE	0x02000009
#define MAX_SCRIPT	4

/**
 * struct fake_fw - What the fake firmware returns and what it saw.
 * @send_rc:      Statuses of successive ibm,send-hvpipe-msg calls; the
 *                last repeats.
 * @send_nrc:     Entries in @send_rc; 0 means always success.
 * @send_calls:   ibm,send-hvpipe-msg calls.
 * @send_srcid:   Source ID of the last send.
 * @send_phys:    Buffer list address of the last send.
 * @send_area:    Copy of the work area at the last send.
 * @recv_rc:      As @send_rc, for ibm,receive-hvpipe-msg.
 * @recv_nrc:     Entries in @recv_rc.
 * @recv_calls:   ibm,receive-hvpipe-msg calls.
 * @recv_srcid:   Source ID receive returns.
 * @recv_len:     Payload bytes receive writes.
 * @recv_bytes:   Byte count receive reports, if not 0 (else @recv_len).
 * @recv_size:    Buffer size the driver passed.
 * @recv_seq:     Incremented and written as the first payload byte.
 * @ce_rc:        check-exception status.
 * @ce_calls:     check-exception calls.
 * @log:          Error log check-exception returns.
 * @enable_rc:    Status of system parameter 64 updates.
 * @enable_calls: System parameter 64 updates.
 * @enabled:      Last value written.
 * @kicks:        Receive path kicks.
 * @kick_delay:   Delay of the last kick.
 * @recv_dev:     If set, the first receive takes an event interrupt for
 *                @recv_event on this instance, as if firmware raised the
 *                next event before the call returned.
 * @recv_event:   Source of that event (a payload).
 */
struct fake_fw {
	s32 send_rc[MAX_SCRIPT];
	int send_nrc;
	int send_calls;
	u32 send_srcid;
	phys_addr_t send_phys;
	u8 send_area[HVPIPE_AREA_SIZE];
	s32 recv_rc[MAX_SCRIPT];
	int recv_nrc;
	int recv_calls;
	u32 recv_srcid;
	u32 recv_len;
	u32 recv_bytes;
	u32 recv_size;
	u8 recv_seq;
	s32 ce_rc;
	int ce_calls;
	u8 log[RTAS_ERROR_LOG_MAX];
	int enable_rc;
	int enable_calls;
	bool enabled;
	int kicks;
	unsigned long kick_delay;
	struct hvpipe_dev *recv_dev;
	u32 recv_event;
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

static void set_event(u32 srcid, u8 evtype);

static s32 fake_send(u32 srcid, phys_addr_t list)
{
	struct fake_fw *f = fake();

	/* The driver holds the function's lock, as sys_rtas() would. */
	KUNIT_EXPECT_TRUE(kunit_get_current_test(),
			  mutex_is_locked(&rtas_ibm_send_hvpipe_msg_lock));
	f->send_calls++;
	f->send_srcid = srcid;
	f->send_phys = list;
	memcpy(f->send_area, __va(list), HVPIPE_AREA_SIZE);
	return script(f->send_rc, f->send_nrc, f->send_calls);
}

static s32 fake_receive(phys_addr_t buf, u32 size, u32 *srcid, u32 *bytes)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = f->recv_dev;
	s32 rc;

	KUNIT_EXPECT_TRUE(kunit_get_current_test(),
			  mutex_is_locked(&rtas_ibm_receive_hvpipe_msg_lock));
	if (dev) {
		f->recv_dev = NULL;
		set_event(f->recv_event, HVPIPE_MSG_AVAILABLE);
		hvpipe_handle_event(dev, 0);
	}
	f->recv_calls++;
	f->recv_size = size;
	rc = script(f->recv_rc, f->recv_nrc, f->recv_calls);
	*srcid = f->recv_srcid;
	*bytes = f->recv_bytes ? f->recv_bytes : f->recv_len;
	if (rc == 0) {
		memset(__va(buf), 0x5a, f->recv_len);
		if (f->recv_len)
			*(u8 *)__va(buf) = ++f->recv_seq;
	}
	return rc;
}

static s32 fake_check_exception(unsigned long hwirq, void *log, size_t len)
{
	struct fake_fw *f = fake();

	f->ce_calls++;
	memcpy(log, f->log, min(len, sizeof(f->log)));
	return f->ce_rc;
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

/* Build an hvpipe error log; returns the offset of the "PE" section. */
struct log_spec {
	u8 type;		/* Error log type. */
	bool filler;		/* A 48-byte "PH" section before "PE". */
	bool no_pe;		/* Leave the "PE" section out. */
	u16 pe_len;		/* "PE" section length, 0 for 13. */
	u32 ext_extra;		/* Added to the extended log length. */
	u32 srcid;
	u8 evtype;
};

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
		put_unaligned_be16(48, p + 2);
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

static void set_event(u32 srcid, u8 evtype)
{
	struct log_spec s = {
		.type = RTAS_TYPE_HVPIPE, .srcid = srcid, .evtype = evtype,
	};

	build_log(fake()->log, &s);
}

static int hvpipe_test_init(struct kunit *test)
{
	struct fake_fw *f;

	f = kunit_kzalloc(test, sizeof(*f), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, f);
	f->recv_len = 16;
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
KUNIT_DEFINE_ACTION_WRAPPER(source_close_action, hvpipe_source_close,
			    struct hvpipe_source *);

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

static struct hvpipe_source *new_src(struct kunit *test, struct hvpipe_dev *dev,
				     u32 srcid)
{
	struct hvpipe_source *src = hvpipe_source_open(dev, srcid);

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, src);
	KUNIT_ASSERT_EQ(test, 0,
			kunit_add_action_or_reset(test, source_close_action, src));
	hvpipe_source_publish(src);
	return src;
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
	struct file *file = hvpipe_open_handle(dev, srcid);

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

/* Take one event interrupt and run the receive path. */
static void deliver(struct hvpipe_dev *dev, u32 evsrc, u8 evtype, u32 srcid)
{
	set_event(evsrc, evtype);
	fake()->recv_srcid = srcid;
	hvpipe_handle_event(dev, 0);
	hvpipe_rx_work(&dev->rx_work.work);
}

static unsigned int ring_count(struct hvpipe_dev *dev)
{
	unsigned long flags;
	unsigned int n;

	spin_lock_irqsave(&dev->event_lock, flags);
	n = dev->ring_count;
	spin_unlock_irqrestore(&dev->event_lock, flags);
	return n;
}

static ssize_t do_read(struct file *file, char __user *buf, size_t count)
{
	return file->f_op->read(file, buf, count, NULL);
}

static u32 read_flags(struct kunit *test, struct file *file, char __user *buf,
		      ssize_t *len);

static ssize_t do_write(struct file *file, const char __user *buf, size_t count)
{
	return file->f_op->write(file, buf, count, NULL);
}

/* Status-to-errno tables. */

struct status_case {
	const char *desc;
	s32 rc[MAX_SCRIPT];
	int nrc;
	int ret;
	int calls;
};

static const struct status_case send_cases[] = {
	{ "success", { 0 }, 1, 0, 1 },
	{ "-1 hardware error is EIO", { -1 }, 1, -EIO, 1 },
	{ "-2 busy is retried", { -2, -2, 0 }, 3, 0, 3 },
	{ "-3 invalid parameter is EINVAL", { -3 }, 1, -EINVAL, 1 },
	{ "-4 pipe closed is EPIPE", { -4 }, 1, -EPIPE, 1 },
	{ "-5 not supported is EOPNOTSUPP", { -5 }, 1, -EOPNOTSUPP, 1 },
	{ "9900 extended delay is retried", { 9900, 0 }, 2, 0, 2 },
	{ "9901 extended delay is retried", { 9901, 0 }, 2, 0, 2 },
	{ "9902 extended delay is retried", { 9902, 0 }, 2, 0, 2 },
	{ "9903 extended delay is retried", { 9903, 0 }, 2, 0, 2 },
	{ "9904 extended delay is retried", { 9904, 0 }, 2, 0, 2 },
	{ "9905 extended delay is retried", { 9905, 0 }, 2, 0, 2 },
	{ "busy then error keeps the error", { -2, -4 }, 2, -EPIPE, 2 },
	{ "unexpected -9999 is EIO", { -9999 }, 1, -EIO, 1 },
	{ "unexpected 1 is EIO", { 1 }, 1, -EIO, 1 },
};

KUNIT_ARRAY_PARAM_DESC(send_status, send_cases, desc);

static void hvpipe_test_send_status(struct kunit *test)
{
	const struct status_case *c = test->param_value;
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct hvpipe_source *src = new_src(test, dev, SRC_A);
	static const u8 payload[8] = "payload";

	memcpy(f->send_rc, c->rc, sizeof(c->rc));
	f->send_nrc = c->nrc;
	KUNIT_EXPECT_EQ(test, hvpipe_send(src, payload, sizeof(payload)), c->ret);
	KUNIT_EXPECT_EQ(test, f->send_calls, c->calls);
	KUNIT_EXPECT_EQ(test, f->send_srcid, SRC_A);
	KUNIT_EXPECT_EQ(test, dev->stats.sent, c->ret ? 0 : 1);
	KUNIT_EXPECT_EQ(test, src->sent, c->ret ? 0 : 1);
}

static const struct status_case recv_cases[] = {
	{ "success", { 0 }, 1, 0, 1 },
	{ "-1 hardware error is EIO", { -1 }, 1, -EIO, 1 },
	{ "-2 busy is retried", { -2, 0 }, 2, 0, 2 },
	{ "-3 invalid parameter is EINVAL", { -3 }, 1, -EINVAL, 1 },
	{ "-4 pipe closed is EPIPE", { -4 }, 1, -EPIPE, 1 },
	{ "-5 not supported is EOPNOTSUPP", { -5 }, 1, -EOPNOTSUPP, 1 },
	{ "9900 extended delay is retried", { 9900, 0 }, 2, 0, 2 },
	{ "9901 extended delay is retried", { 9901, 0 }, 2, 0, 2 },
	{ "9902 extended delay is retried", { 9902, 0 }, 2, 0, 2 },
	{ "9903 extended delay is retried", { 9903, 0 }, 2, 0, 2 },
	{ "9904 extended delay is retried", { 9904, 0 }, 2, 0, 2 },
	{ "9905 extended delay is retried", { 9905, 0 }, 2, 0, 2 },
	{ "unexpected -9999 is EIO", { -9999 }, 1, -EIO, 1 },
};

KUNIT_ARRAY_PARAM_DESC(recv_status, recv_cases, desc);

static void hvpipe_test_recv_status(struct kunit *test)
{
	const struct status_case *c = test->param_value;
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct hvpipe_msg *msg;
	u32 srcid;

	msg = kunit_kzalloc(test, struct_size(msg, data, HVPIPE_AREA_SIZE),
			    GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, msg);
	memcpy(f->recv_rc, c->rc, sizeof(c->rc));
	f->recv_nrc = c->nrc;
	f->recv_srcid = SRC_B;
	f->recv_len = 100;
	KUNIT_EXPECT_EQ(test, hvpipe_receive(dev, msg, SRC_A, &srcid), c->ret);
	KUNIT_EXPECT_EQ(test, f->recv_calls, c->calls);
	KUNIT_EXPECT_EQ(test, f->recv_size, HVPIPE_AREA_SIZE);
	if (!c->ret) {
		KUNIT_EXPECT_EQ(test, srcid, SRC_B);
		KUNIT_EXPECT_EQ(test, msg->len, 100);
		KUNIT_EXPECT_EQ(test, msg->data[1], 0x5a);
	}
}

/*
 * Sources send at most 4048 bytes, and a 48 + 4048-byte read() buffer is
 * promised to be enough: a larger byte count is a firmware bug. The
 * payload was ACKed by the receive, so it is dropped and counted, never
 * copied, never retried.
 */
static const u32 oversize_cases[] = {
	HVPIPE_MAX_PAYLOAD + 1, HVPIPE_AREA_SIZE - 1, HVPIPE_AREA_SIZE,
	HVPIPE_AREA_SIZE + 1,
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
	struct hvpipe_source *src = new_src(test, dev, SRC_A);

	f->recv_bytes = *bytes;
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 1);
	KUNIT_EXPECT_EQ(test, src->nmsgs, 0);
	KUNIT_EXPECT_EQ(test, dev->stats.dropped_oversize, 1);
	KUNIT_EXPECT_EQ(test, dev->stats.received, 0);
	KUNIT_EXPECT_EQ(test, dev->stats.recv_fw[HVPIPE_FW_UNEXPECTED], 0);
	KUNIT_EXPECT_EQ(test, ring_count(dev), 0);

	/* The pipe works on. */
	f->recv_bytes = 0;
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	KUNIT_EXPECT_EQ(test, src->nmsgs, 1);
}

/*
 * Receive failures, whatever the status: retried while firmware may still
 * hold the payload, so a one-shot fault does not block the pipe.
 */
struct retry_case {
	const char *desc;
	s32 rc[MAX_SCRIPT];
	int nrc;
	int calls;		/* Receives until the event is gone. */
	bool delivered;
	u64 retries;
	enum hvpipe_fw fw;	/* recv_fw_* class of the failures. */
};

static const struct retry_case retry_cases[] = {
	{ "-1 twice, then success: delivered", { -1, -1, 0 }, 3, 3, true, 2,
	  HVPIPE_FW_HW_ERROR },
	{ "unexpected 42, then success: delivered", { 42, 0 }, 2, 2, true, 1,
	  HVPIPE_FW_UNEXPECTED },
	{ "-3 once, then success: delivered", { -3, 0 }, 2, 2, true, 1,
	  HVPIPE_FW_INVALID },
	{ "-4 once, then success: delivered", { -4, 0 }, 2, 2, true, 1,
	  HVPIPE_FW_CLOSED },
	{ "-5 once, then success: delivered", { -5, 0 }, 2, 2, true, 1,
	  HVPIPE_FW_NOT_SUPPORTED },
	{ "-1 every time: dropped after 5 tries", { -1 }, 1, HVPIPE_RX_TRIES,
	  false, HVPIPE_RX_TRIES - 1, HVPIPE_FW_HW_ERROR },
	{ "-3 every time: dropped after 5 tries", { -3 }, 1, HVPIPE_RX_TRIES,
	  false, HVPIPE_RX_TRIES - 1, HVPIPE_FW_INVALID },
	{ "-4 every time: dropped after 5 tries", { -4 }, 1, HVPIPE_RX_TRIES,
	  false, HVPIPE_RX_TRIES - 1, HVPIPE_FW_CLOSED },
	{ "-5 every time: dropped after 5 tries", { -5 }, 1, HVPIPE_RX_TRIES,
	  false, HVPIPE_RX_TRIES - 1, HVPIPE_FW_NOT_SUPPORTED },
};

KUNIT_ARRAY_PARAM_DESC(recv_retry, retry_cases, desc);

static void hvpipe_test_recv_retry(struct kunit *test)
{
	const struct retry_case *c = test->param_value;
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct hvpipe_source *src = new_src(test, dev, SRC_A);
	unsigned long delay = 0;
	int i;

	memcpy(f->recv_rc, c->rc, sizeof(c->rc));
	f->recv_nrc = c->nrc;
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	for (i = 1; i < c->calls; i++) {
		/* Kept, and the receive path runs again later, each time later. */
		KUNIT_ASSERT_EQ(test, f->recv_calls, i);
		KUNIT_EXPECT_EQ(test, ring_count(dev), 1);
		KUNIT_EXPECT_GT(test, f->kick_delay, delay);
		delay = f->kick_delay;
		hvpipe_rx_work(&dev->rx_work.work);
	}
	KUNIT_EXPECT_EQ(test, f->recv_calls, c->calls);
	KUNIT_EXPECT_EQ(test, ring_count(dev), 0);
	KUNIT_EXPECT_EQ(test, src->nmsgs, c->delivered ? 1 : 0);
	KUNIT_EXPECT_EQ(test, dev->stats.dropped_rx_failed, c->delivered ? 0 : 1);
	KUNIT_EXPECT_EQ(test, dev->stats.rx_retries, c->retries);
	KUNIT_EXPECT_EQ(test, dev->stats.recv_fw[c->fw],
			c->delivered ? c->calls - 1 : c->calls);
	KUNIT_EXPECT_EQ(test, dev->stats.recv_fw[HVPIPE_FW_UNEXPECTED],
			c->fw == HVPIPE_FW_UNEXPECTED ? 1 : 0);
	KUNIT_EXPECT_EQ(test, dev->stats.misrouted, 0);
	KUNIT_EXPECT_EQ(test, dev->stats.dropped_no_handle, 0);

	/* The next event starts afresh. */
	f->recv_nrc = 0;
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	KUNIT_EXPECT_EQ(test, src->nmsgs, c->delivered ? 2 : 1);
}

/* Messages take memory for their own length, not the largest. */
static void hvpipe_test_msg_size(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct hvpipe_source *src = new_src(test, dev, SRC_A);
	struct hvpipe_msg *msg;

	f->recv_len = 16;
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	msg = list_first_entry(&src->queue, struct hvpipe_msg, node);
	KUNIT_EXPECT_EQ(test, msg->len, 16);
	KUNIT_EXPECT_LE(test, ksize(msg), 64);
	KUNIT_EXPECT_EQ(test, msg->data[0], 1);
	KUNIT_EXPECT_EQ(test, msg->data[15], 0x5a);
	/* The receive buffer is kept for the next payload. */
	KUNIT_EXPECT_NOT_NULL(test, dev->rx_msg);
	KUNIT_EXPECT_PTR_NE(test, msg, dev->rx_msg);
}

/* The exact big-endian bytes of the buffer list and the payload placement. */
static void hvpipe_test_send_layout(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct hvpipe_source *src = new_src(test, dev, SRC_A);
	static const u8 be24[8] = { 0, 0, 0, 0, 0, 0, 0, 24 };
	static const u8 be4048[8] = { 0, 0, 0, 0, 0, 0, 0x0f, 0xd0 };
	u8 *payload, addr[8];
	int i;

	payload = kunit_kmalloc(test, HVPIPE_MAX_PAYLOAD, GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, payload);
	for (i = 0; i < HVPIPE_MAX_PAYLOAD; i++)
		payload[i] = i * 7;

	KUNIT_ASSERT_EQ(test, hvpipe_send(src, payload, HVPIPE_MAX_PAYLOAD), 0);
	for (i = 0; i < 8; i++)
		addr[i] = (f->send_phys + 24) >> (56 - 8 * i);
	KUNIT_EXPECT_MEMEQ(test, f->send_area, be24, 8);
	KUNIT_EXPECT_MEMEQ(test, f->send_area + 8, addr, 8);
	KUNIT_EXPECT_MEMEQ(test, f->send_area + 16, be4048, 8);
	KUNIT_EXPECT_MEMEQ(test, f->send_area + 24, payload, HVPIPE_MAX_PAYLOAD);
	KUNIT_EXPECT_LE(test, 24 + HVPIPE_MAX_PAYLOAD, HVPIPE_AREA_SIZE);
	KUNIT_EXPECT_EQ(test, f->send_phys & 7, 0);
}

/* Event parsing. */

struct event_case {
	const char *desc;
	struct log_spec log;
	s32 ce_rc;
	int nr_events;			/* Events noted. */
	u32 types[2];			/* Their types, oldest first. */
	size_t counter;			/* offsetof() the counter bumped. */
};

#define EV(field) offsetof(struct hvpipe_event_stats, field)

static const struct event_case event_cases[] = {
	{ "payload available", { RTAS_TYPE_HVPIPE, .srcid = SRC_A, .evtype = 1 },
	  0, 1, { HVPIPE_MSG_AVAILABLE }, EV(payload) },
	{ "lost connection", { RTAS_TYPE_HVPIPE, .srcid = SRC_A, .evtype = 2 },
	  0, 1, { HVPIPE_LOST_CONNECTION }, EV(lost) },
	{ "both bits: payload, then notice",
	  { RTAS_TYPE_HVPIPE, .srcid = SRC_A, .evtype = 3 },
	  0, 2, { HVPIPE_MSG_AVAILABLE, HVPIPE_LOST_CONNECTION }, EV(payload) },
	{ "PE after another section",
	  { RTAS_TYPE_HVPIPE, .filler = true, .srcid = SRC_A, .evtype = 1 },
	  0, 1, { HVPIPE_MSG_AVAILABLE }, EV(payload) },
	{ "wrong log type", { RTAS_TYPE_HOTPLUG, .srcid = SRC_A, .evtype = 1 },
	  0, 1, { HVPIPE_EVENT_PROBE }, EV(bad_log_type) },
	{ "missing PE section",
	  { RTAS_TYPE_HVPIPE, .filler = true, .no_pe = true },
	  0, 1, { HVPIPE_EVENT_PROBE }, EV(no_section) },
	{ "short PE section",
	  { RTAS_TYPE_HVPIPE, .pe_len = 12, .srcid = SRC_A, .evtype = 1 },
	  0, 1, { HVPIPE_EVENT_PROBE }, EV(short_section) },
	{ "section overrunning the log",
	  { RTAS_TYPE_HVPIPE, .pe_len = 0xffff, .srcid = SRC_A, .evtype = 1 },
	  0, 1, { HVPIPE_EVENT_PROBE }, EV(no_section) },
	{ "extended length beyond the buffer",
	  { RTAS_TYPE_HVPIPE, .ext_extra = RTAS_ERROR_LOG_MAX, .srcid = SRC_A,
	    .evtype = 1 },
	  0, 1, { HVPIPE_EVENT_PROBE }, EV(no_section) },
	{ "unknown event type", { RTAS_TYPE_HVPIPE, .srcid = SRC_A, .evtype = 4 },
	  0, 1, { HVPIPE_EVENT_PROBE }, EV(unknown_type) },
	{ "check-exception found no event",
	  { RTAS_TYPE_HVPIPE, .srcid = SRC_A, .evtype = 1 },
	  1, 0, {}, EV(no_event) },
};

KUNIT_ARRAY_PARAM_DESC(event, event_cases, desc);

static void hvpipe_test_event(struct kunit *test)
{
	const struct event_case *c = test->param_value;
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	int i;

	build_log(f->log, &c->log);
	f->ce_rc = c->ce_rc;
	hvpipe_handle_event(dev, 0);

	KUNIT_EXPECT_EQ(test, f->ce_calls, 1);
	KUNIT_EXPECT_EQ(test, dev->event_stats.interrupts, 1);
	KUNIT_EXPECT_EQ(test, *(u64 *)((u8 *)&dev->event_stats + c->counter), 1);
	KUNIT_ASSERT_EQ(test, ring_count(dev), c->nr_events);
	KUNIT_EXPECT_EQ(test, f->kicks, c->nr_events ? 1 : 0);
	for (i = 0; i < c->nr_events; i++) {
		/* A probe uses nothing from the malformed log. */
		KUNIT_EXPECT_EQ(test, dev->ring[i].srcid,
				c->types[i] == HVPIPE_EVENT_PROBE ? 0 : SRC_A);
		KUNIT_EXPECT_EQ(test, dev->ring[i].type, c->types[i]);
	}
}

/*
 * A malformed event may stand for a waiting payload that would block the
 * pipe for good: one receive follows it. Firmware names the source, and
 * the payload is routed there (not counted as misrouted); 0 bytes means
 * nothing was pending.
 */
struct malformed_case {
	const char *desc;
	struct log_spec log;
	bool pending;		/* Firmware holds a payload from SRC_B. */
	s32 rc[MAX_SCRIPT];	/* Receive statuses. */
	int nrc;
};

static const struct malformed_case malformed_cases[] = {
	{ "wrong log type, payload delivered",
	  { RTAS_TYPE_HOTPLUG, .srcid = SRC_A, .evtype = 1 }, true },
	{ "missing PE section, payload delivered",
	  { RTAS_TYPE_HVPIPE, .filler = true, .no_pe = true }, true },
	{ "short PE section, payload delivered",
	  { RTAS_TYPE_HVPIPE, .pe_len = 12, .srcid = SRC_A, .evtype = 1 }, true },
	{ "unknown event type, payload delivered",
	  { RTAS_TYPE_HVPIPE, .srcid = SRC_A, .evtype = 4 }, true },
	{ "short PE section, -1 once, payload delivered",
	  { RTAS_TYPE_HVPIPE, .pe_len = 12, .srcid = SRC_A, .evtype = 1 }, true,
	  { -1, 0 }, 2 },
	{ "missing PE section, nothing pending: spurious",
	  { RTAS_TYPE_HVPIPE, .filler = true, .no_pe = true }, false },
};

KUNIT_ARRAY_PARAM_DESC(malformed, malformed_cases, desc);

static void hvpipe_test_malformed_receive(struct kunit *test)
{
	const struct malformed_case *c = test->param_value;
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct hvpipe_source *a = new_src(test, dev, SRC_A);
	struct hvpipe_source *b = new_src(test, dev, SRC_B);

	build_log(f->log, &c->log);
	memcpy(f->recv_rc, c->rc, sizeof(c->rc));
	f->recv_nrc = c->nrc;
	f->recv_srcid = c->pending ? SRC_B : 0;
	f->recv_len = c->pending ? 16 : 0;
	hvpipe_handle_event(dev, 0);
	KUNIT_EXPECT_EQ(test, dev->event_stats.payload, 0);
	KUNIT_EXPECT_EQ(test, f->kicks, 1);
	hvpipe_rx_work(&dev->rx_work.work);
	if (c->nrc > 1) {
		KUNIT_EXPECT_EQ(test, f->recv_calls, 1);
		KUNIT_EXPECT_EQ(test, ring_count(dev), 1);
		hvpipe_rx_work(&dev->rx_work.work);
	}

	KUNIT_EXPECT_EQ(test, f->recv_calls, c->nrc > 1 ? c->nrc : 1);
	KUNIT_EXPECT_EQ(test, ring_count(dev), 0);
	KUNIT_EXPECT_EQ(test, a->nmsgs, 0);
	KUNIT_EXPECT_EQ(test, b->nmsgs, c->pending ? 1 : 0);
	KUNIT_EXPECT_EQ(test, dev->stats.received, c->pending ? 1 : 0);
	KUNIT_EXPECT_EQ(test, dev->event_stats.spurious, c->pending ? 0 : 1);
	KUNIT_EXPECT_EQ(test, dev->stats.misrouted, 0);
	KUNIT_EXPECT_EQ(test, dev->stats.dropped_no_handle, 0);
	KUNIT_EXPECT_EQ(test, dev->stats.dropped_rx_failed, 0);

	/* The pipe works on. */
	f->recv_nrc = 0;
	f->recv_len = 16;
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	KUNIT_EXPECT_EQ(test, a->nmsgs, 1);
}

/*
 * A payload event kept aside while the ring is full wins over a probe kept
 * aside; a probe does not replace a deferred payload event.
 */
static void hvpipe_test_malformed_overflow(struct kunit *test)
{
	struct log_spec bad = { RTAS_TYPE_HVPIPE, .filler = true, .no_pe = true };
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	int i;

	set_event(SRC_B, HVPIPE_LOST_CONNECTION);
	for (i = 0; i < HVPIPE_EVENT_RING; i++)
		hvpipe_handle_event(dev, 0);
	build_log(f->log, &bad);
	hvpipe_handle_event(dev, 0);
	KUNIT_EXPECT_TRUE(test, dev->payload_deferred);
	KUNIT_EXPECT_EQ(test, dev->deferred.type, HVPIPE_EVENT_PROBE);
	set_event(SRC_A, HVPIPE_MSG_AVAILABLE);
	hvpipe_handle_event(dev, 0);
	KUNIT_EXPECT_EQ(test, dev->deferred.type, HVPIPE_MSG_AVAILABLE);
	KUNIT_EXPECT_EQ(test, dev->deferred.srcid, SRC_A);
	build_log(f->log, &bad);
	hvpipe_handle_event(dev, 0);
	KUNIT_EXPECT_EQ(test, dev->deferred.type, HVPIPE_MSG_AVAILABLE);
	KUNIT_EXPECT_EQ(test, dev->event_stats.deferred, 3);
	KUNIT_EXPECT_EQ(test, dev->event_stats.overflow, 0);
}

/* A zero-length section must not loop; a log shorter than its header. */
static void hvpipe_test_event_zero_len(struct kunit *test)
{
	struct log_spec s = { RTAS_TYPE_HVPIPE, .filler = true, .srcid = SRC_A };
	struct hvpipe_event ev;
	u8 *log = kunit_kzalloc(test, RTAS_ERROR_LOG_MAX, GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, log);
	build_log(log, &s);
	put_unaligned_be16(0, log + 8 + 16 + 2);	/* "PH" length 0 */
	KUNIT_EXPECT_EQ(test, hvpipe_parse_event(log, RTAS_ERROR_LOG_MAX, &ev),
			-ENOENT);
	KUNIT_EXPECT_EQ(test, hvpipe_parse_event(log, 7, &ev), -ENOENT);
}

static void hvpipe_test_event_overflow(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 4);
	int i;

	set_event(SRC_A, HVPIPE_LOST_CONNECTION);
	for (i = 0; i < HVPIPE_EVENT_RING + 2; i++)
		hvpipe_handle_event(dev, 0);
	KUNIT_EXPECT_EQ(test, ring_count(dev), HVPIPE_EVENT_RING);
	KUNIT_EXPECT_EQ(test, dev->event_stats.overflow, 2);
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
	int i;

	set_event(SRC_B, HVPIPE_LOST_CONNECTION);
	for (i = 0; i < HVPIPE_EVENT_RING; i++)
		hvpipe_handle_event(dev, 0);
	set_event(SRC_A, HVPIPE_LOST_CONNECTION);
	hvpipe_handle_event(dev, 0);
	KUNIT_EXPECT_EQ(test, dev->event_stats.overflow, 1);

	set_event(SRC_A, HVPIPE_MSG_AVAILABLE);
	f->recv_srcid = SRC_A;
	hvpipe_handle_event(dev, 0);
	KUNIT_EXPECT_EQ(test, dev->event_stats.overflow, 1);
	KUNIT_EXPECT_EQ(test, dev->event_stats.deferred, 1);
	KUNIT_EXPECT_TRUE(test, dev->payload_deferred);

	hvpipe_rx_work(&dev->rx_work.work);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 1);
	KUNIT_EXPECT_FALSE(test, dev->payload_deferred);
	KUNIT_EXPECT_EQ(test, ring_count(dev), 0);
	KUNIT_EXPECT_EQ(test, read_flags(test, file, buf, &len),
			HVPIPE_MSG_AVAILABLE);
	KUNIT_EXPECT_EQ(test, len, 48 + 16);
}

/*
 * Firmware may raise the next event as soon as the payload is received,
 * before the receive call has returned: it is noted, and handled next.
 */
static void hvpipe_test_event_during_receive(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct hvpipe_source *a = new_src(test, dev, SRC_A);

	f->recv_dev = dev;
	f->recv_event = SRC_A;
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	KUNIT_EXPECT_EQ(test, f->ce_calls, 2);
	KUNIT_EXPECT_EQ(test, dev->event_stats.payload, 2);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 2);
	KUNIT_EXPECT_EQ(test, a->nmsgs, 2);
	KUNIT_EXPECT_EQ(test, ring_count(dev), 0);
}

/* Routing. */

static void hvpipe_test_unknown_source(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);

	new_src(test, dev, SRC_A);
	deliver(dev, SRC_NONE, HVPIPE_MSG_AVAILABLE, SRC_NONE);
	/* Received (so the pipe is not blocked), then dropped and counted. */
	KUNIT_EXPECT_EQ(test, f->recv_calls, 1);
	KUNIT_EXPECT_EQ(test, dev->stats.dropped_no_handle, 1);
	KUNIT_EXPECT_EQ(test, dev->stats.received, 0);
	KUNIT_EXPECT_EQ(test, ring_count(dev), 0);
}

/*
 * Spurious events: firmware has nothing pending, the receive succeeds with
 * 0 bytes. Not a message: not misrouted, not dropped, not received.
 */
static void hvpipe_test_spurious(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct hvpipe_source *a = new_src(test, dev, SRC_A);

	f->recv_len = 0;
	/* An event naming an open source, then one naming no open source. */
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, 0);
	deliver(dev, SRC_NONE, HVPIPE_MSG_AVAILABLE, 0);
	/* Firmware may also return the event's source with 0 bytes. */
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 3);
	KUNIT_EXPECT_EQ(test, dev->event_stats.payload, 3);
	KUNIT_EXPECT_EQ(test, dev->event_stats.spurious, 3);
	KUNIT_EXPECT_EQ(test, dev->stats.misrouted, 0);
	KUNIT_EXPECT_EQ(test, dev->stats.dropped_no_handle, 0);
	KUNIT_EXPECT_EQ(test, dev->stats.dropped_rx_failed, 0);
	KUNIT_EXPECT_EQ(test, dev->stats.received, 0);
	KUNIT_EXPECT_EQ(test, a->nmsgs, 0);
	KUNIT_EXPECT_EQ(test, a->received, 0);
	KUNIT_EXPECT_EQ(test, ring_count(dev), 0);
	KUNIT_EXPECT_EQ(test, dev->rx_msg->len, 0);

	/* The pipe works on. */
	f->recv_len = 16;
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	KUNIT_EXPECT_EQ(test, a->nmsgs, 1);
	KUNIT_EXPECT_EQ(test, dev->event_stats.spurious, 3);
}

static void hvpipe_test_source_mismatch(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct hvpipe_source *a = new_src(test, dev, SRC_A);
	struct hvpipe_source *b = new_src(test, dev, SRC_B);

	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_B);
	KUNIT_EXPECT_EQ(test, a->nmsgs, 0);
	KUNIT_EXPECT_EQ(test, b->nmsgs, 1);
	KUNIT_EXPECT_EQ(test, dev->stats.misrouted, 1);

	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_NONE);
	KUNIT_EXPECT_EQ(test, a->nmsgs, 0);
	KUNIT_EXPECT_EQ(test, dev->stats.misrouted, 2);
	KUNIT_EXPECT_EQ(test, dev->stats.dropped_no_handle, 1);
}

/* Queue bound and back-pressure. */
static void hvpipe_test_backpressure(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 2);
	struct file *file = new_file(test, dev, SRC_A);
	struct hvpipe_source *src = file->private_data;
	char __user *buf = user_buf(test, PAGE_SIZE);
	int kicks;

	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	KUNIT_EXPECT_EQ(test, src->nmsgs, 2);

	/* Full: the payload stays with firmware. */
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 2);
	KUNIT_EXPECT_EQ(test, src->nmsgs, 2);
	KUNIT_EXPECT_TRUE(test, dev->rx_blocked);
	KUNIT_EXPECT_EQ(test, dev->stats.backpressure, 1);
	KUNIT_EXPECT_EQ(test, ring_count(dev), 1);

	/* Still full: nothing more is received. */
	hvpipe_rx_work(&dev->rx_work.work);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 2);

	/* Reading makes room and kicks the receive path. */
	kicks = f->kicks;
	KUNIT_EXPECT_EQ(test, do_read(file, buf, PAGE_SIZE), 48 + 16);
	KUNIT_EXPECT_EQ(test, f->kicks, kicks + 1);
	hvpipe_rx_work(&dev->rx_work.work);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 3);
	KUNIT_EXPECT_EQ(test, src->nmsgs, 2);
	KUNIT_EXPECT_FALSE(test, dev->rx_blocked);
	KUNIT_EXPECT_EQ(test, ring_count(dev), 0);
	KUNIT_EXPECT_EQ(test, dev->stats.queue_hwm, 2);
	KUNIT_EXPECT_EQ(test, dev->stats.received, 3);
}

/* Closing a blocked source lets the waiting payload through. */
static void hvpipe_test_close_unblocks(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 1);
	struct hvpipe_source *src = hvpipe_source_open(dev, SRC_A);
	int kicks;

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, src);
	hvpipe_source_publish(src);
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	KUNIT_EXPECT_TRUE(test, dev->rx_blocked);
	kicks = f->kicks;
	hvpipe_source_close(src);
	KUNIT_EXPECT_EQ(test, f->kicks, kicks + 1);
	KUNIT_EXPECT_EQ(test, dev->stats.dropped_closed, 1);
	hvpipe_rx_work(&dev->rx_work.work);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 2);
	KUNIT_EXPECT_EQ(test, dev->stats.dropped_no_handle, 1);
	KUNIT_EXPECT_EQ(test, ring_count(dev), 0);
}

static void hvpipe_test_close_queued(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 8);
	struct file *file = new_file(test, dev, SRC_A);
	int i;

	for (i = 0; i < 3; i++)
		deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	deliver(dev, SRC_A, HVPIPE_LOST_CONNECTION, 0);
	kunit_release_action(test, file_close, file);
	/* Three messages dropped; the notice is not a message. */
	KUNIT_EXPECT_EQ(test, dev->stats.dropped_closed, 3);
	KUNIT_EXPECT_TRUE(test, xa_empty(&dev->sources));
	/* The source can be opened again. */
	new_file(test, dev, SRC_A);
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
	u8 *area = f->send_area;

	KUNIT_EXPECT_EQ(test, do_write(file, buf, c->count), c->ret);
	KUNIT_EXPECT_EQ(test, f->send_calls, c->ret > 0 ? 1 : 0);
	if (c->ret > 0)
		KUNIT_EXPECT_EQ(test, get_unaligned_be64(area + 16),
				c->count - 48);
}

static void hvpipe_test_write_fault(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);

	KUNIT_EXPECT_EQ(test, do_write(file, (char __user *)16, 100), -EFAULT);
	KUNIT_EXPECT_EQ(test, f->send_calls, 0);
}

static void hvpipe_test_write_errno(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf(test, PAGE_SIZE);

	f->send_rc[0] = -4;
	f->send_nrc = 1;
	KUNIT_EXPECT_EQ(test, do_write(file, buf, 100), -EPIPE);
	KUNIT_EXPECT_EQ(test, dev->stats.send_fw[HVPIPE_FW_CLOSED], 1);
}

static void hvpipe_test_read_sizes(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	struct hvpipe_source *src = file->private_data;
	char __user *buf = user_buf(test, 2 * PAGE_SIZE);

	f->recv_len = 100;
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);

	KUNIT_EXPECT_EQ(test, do_read(file, buf, 47), -EINVAL);
	KUNIT_EXPECT_EQ(test, do_read(file, buf, 48), -EMSGSIZE);
	KUNIT_EXPECT_EQ(test, do_read(file, buf, 49), -EMSGSIZE);
	KUNIT_EXPECT_EQ(test, do_read(file, buf, 147), -EMSGSIZE);
	KUNIT_EXPECT_EQ(test, src->nmsgs, 1);
	/* A bad pointer fails and the message stays queued. */
	KUNIT_EXPECT_EQ(test, do_read(file, (char __user *)16, 4096), -EFAULT);
	KUNIT_EXPECT_EQ(test, src->nmsgs, 1);
	KUNIT_EXPECT_EQ(test, do_read(file, buf, 148), 148);
	KUNIT_EXPECT_EQ(test, src->nmsgs, 0);

	/* The largest payload fits a 4096-byte buffer. */
	f->recv_len = HVPIPE_MAX_PAYLOAD;
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
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
	struct hvpipe_source *src = file->private_data;
	char __user *buf = user_buf(test, 2 * PAGE_SIZE);
	char __user *edge = buf + PAGE_SIZE - 48;
	struct papr_hvpipe_hdr hdr;
	ssize_t len;

	KUNIT_ASSERT_EQ(test, vm_munmap((unsigned long)buf + PAGE_SIZE,
					PAGE_SIZE), 0);
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	deliver(dev, SRC_A, HVPIPE_LOST_CONNECTION, 0);
	KUNIT_EXPECT_EQ(test, do_read(file, edge, 48 + 16), -EFAULT);
	KUNIT_ASSERT_EQ(test, copy_from_user(&hdr, edge, sizeof(hdr)), 0);
	KUNIT_EXPECT_EQ(test, hdr.flags, HVPIPE_MSG_AVAILABLE);
	KUNIT_EXPECT_EQ(test, src->nmsgs, 1);

	/* A notice read into a bad buffer stays queued too. */
	KUNIT_EXPECT_EQ(test, read_flags(test, file, buf, &len),
			HVPIPE_MSG_AVAILABLE);
	KUNIT_EXPECT_EQ(test, len, 48 + 16);
	KUNIT_EXPECT_EQ(test, do_read(file, (char __user *)16, 48), -EFAULT);
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

	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	KUNIT_ASSERT_EQ(test, do_read(file, buf, PAGE_SIZE), 48 + 16);
	KUNIT_ASSERT_EQ(test, copy_from_user(&hdr, buf, sizeof(hdr)), 0);
	KUNIT_EXPECT_EQ(test, hdr.version, 0);
	KUNIT_EXPECT_MEMEQ(test, hdr.reserved, zero, sizeof(hdr.reserved));
	KUNIT_EXPECT_EQ(test, hdr.flags, HVPIPE_MSG_AVAILABLE);
	KUNIT_EXPECT_MEMEQ(test, hdr.reserved2, zero, sizeof(hdr.reserved2));
	KUNIT_ASSERT_EQ(test, copy_from_user(page, buf, 48 + 17), 0);
	KUNIT_EXPECT_EQ(test, page[48 + 1], 0x5a);
	/* Nothing beyond the message is written. */
	KUNIT_EXPECT_EQ(test, page[48 + 16], 0xaa);
}

static void hvpipe_test_read_nonblock(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf(test, PAGE_SIZE);

	file->f_flags |= O_NONBLOCK;
	KUNIT_EXPECT_EQ(test, do_read(file, buf, PAGE_SIZE), -EAGAIN);
}

struct reader {
	struct kunit *test;
	struct file *file;
	struct completion started;
	ssize_t ret;
};

static int reader_fn(void *data)
{
	struct reader *r = data;

	complete(&r->started);
	/* No user memory here: the copy faults, after the wakeup. */
	r->ret = r->file->f_op->read(r->file, (char __user *)16, 4096, NULL);
	return 0;
}

/* A blocked reader wakes when a message arrives. */
static void hvpipe_test_read_blocks(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	struct reader r = { .test = test, .file = file, .ret = 1 };
	struct task_struct *task;

	init_completion(&r.started);
	get_file(file);
	task = kthread_run(reader_fn, &r, "hvpipe-reader");
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, task);
	get_task_struct(task);
	wait_for_completion(&r.started);
	msleep(50);
	KUNIT_EXPECT_EQ(test, r.ret, 1);	/* Still blocked. */
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	kthread_stop(task);
	put_task_struct(task);
	KUNIT_EXPECT_EQ(test, r.ret, -EFAULT);
	fput(file);
}

/* The poll() mask as a plain integer, for comparisons. */
static unsigned int poll_mask(struct file *file)
{
	return (__force unsigned int)file->f_op->poll(file, NULL);
}

#define MASK_OUT	((__force unsigned int)(EPOLLOUT | EPOLLWRNORM))
#define MASK_IN		((__force unsigned int)(EPOLLIN | EPOLLRDNORM))
#define MASK_HUP	((__force unsigned int)EPOLLHUP)

static void hvpipe_test_poll(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	struct hvpipe_source *src = file->private_data;
	char __user *buf = user_buf(test, PAGE_SIZE);

	KUNIT_EXPECT_EQ(test, poll_mask(file), MASK_OUT);
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	KUNIT_EXPECT_EQ(test, poll_mask(file), MASK_OUT | MASK_IN);
	deliver(dev, SRC_A, HVPIPE_LOST_CONNECTION, 0);
	KUNIT_EXPECT_EQ(test, poll_mask(file), MASK_OUT | MASK_IN | MASK_HUP);
	KUNIT_EXPECT_EQ(test, do_read(file, buf, PAGE_SIZE), 48 + 16);
	KUNIT_EXPECT_EQ(test, do_read(file, buf, PAGE_SIZE), 48);
	/* Hang-up stays until a send succeeds or a message arrives. */
	KUNIT_EXPECT_EQ(test, poll_mask(file), MASK_OUT | MASK_HUP);
	KUNIT_EXPECT_EQ(test, do_write(file, buf, 49), 49);
	KUNIT_EXPECT_EQ(test, poll_mask(file), MASK_OUT);
	KUNIT_EXPECT_FALSE(test, src->hup);
	deliver(dev, SRC_A, HVPIPE_LOST_CONNECTION, 0);
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	KUNIT_EXPECT_EQ(test, poll_mask(file), MASK_OUT | MASK_IN);
}

static u32 read_flags(struct kunit *test, struct file *file, char __user *buf,
		      ssize_t *len)
{
	struct papr_hvpipe_hdr hdr = {};

	*len = do_read(file, buf, PAGE_SIZE);
	if (*len >= 48)
		KUNIT_EXPECT_EQ(test, copy_from_user(&hdr, buf, sizeof(hdr)), 0);
	return hdr.flags;
}

/* A lost-connection notice comes after the messages queued before it. */
static void hvpipe_test_lost_order(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 8);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf(test, PAGE_SIZE);
	ssize_t len;

	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE | HVPIPE_LOST_CONNECTION, SRC_A);
	KUNIT_EXPECT_EQ(test, read_flags(test, file, buf, &len),
			HVPIPE_MSG_AVAILABLE);
	KUNIT_EXPECT_EQ(test, len, 48 + 16);
	KUNIT_EXPECT_EQ(test, read_flags(test, file, buf, &len),
			HVPIPE_MSG_AVAILABLE);
	KUNIT_EXPECT_EQ(test, read_flags(test, file, buf, &len),
			HVPIPE_LOST_CONNECTION);
	KUNIT_EXPECT_EQ(test, len, 48);

	/* Unread notices merge into one, after the newest message. */
	deliver(dev, SRC_A, HVPIPE_LOST_CONNECTION, 0);
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	deliver(dev, SRC_A, HVPIPE_LOST_CONNECTION, 0);
	KUNIT_EXPECT_EQ(test, read_flags(test, file, buf, &len),
			HVPIPE_MSG_AVAILABLE);
	KUNIT_EXPECT_EQ(test, read_flags(test, file, buf, &len),
			HVPIPE_LOST_CONNECTION);
	file->f_flags |= O_NONBLOCK;
	KUNIT_EXPECT_EQ(test, do_read(file, buf, PAGE_SIZE), -EAGAIN);
}

/* CREATE_HANDLE. */

static void hvpipe_test_duplicate(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);

	KUNIT_EXPECT_PTR_EQ(test, hvpipe_open_handle(dev, SRC_A),
			    ERR_PTR(-EALREADY));
	KUNIT_EXPECT_PTR_EQ(test, hvpipe_source_open(dev, SRC_A),
			    ERR_PTR(-EALREADY));
	new_file(test, dev, SRC_B);
	kunit_release_action(test, file_close, file);
	new_file(test, dev, SRC_A);
}

struct racer {
	struct hvpipe_dev *dev;
	struct completion *go;
	struct hvpipe_source *src;
	struct completion done;
};

static int racer_fn(void *data)
{
	struct racer *r = data;

	wait_for_completion(r->go);
	r->src = hvpipe_source_open(r->dev, SRC_A);
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
			if (!IS_ERR(r[i].src)) {
				winners++;
				hvpipe_source_close(r[i].src);
			} else {
				KUNIT_EXPECT_EQ(test, PTR_ERR(r[i].src), -EALREADY);
			}
		}
		KUNIT_ASSERT_EQ(test, winners, 1);
	}
	KUNIT_EXPECT_TRUE(test, xa_empty(&dev->sources));
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
	struct file *file;
	unsigned long arg;

	file = kunit_kzalloc(test, sizeof(*file), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, file);
	file->private_data = &dev->miscdev;
	KUNIT_ASSERT_EQ(test, put_user(c->srcid, (u32 __user *)buf), 0);
	arg = (unsigned long)(c->bad_ptr ? (char __user *)16 : buf);
	KUNIT_EXPECT_EQ(test, papr_hvpipe_dev_ioctl(file, c->cmd, arg), c->ret);
	KUNIT_EXPECT_TRUE(test, xa_empty(&dev->sources));
}

/* The fd CREATE_HANDLE returns: read-write, close-on-exec, the source's. */
static void hvpipe_test_create_handle(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 4);
	char __user *buf = user_buf(test, PAGE_SIZE);
	struct hvpipe_source *src;
	struct file *dev_file, *file;
	long fd;

	dev_file = kunit_kzalloc(test, sizeof(*dev_file), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, dev_file);
	dev_file->private_data = &dev->miscdev;
	KUNIT_ASSERT_EQ(test, put_user(SRC_A, (u32 __user *)buf), 0);
	fd = papr_hvpipe_dev_ioctl(dev_file, PAPR_HVPIPE_IOC_CREATE_HANDLE,
				   (unsigned long)buf);
	KUNIT_ASSERT_GE(test, fd, 0);

	file = fget(fd);
	KUNIT_ASSERT_NOT_NULL(test, file);
	KUNIT_EXPECT_TRUE(test, file->f_mode & FMODE_READ);
	KUNIT_EXPECT_TRUE(test, file->f_mode & FMODE_WRITE);
	KUNIT_EXPECT_EQ(test, file->f_flags & O_ACCMODE, O_RDWR);
	rcu_read_lock();
	KUNIT_EXPECT_TRUE(test, close_on_exec(fd, current->files));
	rcu_read_unlock();
	KUNIT_EXPECT_PTR_EQ(test, (void *)file->f_op,
			    (void *)&papr_hvpipe_handle_ops);
	src = file->private_data;
	KUNIT_EXPECT_EQ(test, src->srcid, SRC_A);
	KUNIT_EXPECT_PTR_EQ(test, xa_load(&dev->sources, SRC_A), (void *)src);
	KUNIT_EXPECT_EQ(test, papr_hvpipe_dev_ioctl(dev_file,
						    PAPR_HVPIPE_IOC_CREATE_HANDLE,
						    (unsigned long)buf),
			-EALREADY);
	fput(file);

	KUNIT_EXPECT_EQ(test, close_fd(fd), 0);
	flush_delayed_fput();
	KUNIT_EXPECT_TRUE(test, xa_empty(&dev->sources));
}

/* A source claimed but not yet published gets nothing. */
static void hvpipe_test_unpublished(struct kunit *test)
{
	struct fake_fw *f = fake();
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct hvpipe_source *src = hvpipe_source_open(dev, SRC_A);

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, src);
	KUNIT_EXPECT_PTR_EQ(test, hvpipe_source_open(dev, SRC_A),
			    ERR_PTR(-EALREADY));
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 1);
	KUNIT_EXPECT_EQ(test, src->nmsgs, 0);
	KUNIT_EXPECT_EQ(test, dev->stats.dropped_no_handle, 1);
	hvpipe_source_close(src);
	KUNIT_EXPECT_EQ(test, dev->stats.dropped_closed, 0);
	KUNIT_EXPECT_TRUE(test, xa_empty(&dev->sources));
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
	hvpipe_migrate(dev, PAPR_HVPIPE_MIGRATION_SUSPEND);
	KUNIT_EXPECT_FALSE(test, f->enabled);
	KUNIT_EXPECT_EQ(test, poll_mask(a), 0);

	/* No send and no receive while suspended. */
	a->f_flags |= O_NONBLOCK;
	KUNIT_EXPECT_EQ(test, do_write(a, buf, 100), -EAGAIN);
	KUNIT_EXPECT_EQ(test, f->send_calls, 0);
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 0);
	KUNIT_EXPECT_EQ(test, ring_count(dev), 1);

	/* Failed migration: enabled again, pending payload received. */
	hvpipe_migrate(dev, PAPR_HVPIPE_MIGRATION_RESUME);
	KUNIT_EXPECT_TRUE(test, f->enabled);
	hvpipe_rx_work(&dev->rx_work.work);
	KUNIT_EXPECT_EQ(test, f->recv_calls, 1);
	KUNIT_EXPECT_EQ(test, read_flags(test, a, buf, &len),
			HVPIPE_MSG_AVAILABLE);
	KUNIT_EXPECT_EQ(test, do_read(a, buf, PAGE_SIZE), -EAGAIN);
	KUNIT_EXPECT_EQ(test, do_write(a, buf, 100), 100);

	/* Moved: every open fd is told its source may be gone. */
	hvpipe_migrate(dev, PAPR_HVPIPE_MIGRATION_SUSPEND);
	hvpipe_migrate(dev, PAPR_HVPIPE_MIGRATION_DONE);
	KUNIT_EXPECT_TRUE(test, f->enabled);
	KUNIT_EXPECT_EQ(test, f->enable_calls, 5);
	KUNIT_EXPECT_TRUE(test, poll_mask(a) & MASK_HUP);
	KUNIT_EXPECT_TRUE(test, poll_mask(b) & MASK_HUP);
	KUNIT_EXPECT_EQ(test, read_flags(test, b, buf, &len),
			HVPIPE_LOST_CONNECTION);
	KUNIT_EXPECT_EQ(test, do_write(a, buf, 100), 100);
	KUNIT_EXPECT_FALSE(test, poll_mask(a) & MASK_HUP);
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
	set_event(SRC_A, HVPIPE_MSG_AVAILABLE);
	KUNIT_EXPECT_EQ(test, generic_handle_irq_safe(cfg.irqs[1]), 0);
	KUNIT_EXPECT_EQ(test, ring_count(dev), 1);

	hvpipe_dev_destroy(dev);
	KUNIT_EXPECT_FALSE(test, f->enabled);
	KUNIT_EXPECT_FALSE(test, irq_has_action(cfg.irqs[0]));
	KUNIT_EXPECT_FALSE(test, irq_has_action(cfg.irqs[1]));
}

static void probe_remove(void *data)
{
	struct hvpipe_dev *dev = data;

	misc_deregister(&dev->miscdev);
	hvpipe_dev_destroy(dev);
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
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, first);
	KUNIT_ASSERT_EQ(test, 0,
			kunit_add_action_or_reset(test, probe_remove, first));
	KUNIT_EXPECT_NOT_NULL(test, first->miscdev.this_device);

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
 * would turn debug_locks off.
 */
static void hvpipe_test_hardirq(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct file *file = new_file(test, dev, SRC_A);
	char __user *buf = user_buf(test, PAGE_SIZE);
	struct hardirq_ctx c = { .dev = dev };
	struct seq_file m = {};

	/* Lockdep must still be on, or the test below proves nothing. */
	if (IS_ENABLED(CONFIG_PROVE_LOCKING))
		KUNIT_ASSERT_TRUE(test, debug_locks);
	set_event(SRC_A, HVPIPE_MSG_AVAILABLE);
	fake()->recv_srcid = SRC_A;
	init_irq_work(&c.work, hardirq_fn);
	preempt_disable();
	irq_work_queue(&c.work);
	while (!READ_ONCE(c.done))
		cpu_relax();
	preempt_enable();
	irq_work_sync(&c.work);
	KUNIT_EXPECT_TRUE(test, c.in_hardirq);
	KUNIT_EXPECT_EQ(test, ring_count(dev), 1);

	hvpipe_rx_work(&dev->rx_work.work);
	KUNIT_EXPECT_EQ(test, do_read(file, buf, PAGE_SIZE), 48 + 16);
	m.buf = kunit_kzalloc(test, PAGE_SIZE, GFP_KERNEL);
	m.size = PAGE_SIZE;
	m.private = dev;
	hvpipe_stats_show(&m, NULL);
	if (IS_ENABLED(CONFIG_PROVE_LOCKING))
		KUNIT_EXPECT_TRUE(test, debug_locks);
}

/* debugfs formats, as the selftests parse them. */
static void hvpipe_test_debugfs(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, 4);
	struct seq_file m = {};

	new_src(test, dev, SRC_A);
	deliver(dev, SRC_A, HVPIPE_MSG_AVAILABLE, SRC_A);
	deliver(dev, SRC_NONE, HVPIPE_MSG_AVAILABLE, SRC_NONE);

	m.buf = kunit_kzalloc(test, PAGE_SIZE, GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, m.buf);
	m.size = PAGE_SIZE;
	m.private = dev;
	KUNIT_EXPECT_EQ(test, hvpipe_stats_show(&m, NULL), 0);
	KUNIT_EXPECT_NOT_NULL(test, strstr(m.buf, "open_sources 1\n"));
	KUNIT_EXPECT_NOT_NULL(test, strstr(m.buf, "\nreceived 1\n"));
	KUNIT_EXPECT_NOT_NULL(test, strstr(m.buf, "\ndropped_no_handle 1\n"));
	KUNIT_EXPECT_NOT_NULL(test, strstr(m.buf, "\nevents_payload 2\n"));
	KUNIT_EXPECT_NOT_NULL(test, strstr(m.buf, "\nevents_spurious 0\n"));
	KUNIT_EXPECT_NOT_NULL(test, strstr(m.buf, "\nrecv_fw_unexpected 0\n"));
	KUNIT_EXPECT_FALSE(test, seq_has_overflowed(&m));

	memset(m.buf, 0, PAGE_SIZE);
	m.count = 0;
	KUNIT_EXPECT_EQ(test, hvpipe_sources_show(&m, NULL), 0);
	KUNIT_EXPECT_STREQ(test, m.buf,
			   "0x02000001 queued=1 depth=4 hwm=1 sent=0 received=1 lost=0 hup=0\n");
}

/*
 * Measurements for the lab, not pass/fail: event dispatch cost with one
 * and with 4096 open sources, and memory per open source.
 */
#define BENCH_SOURCES	4096
#define BENCH_EVENTS	1000

static u64 bench_dispatch(struct hvpipe_dev *dev, u32 srcid)
{
	struct hvpipe_source *src = xa_load(&dev->sources, srcid);
	struct hvpipe_msg *msg, *next;
	u64 start, ns;
	int i;

	set_event(srcid, HVPIPE_MSG_AVAILABLE);
	fake()->recv_srcid = srcid;
	start = ktime_get_ns();
	for (i = 0; i < BENCH_EVENTS; i++) {
		hvpipe_handle_event(dev, 0);
		hvpipe_rx_work(&dev->rx_work.work);
	}
	ns = ktime_get_ns() - start;

	spin_lock(&dev->lock);
	list_for_each_entry_safe(msg, next, &src->queue, node) {
		list_del(&msg->node);
		kfree(msg);
	}
	src->nmsgs = 0;
	spin_unlock(&dev->lock);
	return div_u64(ns, BENCH_EVENTS);
}

static void hvpipe_test_measure(struct kunit *test)
{
	struct hvpipe_dev *dev = new_dev(test, HVPIPE_MAX_DEPTH);
	struct hvpipe_source **srcs, *src;
	u64 one, many;
	size_t xa_bytes;
	u32 i, failed = 0, mid = BENCH_SOURCES / 2;

	/*
	 * No KUnit action per source: static stub lookups walk the test's
	 * resources, which would then grow with the number of sources.
	 */
	srcs = kunit_kcalloc(test, BENCH_SOURCES, sizeof(*srcs), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, srcs);
	srcs[mid] = hvpipe_source_open(dev, 0x02000000 | mid);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, srcs[mid]);
	src = srcs[mid];
	hvpipe_source_publish(src);
	bench_dispatch(dev, src->srcid);	/* warm up */
	one = bench_dispatch(dev, src->srcid);

	for (i = 0; i < BENCH_SOURCES; i++) {
		if (i == mid)
			continue;
		srcs[i] = hvpipe_source_open(dev, 0x02000000 | i);
		if (!IS_ERR(srcs[i]))
			hvpipe_source_publish(srcs[i]);
	}
	many = bench_dispatch(dev, src->srcid);

	/* A full radix tree of 4096 dense IDs: 64 leaves and a root. */
	xa_bytes = DIV_ROUND_UP((BENCH_SOURCES / XA_CHUNK_SIZE + 1) *
				sizeof(struct xa_node), BENCH_SOURCES);
	kunit_info(test, "memory per open source: %zu bytes (struct %zu, slab %zu) + %zu bytes xarray (target <= 512)\n",
		   ksize(src) + xa_bytes, sizeof(*src), ksize(src), xa_bytes);
	kunit_info(test, "dispatch: %llu ns/event with 1 source, %llu ns/event with %d sources, ratio %llu.%02llu (target <= 1.20)\n",
		   one, many, BENCH_SOURCES, div64_u64(many, one),
		   div64_u64(many * 100, one) % 100);

	for (i = 0; i < BENCH_SOURCES; i++) {
		if (IS_ERR(srcs[i]))
			failed++;
		else
			hvpipe_source_close(srcs[i]);
	}
	KUNIT_EXPECT_EQ(test, failed, 0);
	KUNIT_EXPECT_EQ(test, dev->stats.received, 3 * BENCH_EVENTS);
}

static struct kunit_case hvpipe_test_cases[] = {
	KUNIT_CASE(hvpipe_test_abi),
	KUNIT_CASE_PARAM(hvpipe_test_send_status, send_status_gen_params),
	KUNIT_CASE_PARAM(hvpipe_test_recv_status, recv_status_gen_params),
	KUNIT_CASE_PARAM(hvpipe_test_recv_oversize, oversize_gen_params),
	KUNIT_CASE_PARAM(hvpipe_test_recv_retry, recv_retry_gen_params),
	KUNIT_CASE(hvpipe_test_msg_size),
	KUNIT_CASE(hvpipe_test_send_layout),
	KUNIT_CASE_PARAM(hvpipe_test_event, event_gen_params),
	KUNIT_CASE_PARAM(hvpipe_test_malformed_receive, malformed_gen_params),
	KUNIT_CASE(hvpipe_test_malformed_overflow),
	KUNIT_CASE(hvpipe_test_event_zero_len),
	KUNIT_CASE(hvpipe_test_event_overflow),
	KUNIT_CASE(hvpipe_test_event_overflow_payload),
	KUNIT_CASE(hvpipe_test_event_during_receive),
	KUNIT_CASE(hvpipe_test_unknown_source),
	KUNIT_CASE(hvpipe_test_spurious),
	KUNIT_CASE(hvpipe_test_source_mismatch),
	KUNIT_CASE(hvpipe_test_backpressure),
	KUNIT_CASE(hvpipe_test_close_unblocks),
	KUNIT_CASE(hvpipe_test_close_queued),
	KUNIT_CASE_PARAM(hvpipe_test_write_size, write_size_gen_params),
	KUNIT_CASE(hvpipe_test_write_fault),
	KUNIT_CASE(hvpipe_test_write_errno),
	KUNIT_CASE(hvpipe_test_read_sizes),
	KUNIT_CASE(hvpipe_test_read_partial_fault),
	KUNIT_CASE(hvpipe_test_read_header),
	KUNIT_CASE(hvpipe_test_read_nonblock),
	KUNIT_CASE(hvpipe_test_read_blocks),
	KUNIT_CASE(hvpipe_test_poll),
	KUNIT_CASE(hvpipe_test_lost_order),
	KUNIT_CASE(hvpipe_test_duplicate),
	KUNIT_CASE(hvpipe_test_concurrent_create),
	KUNIT_CASE_PARAM(hvpipe_test_ioctl, ioctl_gen_params),
	KUNIT_CASE(hvpipe_test_create_handle),
	KUNIT_CASE(hvpipe_test_unpublished),
	KUNIT_CASE(hvpipe_test_migration),
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
